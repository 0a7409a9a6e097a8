//! `runtime` names a function; a string or an expression is refused where it is written.

use leader::leader_main;

#[leader_main(runtime = "build_runtime")]
async fn main() {}
