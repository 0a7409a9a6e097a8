use leader::{CancellationToken, leader_only};

#[leader_only(lease = "BillingSync")]
async fn sync_billing(_token: CancellationToken) {}

fn main() {
    let _ = sync_billing();
}
