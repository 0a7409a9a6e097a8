//! What the code that `#[leader_only]` generates does at run time, tested the way a user tests
//! leader-only code: each test builds its own runtimes over an in-memory lease store (one per
//! simulated replica) and calls the functions under test inside `leader::with_runtime`. Nothing
//! is process-wide, so the tests are independent of each other: they pass in parallel, with
//! `--test-threads=1` (`make test` runs both), and on tokio's paused clock.
//! `tests/attributes_without_runtime.rs` calls the functions with no runtime at all.
//!
//! The lints below are those of a strict user crate: `cargo clippy --all-targets` checks that the
//! expansions keep them quiet.

#![deny(unused_qualifications, clippy::pedantic)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leader::runtime::store::LeaseKey;
use leader::runtime::testing::{Fault, InMemoryLeaseStore};
use leader::runtime::{ElectionConfig, Runtime};
use leader::{CancellationToken, Error, Leadership, leader_only, with_runtime};
use tokio::sync::{Barrier, oneshot};
use tokio::time::Instant;

/// The namespace of every runtime here.
const NAMESPACE: &str = "test";

/// A replica: a runtime named `identity` over its own connection to `store`.
async fn replica(store: &InMemoryLeaseStore, identity: &str) -> Runtime {
    Runtime::builder()
        .store(store.clone())
        .identity(identity)
        .namespace(NAMESPACE)
        .build()
        .await
        .expect("building the runtime")
}

