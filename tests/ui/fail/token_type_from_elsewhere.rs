//! A token type named like leader's but from elsewhere: the error points at the type.

use leader::leader_only;

/// Not `leader::CancellationToken`.
struct CancellationToken;

#[leader_only(lease = "billing-sync")]
async fn sync_billing(token: CancellationToken) {
    let _ = token;
}

fn main() {
    let _ = sync_billing();
}
