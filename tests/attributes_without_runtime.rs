//! Leader-only functions called in a process where no runtime was started or installed: a test
//! binary of its own, as the runtime is process-wide and `tests/attributes.rs` installs one.

use leader::{CancellationToken, Error, leader_only};

#[leader_only(lease = "nothing-installed")]
async fn once(_token: CancellationToken) {
    unreachable!("there is no runtime to lead in");
}

#[leader_only(lease = "nothing-installed-periodic", every = "1s")]
async fn periodic(_token: CancellationToken) {
    unreachable!("there is no runtime to lead in");
}

#[tokio::test]
async fn without_a_runtime_calls_return_not_started() {
    assert!(leader::installed_runtime().is_none());
    assert!(matches!(once().await, Err(Error::NotStarted)));
    assert!(matches!(periodic().await, Err(Error::NotStarted)));
}