/// One replica over a fresh store, for tests that need no other.
async fn alone() -> (Runtime, InMemoryLeaseStore) {
    let store = InMemoryLeaseStore::new();
    (replica(&store, "me").await, store)
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
    let (runtime, _) = alone().await;
    assert_eq!(with_runtime(&runtime, answer()).await.unwrap(), (42, false));
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
    let (runtime, _) = alone().await;
    let (fencing, identity, key) = with_runtime(&runtime, term()).await.unwrap();
    assert_eq!(fencing, 0);
    assert_eq!(identity, "me");
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
    let (runtime, store) = alone().await;
    // Both bodies wait for each other, so they run at the same time: in one term.
    let both_running = Arc::new(Barrier::new(2));
    let (first, second) = with_runtime(&runtime, async {
        tokio::join!(
            first_on_shared(Arc::clone(&both_running)),
            second_on_shared(both_running),
        )
    })
    .await;
    assert_eq!((first.unwrap(), second.unwrap()), (0, 0));
    let elections = runtime.elections();
    let shared = elections.iter().filter(|e| e.key().name == "shared");
    assert_eq!(shared.count(), 1);

    // The last call returned: the lease is released, and the next call leads a new term.
    tokio::time::timeout(Duration::from_secs(10), async {
        while holder(&store, "shared").as_deref() != Some("") {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the lease is released");
    let next = with_runtime(&runtime, first_on_shared(Arc::new(Barrier::new(1))))
        .await
        .unwrap();
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
    let (runtime, _) = alone().await;
    let described = with_runtime(&runtime, describe(2, (3, 4), vec!["a".to_owned()]))
        .await
        .unwrap();
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
    let (runtime, _) = alone().await;
    with_runtime(&runtime, async {
        assert_eq!(parse("").await.unwrap(), Ok(0));
        assert_eq!(parse("41").await.unwrap(), Ok(42));
        assert!(parse("x").await.unwrap().is_err());
    })
    .await;
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
    let (runtime, _) = alone().await;
    let key = with_runtime(&runtime, with_timings()).await.unwrap();
    assert_eq!(key, "elsewhere/custom-timings");
    let election = runtime
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

#[leader_only(lease = "ticks", every = "1s")]
async fn tick(token: CancellationToken, ticks: Arc<AtomicU32>) {
    assert!(!token.is_cancelled());
    ticks.fetch_add(1, Ordering::SeqCst);
}

#[tokio::test(start_paused = true)]
async fn periodic_form_ticks_every_period_while_leading() {
    let (runtime, _) = alone().await;
    let ticks = Arc::new(AtomicU32::new(0));
    let run = with_runtime(&runtime, tick(Arc::clone(&ticks)));
    let stopped = tokio::time::timeout(Duration::from_millis(4500), run).await;
    assert!(stopped.is_err(), "runs until the runtime shuts down");
    // At 0s, 1s, 2s, 3s and 4s.
    assert_eq!(ticks.load(Ordering::SeqCst), 5);
}

#[leader_only(lease = "slow-ticks", every = "1s")]
async fn slow_tick(_token: CancellationToken, ticks: Arc<AtomicU32>) {
    if ticks.fetch_add(1, Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn periodic_form_skips_the_ticks_a_slow_run_missed() {
    let (runtime, _) = alone().await;
    let ticks = Arc::new(AtomicU32::new(0));
    let run = with_runtime(&runtime, slow_tick(Arc::clone(&ticks)));
    let stopped = tokio::time::timeout(Duration::from_millis(4500), run).await;
    assert!(stopped.is_err());
    // At 0s (runs until 2.5s), at 2.5s for the missed ones, then at 3s and 4s: not at 1s and
    // 2s, and never two at once.
    assert_eq!(ticks.load(Ordering::SeqCst), 4);
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
    let (runtime, store) = alone().await;

    let (running, started) = oneshot::channel();
    let call = tokio::spawn(with_runtime(&runtime, graceful(running)));
    started.await.unwrap();
    take_over(&store, "lost-graceful");
    assert_eq!(call.await.unwrap().unwrap(), "stopped when the token fired");

    let (running, started) = oneshot::channel();
    let call = tokio::spawn(with_runtime(&runtime, stubborn(running)));
    started.await.unwrap();
    take_over(&store, "lost-stubborn");
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

        pub(crate) fn call(
            lease: &str,
            namespace: Option<&str>,
            config: Option<ElectionConfig>,
        ) -> Result<Call> {
            ELECTIONS.fetch_add(1, Ordering::SeqCst);
            leader::__private::call(lease, namespace, config)
        }
    }
}

#[leader_only(lease = "crate-override", crate = "crate::counting_leader")]
async fn through_override(_token: CancellationToken) -> u8 {
    7
}

#[tokio::test]
async fn the_crate_argument_replaces_the_path_of_the_leader_crate() {
    let (runtime, _) = alone().await;
    assert_eq!(with_runtime(&runtime, through_override()).await.unwrap(), 7);
    assert_eq!(
        counting_leader::__private::ELECTIONS.load(Ordering::SeqCst),
        1
    );
}

// ----- several replicas over one store -----

/// One thing a body did: `(identity, fencing token, "start" or "stop", when)`.
type Entry = (String, i32, &'static str, Instant);

/// What the replicas' bodies did, in order.
#[derive(Clone, Default)]
struct Journal(Arc<Mutex<Vec<Entry>>>);

impl Journal {
    fn note(&self, leadership: &Leadership, what: &'static str) {
        let entry = (
            leadership.identity().to_owned(),
            leadership.fencing_token(),
            what,
            Instant::now(),
        );
        self.0.lock().unwrap().push(entry);
    }

    fn entries(&self) -> Vec<Entry> {
        self.0.lock().unwrap().clone()
    }

    /// Who started, in order.
    fn starts(&self) -> Vec<(String, i32)> {
        let entries = self.entries().into_iter();
        let starts = entries.filter(|(_, _, what, _)| *what == "start");
        starts.map(|(who, token, _, _)| (who, token)).collect()
    }

    /// Asserts that no two bodies ever ran at once.
    fn assert_never_two_at_once(&self) {
        let mut running = 0;
        for (who, _, what, _) in self.entries() {
            running += if what == "start" { 1 } else { -1 };
            assert!(running <= 1, "{who} started while another body ran");
        }
    }
}

/// Runs until its term ends, noting when it starts and stops.
#[leader_only(lease = "billing-sync")]
async fn sync_billing(leadership: Leadership, journal: Journal) -> String {
    journal.note(&leadership, "start");
    leadership.token().cancelled().await;
    journal.note(&leadership, "stop");
    leadership.identity().to_owned()
}

/// Waits until `journal` has `count` starts.
async fn started(journal: &Journal, count: usize) {
    while journal.starts().len() < count {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn of_two_replicas_only_the_leader_runs_the_body() {
    let store = InMemoryLeaseStore::new();
    let (a, b) = (replica(&store, "a").await, replica(&store, "b").await);
    let journal = Journal::default();
    let first = tokio::spawn(with_runtime(&a, sync_billing(journal.clone())));
    started(&journal, 1).await;
    let second = tokio::spawn(with_runtime(&b, sync_billing(journal.clone())));
    tokio::time::sleep(Duration::from_mins(10)).await;
    assert_eq!(
        journal.starts(),
        [("a".to_owned(), 0)],
        "b waits while a renews"
    );
    assert!(!second.is_finished());
    a.shutdown().await;
    assert_eq!(first.await.unwrap().unwrap(), "a");
    b.shutdown().await;
    assert!(matches!(second.await.unwrap(), Ok(name) if name == "b"));
    journal.assert_never_two_at_once();
}

#[tokio::test(start_paused = true)]
async fn a_follower_takes_over_once_the_leaders_lease_expires_on_the_paused_clock() {
    let store = InMemoryLeaseStore::new();
    let to_a = store.connection(); // a's own path to the API server, to cut
    let (a, b) = (replica(&to_a, "a").await, replica(&store, "b").await);
    let journal = Journal::default();
    let first = tokio::spawn(with_runtime(&a, sync_billing(journal.clone())));
    started(&journal, 1).await;
    let second = tokio::spawn(with_runtime(&b, sync_billing(journal.clone())));
    tokio::time::sleep(Duration::from_secs(30)).await;

    let cut = Instant::now();
    to_a.set_fault(Some(Fault::Unreachable));
    // a cannot renew: its token fires at the renew deadline, and its call ends.
    assert_eq!(first.await.unwrap().unwrap(), "a");
    started(&journal, 2).await;
    let entries = journal.entries();
    let stopped = entries[1].3;
    let (_, token, _, took_over) = entries[2].clone();
    assert_eq!(token, 1, "the follower's fencing token is higher");
    // a renewed at most one retry period before the cut; the lease lasts 15 s from there.
    assert!(
        stopped <= cut + Duration::from_secs(10),
        "a stops by its renew deadline"
    );
    assert!(
        took_over >= cut + Duration::from_secs(13),
        "{:?}",
        took_over - cut
    );
    assert!(
        took_over <= cut + Duration::from_secs(20),
        "{:?}",
        took_over - cut
    );
    journal.assert_never_two_at_once();
    b.shutdown().await;
    assert!(second.await.unwrap().is_ok());
    a.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_shuts_down_hands_over_at_once() {
    let store = InMemoryLeaseStore::new();
    let (a, b) = (replica(&store, "a").await, replica(&store, "b").await);
    let journal = Journal::default();
    let _first = tokio::spawn(with_runtime(&a, sync_billing(journal.clone())));
    started(&journal, 1).await;
    let _second = tokio::spawn(with_runtime(&b, sync_billing(journal.clone())));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let released = Instant::now();
    a.shutdown().await; // releases the lease
    started(&journal, 2).await;
    let took_over = journal.entries()[2].3;
    assert!(
        took_over - released < Duration::from_millis(100),
        "{:?}",
        took_over - released
    );
    journal.assert_never_two_at_once();
    b.shutdown().await;
}

#[leader_only(lease = "report", every = "10s")]
async fn report(leadership: Leadership, journal: Journal, reports: Arc<AtomicU32>) {
    journal.note(&leadership, "start");
    reports.fetch_add(1, Ordering::SeqCst);
    journal.note(&leadership, "stop");
}

#[tokio::test(start_paused = true)]
async fn the_periodic_form_ticks_on_the_leader_only_and_moves_with_the_lease() {
    let store = InMemoryLeaseStore::new();
    let to_a = store.connection();
    let (a, b) = (replica(&to_a, "a").await, replica(&store, "b").await);
    let (journal, reports) = (Journal::default(), Arc::new(AtomicU32::new(0)));
    let on_a = tokio::spawn(with_runtime(
        &a,
        report(journal.clone(), Arc::clone(&reports)),
    ));
    started(&journal, 1).await;
    let on_b = tokio::spawn(with_runtime(
        &b,
        report(journal.clone(), Arc::clone(&reports)),
    ));
    tokio::time::sleep(Duration::from_secs(45)).await;
    assert_eq!(
        reports.load(Ordering::SeqCst),
        5,
        "at 0, 10, 20, 30 and 40 s, on a"
    );
    to_a.set_fault(Some(Fault::Unreachable));
    tokio::time::sleep(Duration::from_mins(1)).await;
    let starts = journal.starts();
    let on_b_ticks = starts.iter().filter(|(who, _)| who == "b").count();
    assert!(on_b_ticks >= 4, "b ticks once it leads: {starts:?}");
    assert!(
        starts
            .iter()
            .all(|(who, token)| (who == "a") == (*token == 0))
    );
    journal.assert_never_two_at_once();
    a.shutdown().await;
    b.shutdown().await;
    assert!(
        on_b.await.unwrap().is_ok(),
        "the periodic form ends at shutdown"
    );
    assert!(on_a.await.unwrap().is_ok());
}

#[leader_only(lease = "outer")]
async fn outer(leadership: Leadership) -> Result<String, Error> {
    let inner = inner().await?;
    Ok(format!("{} then {inner}", leadership.key().name))
}

#[leader_only(lease = "inner")]
async fn inner(leadership: Leadership) -> String {
    format!("{} as {}", leadership.key().name, leadership.identity())
}

#[tokio::test]
async fn a_leader_only_function_called_from_another_joins_the_same_runtime() {
    let (runtime, _) = alone().await;
    let both = with_runtime(&runtime, outer()).await.unwrap().unwrap();
    assert_eq!(both, "outer then inner as me");
}

#[tokio::test]
async fn the_innermost_scope_wins_and_a_spawned_future_needs_its_own() {
    let store = InMemoryLeaseStore::new();
    let (a, b) = (replica(&store, "a").await, replica(&store, "b").await);
    let who = with_runtime(&a, async {
        let outer = term().await.unwrap().1;
        let nested = with_runtime(&b, term()).await.unwrap().1;
        // A spawned future does not inherit the scope: without one, there is no runtime.
        let spawned = tokio::spawn(term()).await.unwrap();
        (outer, nested, spawned)
    })
    .await;
    assert_eq!((who.0.as_str(), who.1.as_str()), ("a", "b"));
    assert!(matches!(who.2, Err(Error::NotStarted)), "{:?}", who.2);
}

#[tokio::test(start_paused = true)]
async fn fencing_tokens_increase_from_leader_to_leader() {
    let store = InMemoryLeaseStore::new();
    let (a, b) = (replica(&store, "a").await, replica(&store, "b").await);
    let mut tokens = Vec::new();
    for round in 0..6 {
        let runtime = if round % 2 == 0 { &a } else { &b };
        let (fencing, identity, _) = with_runtime(runtime, term()).await.unwrap();
        assert_eq!(identity, runtime.identity());
        tokens.push(fencing);
        // The call returned: the lease is released, and the other replica may take it.
    }
    assert_eq!(tokens, [0, 1, 2, 3, 4, 5]);
}

#[tokio::test(start_paused = true)]
async fn a_call_waiting_to_lead_returns_shut_down_when_its_runtime_stops() {
    let store = InMemoryLeaseStore::new();
    let (a, b) = (replica(&store, "a").await, replica(&store, "b").await);
    let journal = Journal::default();
    let _leading = tokio::spawn(with_runtime(&a, sync_billing(journal.clone())));
    started(&journal, 1).await;
    let waiting = tokio::spawn(with_runtime(&b, sync_billing(journal.clone())));
    tokio::time::sleep(Duration::from_secs(1)).await;
    b.shutdown().await;
    assert!(matches!(
        waiting.await.unwrap(),
        Err(Error::ShutDown { .. })
    ));
    assert_eq!(journal.starts().len(), 1, "b never ran");
    a.shutdown().await;
}

#[leader_only(lease = "panics")]
async fn panics(_token: CancellationToken) {
    panic!("the body failed");
}

#[tokio::test]
async fn a_body_that_panics_gives_work_panicked_and_the_lease_is_released() {
    let (runtime, store) = alone().await;
    let outcome = with_runtime(&runtime, panics()).await;
    assert!(
        matches!(outcome, Err(Error::WorkPanicked { .. })),
        "{outcome:?}"
    );
    tokio::time::timeout(Duration::from_secs(10), async {
        while holder(&store, "panics").as_deref() != Some("") {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("released once nobody wants it");
}

#[tokio::test(start_paused = true)]
async fn a_replica_refused_by_rbac_never_runs_the_body_and_says_why() {
    let store = InMemoryLeaseStore::new();
    let refused = store.connection();
    refused.set_fault(Some(Fault::Forbidden));
    let runtime = replica(&refused, "refused").await;
    let journal = Journal::default();
    let call = tokio::spawn(with_runtime(&runtime, sync_billing(journal.clone())));
    tokio::time::sleep(Duration::from_mins(1)).await;
    assert!(journal.starts().is_empty());
    let election = runtime.election("billing-sync").unwrap();
    let status = election.status().borrow().clone();
    assert!(status.permission_denied, "{status:?}");
    assert!(election.health_check(Duration::ZERO).is_err());
    runtime.shutdown().await;
    assert!(matches!(call.await.unwrap(), Err(Error::ShutDown { .. })));
}
