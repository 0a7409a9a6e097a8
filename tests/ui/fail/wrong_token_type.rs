use leader::{CancellationToken, leader_only};

#[leader_only(lease = "billing-sync")]
async fn by_reference(token: &CancellationToken) {
    token.cancel();
}

#[leader_only(lease = "billing-sync")]
async fn other_type(token: u64) -> u64 {
    token
}

fn main() {
    let _ = by_reference(&CancellationToken::new());
    let _ = other_type(1);
}
