use leader::{CancellationToken, leader_only};

#[leader_only(namespace = "jobs")]
async fn sync_billing(_token: CancellationToken) {}

fn main() {
    // Only the arguments are wrong: the function is still generated, without its token.
    let _ = sync_billing();
}
