//! Every per-lease setting, and every `#[leader_main]` setting.

use leader::runtime::ElectionConfig;
use leader::{Leadership, leader_main, leader_only};
use std::time::Duration;

#[leader_only(
    lease = "fast-failover",
    namespace = "jobs",
    lease_duration = "4s",
    renew_deadline = "3s",
    retry_period = "500ms",
)]
async fn reconcile(leadership: Leadership) -> (String, String) {
    (leadership.key().namespace.clone(), leadership.identity().to_owned())
}

/// Only `lease_duration`: the other two take client-go's defaults.
#[leader_only(lease = "slow-failover", lease_duration = "1m")]
async fn report(_leadership: Leadership) {}

#[leader_only(lease = "minutely", namespace = "jobs", retry_period = "1s", every = "1m")]
async fn minutely(leadership: Leadership) {
    assert_eq!(leadership.key().namespace, "jobs");
    // The first tick comes at once; shutting down ends the periodic loop with `Ok(())`.
    leader::installed_runtime().unwrap().shutdown_token().cancel();
}

#[leader_main(
    flavor = "multi_thread",
    worker_threads = 2,
    namespace = "default-jobs",
    identity = "replica-1"
)]
async fn main() {
    assert_eq!(
        reconcile().await.unwrap(),
        ("jobs".to_owned(), "replica-1".to_owned())
    );
    report().await.unwrap();
    let runtime = leader::installed_runtime().unwrap();
    assert_eq!(runtime.namespace(), "default-jobs");
    let config = |name: &str| {
        let election = runtime.elections().into_iter().find(|e| e.key().name == name);
        *election.expect("the election exists").config()
    };
    assert_eq!(
        config("fast-failover"),
        ElectionConfig {
            lease_duration: Duration::from_secs(4),
            renew_deadline: Duration::from_secs(3),
            retry_period: Duration::from_millis(500),
        }
    );
    assert_eq!(
        config("slow-failover"),
        ElectionConfig::default().with_lease_duration(Duration::from_secs(60))
    );
    minutely().await.unwrap();
}
