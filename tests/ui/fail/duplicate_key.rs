use leader::{CancellationToken, leader_only};

#[leader_only(lease = "billing-sync", retry_period = "1s", lease = "invoices")]
async fn sync_billing(_token: CancellationToken) {}

fn main() {
    let _ = sync_billing();
}
