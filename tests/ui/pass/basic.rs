//! A one-shot leader-only function and `#[leader_main]`, with nothing but `leader` in scope.

use leader::{CancellationToken, leader_main, leader_only};

/// Runs on the leader only, and gets its leadership token.
#[leader_only(lease = "billing-sync")]
async fn sync_billing(token: CancellationToken) -> u32 {
    assert!(!token.is_cancelled(), "the token is live while leading");
    42
}

#[leader_main]
async fn main() {
    let synced: Result<u32, leader::Error> = sync_billing().await;
    assert_eq!(synced.unwrap(), 42);
}
