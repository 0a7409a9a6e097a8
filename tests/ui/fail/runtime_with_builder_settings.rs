//! `identity`, `namespace` and `events` belong on the builder when the program builds the
//! runtime.

use leader::leader_main;
use leader::runtime::Runtime;

async fn build_runtime() -> leader::Result<Runtime> {
    Runtime::builder().build().await
}

#[leader_main(runtime = build_runtime, identity = "me", namespace = "jobs", events = false)]
async fn main() {}
