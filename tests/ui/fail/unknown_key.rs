use leader::{CancellationToken, leader_only};

#[leader_only(lease = "billing-sync", timeout = "5s")]
async fn sync_billing(_token: CancellationToken) {}

fn main() {
    let _ = sync_billing();
}
