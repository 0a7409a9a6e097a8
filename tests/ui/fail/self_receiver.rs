use leader::{CancellationToken, leader_only};

struct Billing;

impl Billing {
    #[leader_only(lease = "billing-sync")]
    async fn sync(&self, _token: CancellationToken) {}
}

async fn caller() -> leader::Result<()> {
    Billing.sync().await
}

fn main() {
    let _ = caller();
}
