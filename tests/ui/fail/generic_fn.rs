use leader::{CancellationToken, leader_only};

#[leader_only(lease = "billing-sync")]
async fn sync_billing<T: Send + 'static>(_token: CancellationToken, batch: T) -> T {
    batch
}

fn main() {
    let _ = sync_billing(CancellationToken::new(), 1);
}
