use leader::leader_only;

#[leader_only(lease = "billing-sync")]
async fn sync_billing() {}

async fn caller() -> leader::Result<()> {
    sync_billing().await
}

fn main() {
    let _ = caller();
}
