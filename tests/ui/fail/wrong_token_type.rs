use leader::{CancellationToken, leader_only};

#[leader_only(lease = "billing-sync")]
async fn by_reference(token: &CancellationToken) {
    token.cancel();
}

#[leader_only(lease = "billing-sync")]
async fn other_type(token: u64) -> u64 {
    token
}

async fn caller() -> leader::Result<u64> {
    by_reference().await?;
    other_type().await
}

fn main() {
    let _ = caller();
}
