//! `token.cancelled()` borrows the token, so it cannot go where a `'static` future is wanted
//! (kube's `Controller::graceful_shutdown_on`, `tokio::spawn`): the error points at the borrow in
//! the body, not at the attribute, and `cancelled_owned()` is the method that works.
use leader::{CancellationToken, leader_only};

fn shutdown_on(trigger: impl std::future::Future<Output = ()> + Send + 'static) {
    drop(trigger);
}

#[leader_only(lease = "controller")]
async fn control(token: CancellationToken) {
    shutdown_on(token.cancelled());
}

fn main() {
    drop(control());
}
