use leader::{CancellationToken, leader_only};

// 1.2 x 5s = 6s is not shorter than the renew deadline.
#[leader_only(lease = "billing-sync", renew_deadline = "6s", retry_period = "5s")]
async fn sync_billing(_token: CancellationToken) {}

fn main() {
    let _ = sync_billing();
}
