//! `#[leader_main(runtime = ...)]`: the program builds the runtime itself, here over an
//! in-memory store with a renamed lease, and leader-only functions join it.

use leader::runtime::Runtime;
use leader::runtime::testing::InMemoryLeaseStore;
use leader::{Leadership, leader_main, leader_only};

#[leader_only(lease = "report")]
async fn report(leadership: Leadership) -> String {
    leadership.key().name.clone()
}

async fn build_runtime() -> leader::Result<Runtime> {
    Runtime::builder()
        .store(InMemoryLeaseStore::new())
        .identity("custom")
        .rename_lease("report", "report-staging")
        .build()
        .await
}

#[leader_main(runtime = build_runtime)]
async fn main() -> leader::Result<()> {
    assert_eq!(report().await?, "report-staging");
    assert_eq!(leader::installed_runtime().map(Runtime::identity), Some("custom"));
    Ok(())
}
