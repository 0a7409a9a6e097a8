//! What the code that `#[leader_only]` generates does at run time, in a process-wide runtime over
//! an in-memory lease store.
//!
//! There is one process-wide runtime, so every test here shares the one [`setup`] installs. Each
//! `#[tokio::test]` has a tokio runtime of its own, and an election's tasks run in the tokio
//! runtime that first asks for its lease (the runtime itself runs no task: the in-memory store
//! needs none). So every test uses leases of its own, and no election outlives its tokio runtime.
//! `tests/attributes_without_runtime.rs` calls the functions with no runtime installed.
//!
//! The lints below are those of a strict user crate: `cargo clippy --all-targets` checks that the
//! expansions keep them quiet.

#![deny(unused_qualifications, clippy::pedantic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use leader::runtime::store::LeaseKey;
use leader::runtime::testing::InMemoryLeaseStore;
use leader::runtime::{ElectionConfig, Runtime};
use leader::{CancellationToken, Error, Leadership, leader_only};
use tokio::sync::{Barrier, OnceCell, oneshot};

/// The identity and namespace of the shared runtime.
const IDENTITY: &str = "me";
const NAMESPACE: &str = "test";

/// Installs the shared runtime on first use and returns its store.
async fn setup() -> &'static InMemoryLeaseStore {
    static STORE: OnceCell<InMemoryLeaseStore> = OnceCell::const_new();
    STORE
        .get_or_init(|| async {
            let store = InMemoryLeaseStore::new();
            let runtime = Runtime::builder()
                .store(store.clone())
                .identity(IDENTITY)
                .namespace(NAMESPACE)
                .build()
                .await
                .expect("building the runtime");
            assert!(
                leader::install_runtime(runtime).is_ok(),
                "nothing else installs a runtime in this test binary"
            );
            store
        })
        .await
}

fn runtime() -> &'static Runtime {
    leader::installed_runtime().expect("installed by setup()")
}

/// The holder of a lease in the store, `""` when released.
fn holder(store: &InMemoryLeaseStore, lease: &str) -> Option<String> {
    let lease = store.lease(&LeaseKey::new(NAMESPACE, lease))?;
    lease.spec?.holder_identity
}

#[leader_only(lease = "returns-value")]
async fn answer(token: CancellationToken) -> (u32, bool) {
    (42, token.is_cancelled())
}

#[tokio::test]
async fn one_shot_returns_the_body_value_in_ok_and_runs_with_a_live_token() {
    setup().await;
    assert_eq!(answer().await.unwrap(), (42, false));
}

#[leader_only(lease = "fencing")]
async fn term(leadership: Leadership) -> (i32, String, String) {
    (
        leadership.fencing_token(),
        leadership.identity().to_owned(),
        leadership.key().to_string(),
    )
}

#[tokio::test]
async fn leadership_parameter_sees_fencing_token_zero_on_a_fresh_lease() {
    setup().await;
    let (fencing, identity, key) = term().await.unwrap();
    assert_eq!(fencing, 0);
    assert_eq!(identity, IDENTITY);
    assert_eq!(key, "test/fencing");
}

#[leader_only(lease = "shared")]
async fn first_on_shared(leadership: Leadership, both_running: Arc<Barrier>) -> i32 {
    both_running.wait().await;
    leadership.fencing_token()
}

#[leader_only(lease = "shared")]
async fn second_on_shared(l: Leadership, both_running: Arc<Barrier>) -> i32 {
    both_running.wait().await;
    l.fencing_token()
}

