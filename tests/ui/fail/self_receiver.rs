use leader::{CancellationToken, leader_only};

struct Billing;

impl Billing {
    #[leader_only(lease = "billing-sync")]
    async fn sync(&self, _token: CancellationToken) {}
}

fn main() {
    let _ = Billing.sync(CancellationToken::new());
}
