//! The work runs as a task of the runtime: the compiler requires it to be `Send + 'static`.

use std::rc::Rc;

use leader::{CancellationToken, leader_only};

#[leader_only(lease = "billing-sync")]
async fn sync_billing(token: CancellationToken) {
    let shared = Rc::new(1);
    token.cancelled().await;
    let _ = shared;
}

#[leader_only(lease = "billing-sync")]
async fn borrows(_token: CancellationToken, name: &str) -> usize {
    name.len()
}

fn main() {
    let _ = sync_billing();
    let _ = borrows("x");
}
