//! `return` and `?` are checked against the declared return type, at the offending expression.

use leader::{CancellationToken, leader_main, leader_only};

#[leader_only(lease = "billing-sync")]
async fn sync_billing(token: CancellationToken) -> String {
    if token.is_cancelled() {
        return 0;
    }
    String::new()
}

#[leader_only(lease = "billing-sync", every = "1s")]
async fn tick(_token: CancellationToken) {
    return 1;
}

#[derive(Debug)]
struct Failure;

#[leader_main]
async fn main() -> Result<(), Failure> {
    let _ = sync_billing().await;
    let _ = tick().await;
    let n: u32 = "1".parse()?;
    let _ = n;
    Ok(())
}
