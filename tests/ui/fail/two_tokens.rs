use leader::{CancellationToken, Leadership, leader_only};

#[leader_only(lease = "billing-sync")]
async fn sync_billing(token: CancellationToken, leadership: Leadership) {
    let _ = (token, leadership);
}

fn main() {
    let _ = sync_billing;
}
