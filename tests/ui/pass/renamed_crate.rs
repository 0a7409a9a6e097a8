//! `crate = "..."` names the `leader` crate when it is known by another name. (trybuild cannot
//! rename the dependency itself; `extern crate ... as` gives it the other name here.)

extern crate leader as my_leader;

use my_leader::{CancellationToken, leader_main, leader_only};

#[leader_only(lease = "renamed", crate = "my_leader")]
async fn work(_token: CancellationToken) -> &'static str {
    "done"
}

#[leader_only(lease = "renamed-periodic", every = "1h", crate = "::my_leader")]
async fn tick(_token: CancellationToken) {
    // The first tick comes at once; shutting down ends the periodic loop with `Ok(())`.
    my_leader::installed_runtime().unwrap().shutdown_token().cancel();
}

#[leader_main(crate = "my_leader", flavor = "current_thread")]
async fn main() -> Result<(), my_leader::Error> {
    assert_eq!(work().await?, "done");
    tick().await
}
