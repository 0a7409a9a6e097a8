use leader::{CancellationToken, leader_only};

#[leader_only(lease = "billing-sync")]
async fn sync_billing<T: Send + 'static>(_token: CancellationToken, batch: T) -> T {
    batch
}

async fn caller() -> leader::Result<u32> {
    sync_billing(1).await
}

fn main() {
    let _ = caller();
}
