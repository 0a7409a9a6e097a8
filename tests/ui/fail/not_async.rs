use leader::{CancellationToken, leader_only};

#[leader_only(lease = "billing-sync")]
fn sync_billing(token: CancellationToken) {
    token.cancel();
}

fn main() {
    // The function is wrong: it is emitted unchanged.
    sync_billing(CancellationToken::new());
}
