use leader::{CancellationToken, Leadership, leader_only};

#[leader_only(lease = "billing-sync")]
async fn sync_billing(token: CancellationToken, leadership: Leadership) {
    let _ = (token, leadership);
}

async fn caller() -> leader::Result<()> {
    sync_billing().await
}

fn main() {
    let _ = caller();
}
