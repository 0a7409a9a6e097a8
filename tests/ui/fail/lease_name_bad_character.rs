use leader::{CancellationToken, leader_only};

#[leader_only(lease = "billing_sync")]
async fn sync_billing(_token: CancellationToken) {}

#[leader_only(lease = "billing.-sync")]
async fn sync_invoices(_token: CancellationToken) {}

fn main() {
    let _ = sync_billing();
    let _ = sync_invoices();
}
