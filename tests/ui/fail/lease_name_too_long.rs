use leader::{CancellationToken, leader_only};

// 254 characters: one too many for a DNS-1123 subdomain.
#[leader_only(lease = "billing-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-sync-a")]
async fn sync_billing(_token: CancellationToken) {}

fn main() {
    let _ = sync_billing();
}
