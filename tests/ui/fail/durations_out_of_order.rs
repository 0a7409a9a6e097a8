use leader::{CancellationToken, leader_only};

#[leader_only(lease = "billing-sync", lease_duration = "10s", renew_deadline = "10s")]
async fn sync_billing(_token: CancellationToken) {}

// The renew deadline not given: the default, 10s, is too long for this lease duration.
#[leader_only(lease = "invoices", lease_duration = "5s")]
async fn sync_invoices(_token: CancellationToken) {}

fn main() {
    let _ = sync_billing();
    let _ = sync_invoices();
}
