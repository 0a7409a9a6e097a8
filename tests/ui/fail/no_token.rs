use leader::leader_only;

#[leader_only(lease = "billing-sync")]
async fn sync_billing() {}

fn main() {
    let _ = sync_billing();
}
