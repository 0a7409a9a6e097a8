//! Helpers shared by the integration tests that run the runtime over real time.
#![allow(dead_code, reason = "each test binary uses a part of the helpers")]

use std::future::Future;
use std::time::Duration;

use leader_runtime::testing::InMemoryLeaseStore;
use leader_runtime::{ElectionConfig, Runtime};
use tokio::time::{sleep, timeout};

#[cfg(feature = "metrics")]
pub(crate) mod exposition;

pub(crate) const NAMESPACE: &str = "test";
pub(crate) const LEASE: &str = "job";

/// Short timings, so that renews come every half second.
pub(crate) fn fast() -> ElectionConfig {
    ElectionConfig::default()
        .with_lease_duration(Duration::from_secs(3))
        .with_renew_deadline(Duration::from_secs(2))
        .with_retry_period(Duration::from_millis(500))
}

pub(crate) async fn runtime(store: &InMemoryLeaseStore, identity: &str) -> Runtime {
    Runtime::builder()
        .store(store.clone())
        .identity(identity)
        .namespace(NAMESPACE)
        .config(fast())
        .build()
        .await
        .unwrap()
}

/// Fails the test if `test` takes longer than `limit`.
pub(crate) async fn within<T>(limit: Duration, test: impl Future<Output = T>) -> T {
    timeout(limit, test)
        .await
        .unwrap_or_else(|_| panic!("the test took more than {limit:?}"))
}

/// Fails the test if `test` takes more than 5 s.
pub(crate) async fn within_5s<T>(test: impl Future<Output = T>) -> T {
    within(Duration::from_secs(5), test).await
}

/// Starts work on [`LEASE`] that runs until its token fires or `hold` has passed.
pub(crate) fn lead_for(
    runtime: &Runtime,
    hold: Duration,
) -> tokio::task::JoinHandle<leader_runtime::Result<()>> {
    let election = runtime.election(LEASE).unwrap();
    tokio::spawn(async move {
        election
            .lead(move |leadership| async move {
                tokio::select! {
                    () = leadership.token().cancelled() => {}
                    () = sleep(hold) => {}
                }
            })
            .await
    })
}