#[tokio::test]
async fn functions_on_the_same_lease_share_one_election_and_release_it_when_done() {
    let store = setup().await;
    // Both bodies wait for each other, so they run at the same time: in one term.
    let both_running = Arc::new(Barrier::new(2));
    let (first, second) = tokio::join!(
        first_on_shared(Arc::clone(&both_running)),
        second_on_shared(both_running),
    );
    assert_eq!((first.unwrap(), second.unwrap()), (0, 0));
    let elections = runtime().elections();
    let shared = elections.iter().filter(|e| e.key().name == "shared");
    assert_eq!(shared.count(), 1);

    // The last call returned: the lease is released, and the next call leads a new term.
    tokio::time::timeout(Duration::from_secs(10), async {
        while holder(store, "shared").as_deref() != Some("") {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the lease is released");
    let next = first_on_shared(Arc::new(Barrier::new(1))).await.unwrap();
    assert_eq!(next, 1);
}

#[leader_only(lease = "extra-parameters")]
async fn describe(
    count: u32,
    token: CancellationToken,
    (width, height): (u8, u8),
    mut names: Vec<String>,
) -> String {
    assert!(!token.is_cancelled());
    names.push(format!("{width}x{height}"));
    format!("{count}: {}", names.join(", "))
}

#[tokio::test]
async fn extra_parameters_are_passed_through() {
    setup().await;
    let described = describe(2, (3, 4), vec!["a".to_owned()]).await.unwrap();
    assert_eq!(described, "2: a, 3x4");
}

#[leader_only(lease = "early-return")]
async fn parse(
    _token: CancellationToken,
    input: &'static str,
) -> Result<u32, std::num::ParseIntError> {
    if input.is_empty() {
        return Ok(0);
    }
    let parsed: u32 = input.parse()?;
    Ok(parsed + 1)
}

#[tokio::test]
async fn return_and_question_mark_work_as_in_an_async_fn() {
    setup().await;
    assert_eq!(parse("").await.unwrap(), Ok(0));
    assert_eq!(parse("41").await.unwrap(), Ok(42));
    assert!(parse("x").await.unwrap().is_err());
}

#[leader_only(
    lease = "custom-timings",
    namespace = "elsewhere",
    lease_duration = "4s",
    renew_deadline = "3s",
    retry_period = "500ms"
)]
async fn with_timings(leadership: Leadership) -> String {
    leadership.key().to_string()
}

#[tokio::test]
async fn timings_and_namespace_reach_the_election() {
    setup().await;
    assert_eq!(with_timings().await.unwrap(), "elsewhere/custom-timings");
    let election = runtime()
        .elections()
        .into_iter()
        .find(|e| e.key().name == "custom-timings")
        .expect("the election exists");
    assert_eq!(
        *election.config(),
        ElectionConfig {
            lease_duration: Duration::from_secs(4),
            renew_deadline: Duration::from_secs(3),
            retry_period: Duration::from_millis(500),
        }
    );
}

static TICKS: AtomicU32 = AtomicU32::new(0);

#[leader_only(lease = "ticks", every = "1s")]
async fn tick(token: CancellationToken) {
    assert!(!token.is_cancelled());
    TICKS.fetch_add(1, Ordering::SeqCst);
}

#[tokio::test(start_paused = true)]
async fn periodic_form_ticks_every_period_while_leading() {
    setup().await;
    let stopped = tokio::time::timeout(Duration::from_millis(4500), tick()).await;
    assert!(stopped.is_err(), "runs until the runtime shuts down");
    // At 0s, 1s, 2s, 3s and 4s.
    assert_eq!(TICKS.load(Ordering::SeqCst), 5);
}

static SLOW_TICKS: AtomicU32 = AtomicU32::new(0);

#[leader_only(lease = "slow-ticks", every = "1s")]
async fn slow_tick(_token: CancellationToken) {
    if SLOW_TICKS.fetch_add(1, Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn periodic_form_skips_the_ticks_a_slow_run_missed() {
    setup().await;
    let stopped = tokio::time::timeout(Duration::from_millis(4500), slow_tick()).await;
    assert!(stopped.is_err());
    // At 0s (runs until 2.5s), at 2.5s for the missed ones, then at 3s and 4s: not at 1s and
    // 2s, and never two at once.
    assert_eq!(SLOW_TICKS.load(Ordering::SeqCst), 4);
}

#[leader_only(lease = "lost-graceful")]
async fn graceful(token: CancellationToken, running: oneshot::Sender<()>) -> &'static str {
    running.send(()).unwrap();
    token.cancelled().await;
    "stopped when the token fired"
}

#[leader_only(lease = "lost-stubborn")]
async fn stubborn(_token: CancellationToken, running: oneshot::Sender<()>) {
    running.send(()).unwrap();
    std::future::pending::<()>().await;
}

/// Makes another replica the holder of `lease`, as if it had taken it over.
fn take_over(store: &InMemoryLeaseStore, lease: &str) {
    let taken = store.edit(&LeaseKey::new(NAMESPACE, lease), |lease| {
        let spec = lease.spec.as_mut().expect("a lease has a spec");
        spec.holder_identity = Some("another-replica".to_owned());
    });
    assert!(taken, "the lease exists");
}

#[tokio::test(start_paused = true)]
async fn on_loss_the_token_fires_and_a_body_that_ignores_it_is_hard_stopped() {
    let store = setup().await;

    let (running, started) = oneshot::channel();
    let call = tokio::spawn(graceful(running));
    started.await.unwrap();
    take_over(store, "lost-graceful");
    assert_eq!(call.await.unwrap().unwrap(), "stopped when the token fired");

    let (running, started) = oneshot::channel();
    let call = tokio::spawn(stubborn(running));
    started.await.unwrap();
    take_over(store, "lost-stubborn");
    match call.await.unwrap() {
        Err(Error::HardStopped { grace, .. }) => {
            // (lease_duration - renew_deadline) / 2 with the defaults.
            assert_eq!(grace, Duration::from_millis(2500));
        }
        other => panic!("expected Error::HardStopped, got {other:?}"),
    }
}

/// A stand-in for the `leader` crate that counts the elections the generated code asks for.
mod counting_leader {
    pub(crate) mod __private {
        use std::sync::atomic::{AtomicU32, Ordering};

        pub(crate) use leader::__private::*;

        pub(crate) static ELECTIONS: AtomicU32 = AtomicU32::new(0);

        pub(crate) fn election(
            lease: &str,
            namespace: Option<&str>,
            config: Option<ElectionConfig>,
        ) -> Result<leader::runtime::Election> {
            ELECTIONS.fetch_add(1, Ordering::SeqCst);
            leader::__private::election(lease, namespace, config)
        }
    }
}

#[leader_only(lease = "crate-override", crate = "crate::counting_leader")]
async fn through_override(_token: CancellationToken) -> u8 {
    7
}

#[tokio::test]
async fn the_crate_argument_replaces_the_path_of_the_leader_crate() {
    setup().await;
    assert_eq!(through_override().await.unwrap(), 7);
    assert_eq!(
        counting_leader::__private::ELECTIONS.load(Ordering::SeqCst),
        1
    );
}
