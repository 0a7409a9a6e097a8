use leader::{CancellationToken, leader_only};

#[leader_only(lease = "billing-sync", lease_duration = "15 seconds")]
async fn sync_billing(_token: CancellationToken) {}

#[leader_only(lease = "billing-sync", every = "1.5s")]
async fn sync_often(_token: CancellationToken) {}

fn main() {
    let _ = sync_billing();
    let _ = sync_often();
}
