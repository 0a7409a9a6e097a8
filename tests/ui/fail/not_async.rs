use leader::{CancellationToken, leader_only};

#[leader_only(lease = "billing-sync")]
fn sync_billing(token: CancellationToken) {
    token.cancel();
}

// Callers are written for the function the attribute generates: they see no errors of their own.
async fn caller() -> leader::Result<()> {
    sync_billing().await
}

fn main() {
    let _ = caller();
}
