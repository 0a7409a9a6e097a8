use leader::{CancellationToken, leader_only};

// Every independent problem is reported, not just the first.
#[leader_only(lease = "Billing", retry_period = "2 s", lease_duration = "5s", unknown = 1)]
fn sync_billing(token: CancellationToken) {
    token.cancel();
}

async fn caller() -> leader::Result<()> {
    sync_billing().await
}

fn main() {
    let _ = caller();
}
