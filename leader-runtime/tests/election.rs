//! The election's behaviour, on tokio's paused clock over the in-memory store: several runtimes
//! on one store act as replicas on one API server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use leader_runtime::store::{BoxFuture, LeaseKey, LeaseStore, Observation};
use leader_runtime::testing::{Fault, InMemoryLeaseStore};
use leader_runtime::{ElectionConfig, Error, Leadership, LeaseStatus, Runtime};
use tokio::sync::watch;
use tokio::time::{Instant, sleep, timeout};

const NAMESPACE: &str = "test";
const LEASE: &str = "job";
const SECOND: Duration = Duration::from_secs(1);

fn key() -> LeaseKey {
    LeaseKey::new(NAMESPACE, LEASE)
}

async fn replica(store: &InMemoryLeaseStore, identity: &str) -> Runtime {
    replica_over(store.clone(), identity).await
}

/// A runtime for the replica `identity` over any store.
async fn replica_over(store: impl LeaseStore, identity: &str) -> Runtime {
    Runtime::builder()
        .store(store)
        .identity(identity)
        .namespace(NAMESPACE)
        .build()
        .await
        .unwrap()
}

/// Starts work on `runtime` that runs until its token fires, and reports what happened.
fn campaign(runtime: &Runtime) -> Campaign {
    let election = runtime.election(LEASE).unwrap();
    let (events, watcher) = watch::channel(Vec::new());
    let events = Arc::new(events);
    let log = Arc::clone(&events);
    let task = tokio::spawn(async move {
        election
            .lead(move |leadership: Leadership| async move {
                let fencing = leadership.fencing_token();
                log.send_modify(|events| events.push(Event::Started(Instant::now(), fencing)));
                leadership.token().cancelled().await;
                log.send_modify(|events| events.push(Event::Stopped(Instant::now())));
                fencing
            })
            .await
    });
    Campaign {
        events: watcher,
        task,
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Event {
    Started(Instant, i32),
    Stopped(Instant),
}

struct Campaign {
    events: watch::Receiver<Vec<Event>>,
    task: tokio::task::JoinHandle<leader_runtime::Result<i32>>,
}

impl Campaign {
    async fn started(&mut self) -> (Instant, i32) {
        let events = self
            .events
            .wait_for(|events| !events.is_empty())
            .await
            .unwrap();
        match events[0] {
            Event::Started(at, fencing) => (at, fencing),
            other => panic!("expected a start, got {other:?}"),
        }
    }

    async fn stopped(&mut self) -> Instant {
        let events = self
            .events
            .wait_for(|events| events.len() >= 2)
            .await
            .unwrap();
        match events[1] {
            Event::Stopped(at) => at,
            other => panic!("expected a stop, got {other:?}"),
        }
    }

    fn has_started(&self) -> bool {
        !self.events.borrow().is_empty()
    }
}

async fn status_where(runtime: &Runtime, check: impl FnMut(&LeaseStatus) -> bool) -> LeaseStatus {
    let mut status = runtime.election(LEASE).unwrap().status();
    timeout(Duration::from_secs(3600), status.wait_for(check))
        .await
        .expect("status never matched")
        .unwrap()
        .clone()
}

fn holder(store: &InMemoryLeaseStore) -> Option<String> {
    store
        .lease(&key())?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

#[tokio::test(start_paused = true)]
async fn a_lone_candidate_creates_the_lease_and_leads() {
    let store = InMemoryLeaseStore::new();
    let a = replica(&store, "a").await;
    let mut work = campaign(&a);
    let (_, fencing) = work.started().await;
    assert_eq!(fencing, 0);
    let spec = store.lease(&key()).unwrap().spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("a"));
    assert_eq!(spec.lease_duration_seconds, Some(15));
    assert_eq!(spec.lease_transitions, Some(0));
    assert!(spec.acquire_time.is_some() && spec.renew_time.is_some());
    let status = status_where(&a, |s| s.is_leader).await;
    assert_eq!(status.holder.as_deref(), Some("a"));
}

#[tokio::test(start_paused = true)]
async fn exactly_one_of_three_leads_and_the_others_see_it() {
    let store = InMemoryLeaseStore::new();
    let replicas = [
        replica(&store, "a").await,
        replica(&store, "b").await,
        replica(&store, "c").await,
    ];
    let mut campaigns: Vec<Campaign> = replicas.iter().map(campaign).collect();
    sleep(60 * SECOND).await;
    let leading: Vec<usize> = (0..3).filter(|&i| campaigns[i].has_started()).collect();
    assert_eq!(leading.len(), 1, "leaders: {leading:?}");
    let leader = replicas[leading[0]].identity().to_owned();
    for runtime in &replicas {
        let status = status_where(runtime, |s| s.holder.is_some()).await;
        assert_eq!(status.holder.as_deref(), Some(leader.as_str()));
    }
    campaigns[leading[0]].started().await;
}

#[tokio::test(start_paused = true)]
async fn release_on_shutdown_hands_over_at_once() {
    let store = InMemoryLeaseStore::new();
    let a = replica(&store, "a").await;
    let b = replica(&store, "b").await;
    let mut first = campaign(&a);
    first.started().await;
    let mut second = campaign(&b);
    sleep(5 * SECOND).await;
    assert!(!second.has_started());

    let shutdown_at = Instant::now();
    a.shutdown().await;
    let stopped = first.stopped().await;
    let (taken_at, fencing) = second.started().await;
    assert!(
        stopped <= taken_at,
        "the old leader's work stopped before the new one started"
    );
    assert!(
        taken_at - shutdown_at < SECOND,
        "took {:?}",
        taken_at - shutdown_at
    );
    assert_eq!(fencing, 1);
    assert_eq!(first.task.await.unwrap().unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_finished_function_releases_the_lease() {
    let store = InMemoryLeaseStore::new();
    let a = replica(&store, "a").await;
    let fencing = a
        .election(LEASE)
        .unwrap()
        .lead(|leadership| async move { leadership.fencing_token() })
        .await;
    assert_eq!(fencing.unwrap(), 0);
    status_where(&a, |s| !s.is_leader && s.holder.is_none()).await;
    assert_eq!(holder(&store), None);
    let spec = store.lease(&key()).unwrap().spec.unwrap();
    assert_eq!(
        (spec.lease_duration_seconds, spec.lease_transitions),
        (Some(1), Some(0))
    );
}

#[tokio::test(start_paused = true)]
async fn a_partitioned_leader_stops_before_anyone_can_take_over() {
    let store = InMemoryLeaseStore::new();
    let a_connection = store.connection();
    let a = replica(&a_connection, "a").await;
    let b = replica(&store, "b").await;
    let mut first = campaign(&a);
    first.started().await;
    let mut second = campaign(&b);
    sleep(7 * SECOND).await;

    let last_renew = a
        .election(LEASE)
        .unwrap()
        .status()
        .borrow()
        .last_renew
        .unwrap();
    a_connection.set_fault(Some(Fault::Unreachable));
    let stopped = first.stopped().await;
    let (taken_at, fencing) = second.started().await;
    let config = ElectionConfig::default();
    assert!(
        stopped <= last_renew + config.renew_deadline,
        "token fired {:?} after the last renew",
        stopped - last_renew
    );
    assert!(
        taken_at >= last_renew + config.lease_duration,
        "taken over {:?} after the last renew",
        taken_at - last_renew
    );
    assert!(taken_at <= last_renew + config.lease_duration + config.retry_period);
    assert_eq!(fencing, 1);
    assert!(
        status_where(&a, |s| s.last_error.is_some())
            .await
            .last_error
            .unwrap()
            .contains("connection refused")
    );
}

/// Regression (issue 13, noticed in the soak): a follower that makes no request once its watch
/// is back (the leader renews, so it only waits) kept the outage's error in `last_error` for
/// good, and its status read as failing long after the API server was back.
#[tokio::test(start_paused = true)]
async fn a_followers_last_error_clears_when_its_watch_is_back() {
    let store = InMemoryLeaseStore::new();
    let a = replica(&store, "a").await;
    let _leading = campaign(&a);
    status_where(&a, |s| s.is_leader).await;
    let b_connection = store.connection();
    let b = replica_over(b_connection.clone(), "b").await;
    let _following = campaign(&b);
    status_where(&b, |s| s.holder.as_deref() == Some("a")).await;
    b_connection.set_fault(Some(Fault::Unreachable));
    sleep(30 * SECOND).await;
    let during = status_where(&b, |s| s.last_error.is_some() && s.watch_error.is_some()).await;
    assert!(!during.permission_denied);
    b_connection.set_fault(None);
    let after = status_where(&b, |s| s.watch_error.is_none()).await;
    assert_eq!(after.last_error, None, "{after:?}");
    assert_eq!(after.holder.as_deref(), Some("a"));
}

/// Regression (issue 13, recovery after control-plane restarts): failed requests backed off
/// exponentially up to 30 s, so after a long outage the first try after the API server came
/// back could be 30 s away. Retries now come once per jittered retry period, as client-go's:
/// the answer comes within one of them however long the outage, and never faster.
#[tokio::test(start_paused = true)]
async fn after_an_outage_of_any_length_the_next_try_comes_within_one_jittered_retry_period() {
    let store = InMemoryLeaseStore::new();
    store.set_fault(Some(Fault::Unreachable));
    let a = replica(&store, "a").await;
    let mut work = campaign(&a);
    sleep(600 * SECOND).await;
    assert!(!work.has_started());
    let retry = ElectionConfig::default().retry_period.as_secs_f64();
    let (fewest, most) = ((600.0 / (retry * 2.2)) as u64, (600.0 / retry) as u64 + 1);
    let requests = store.requests();
    assert!(
        (fewest..=most).contains(&requests),
        "{requests} requests in 10 minutes: one per retry period stretched by up to 1.2 is \
         {fewest} to {most}"
    );
    let back = Instant::now();
    store.set_fault(None);
    let (started, _) = timeout(60 * SECOND, work.started())
        .await
        .expect("did not lead after the outage");
    assert!(
        started - back < Duration::from_secs_f64(retry * 2.2),
        "led {:?} after the API server came back",
        started - back
    );
}

#[tokio::test(start_paused = true)]
async fn an_overloaded_api_server_gets_the_wait_it_asks_for() {
    let store = InMemoryLeaseStore::new();
    let retry_after = 30 * SECOND;
    store.set_fault(Some(Fault::TooManyRequests { retry_after }));
    let a = replica(&store, "a").await;
    let mut work = campaign(&a);
    sleep(300 * SECOND).await;
    let requests = store.requests();
    assert!(
        requests <= 11,
        "{requests} requests in 5 minutes with Retry-After 30 s"
    );
    let status = a.election(LEASE).unwrap().status().borrow().clone();
    assert!(status.last_error.unwrap().contains("429"));
    store.set_fault(None);
    timeout(retry_after + 5 * SECOND, work.started())
        .await
        .expect("leads once the API server answers");
}

#[tokio::test(start_paused = true)]
async fn many_leases_do_not_retry_in_lockstep() {
    let store = InMemoryLeaseStore::new();
    store.set_fault(Some(Fault::Unreachable));
    let a = replica(&store, "a").await;
    let (started, mut starts) = tokio::sync::mpsc::unbounded_channel();
    for lease in 0..200 {
        let election = a.election(&format!("lease-{lease}")).unwrap();
        let started = started.clone();
        tokio::spawn(async move {
            election
                .lead(move |_| async move {
                    let _ = started.send(Instant::now());
                })
                .await
        });
    }
    sleep(60 * SECOND).await;
    store.set_fault(None);
    let mut times = Vec::new();
    while times.len() < 200 {
        times.push(timeout(10 * SECOND, starts.recv()).await.unwrap().unwrap());
    }
    times.sort();
    let spread = *times.last().unwrap() - times[0];
    assert!(spread >= SECOND, "all 200 retried within {spread:?}");
    let busiest = times
        .iter()
        .map(|&from| {
            times
                .iter()
                .filter(|&&t| t >= from && t < from + Duration::from_millis(100))
                .count()
        })
        .max()
        .unwrap();
    assert!(
        busiest <= 40,
        "{busiest} of 200 retried within the same 100 ms"
    );
}

#[tokio::test(start_paused = true)]
async fn forbidden_is_reported_in_status_and_health_and_retried() {
    let store = InMemoryLeaseStore::new();
    store.set_fault(Some(Fault::Forbidden));
    let a = replica(&store, "a").await;
    let mut work = campaign(&a);
    let status = status_where(&a, |s| s.permission_denied).await;
    let message = status.last_error.unwrap();
    assert!(
        message.contains("may not create leases.coordination.k8s.io in namespace `test`"),
        "{message}"
    );
    assert!(
        message.contains("verbs: [\"get\", \"list\", \"watch\", \"create\", \"update\"]"),
        "{message}"
    );
    let health = a
        .election(LEASE)
        .unwrap()
        .health_check(Duration::ZERO)
        .unwrap_err();
    assert!(matches!(health, Error::Unhealthy { .. }), "{health:?}");
    store.set_fault(None);
    work.started().await;
    a.election(LEASE)
        .unwrap()
        .health_check(Duration::ZERO)
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_holder_changed_by_hand_ends_the_term_at_once() {
    let store = InMemoryLeaseStore::new();
    let a = replica(&store, "a").await;
    let mut work = campaign(&a);
    work.started().await;
    let edited_at = Instant::now();
    store.edit(&key(), |lease| {
        lease.spec.as_mut().unwrap().holder_identity = Some("intruder".into())
    });
    let stopped = work.stopped().await;
    assert!(
        stopped - edited_at < 100 * Duration::from_millis(1),
        "{:?}",
        stopped - edited_at
    );
    assert_eq!(holder(&store).as_deref(), Some("intruder"));
    // The intruder never renews: after a lease duration `a` takes over again, with a higher token.
    let (_, fencing) = campaign(&a).started().await;
    assert!(fencing >= 1);
}

#[tokio::test(start_paused = true)]
async fn a_deleted_lease_ends_the_term_and_is_recreated_with_a_higher_fencing_token() {
    let store = InMemoryLeaseStore::new();
    let a = replica(&store, "a").await;
    let mut work = campaign(&a);
    work.started().await;
    store.edit(&key(), |lease| {
        lease.spec.as_mut().unwrap().lease_transitions = Some(7)
    });
    sleep(3 * SECOND).await; // a renew keeps 7
    assert!(store.delete(&key()));
    work.stopped().await;
    let (_, fencing) = campaign(&a).started().await;
    assert_eq!(fencing, 8);
}

fn foreign_lease(duration: Option<i32>, renew_time: Option<MicroTime>) -> Lease {
    Lease {
        metadata: ObjectMeta::default(),
        spec: Some(LeaseSpec {
            holder_identity: Some("gone".into()),
            lease_duration_seconds: duration,
            renew_time,
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        }),
    }
}

/// How long after we first see `lease` a candidate takes it over, if within `limit`.
async fn takeover_delay(lease: Lease, limit: Duration) -> Option<Duration> {
    let store = InMemoryLeaseStore::new();
    store.put(&key(), lease);
    let start = Instant::now();
    let a = replica(&store, "a").await;
    let mut work = campaign(&a);
    timeout(limit, work.started())
        .await
        .ok()
        .map(|(at, fencing)| {
            assert_eq!(fencing, 4);
            at - start
        })
}

#[tokio::test(start_paused = true)]
async fn odd_lease_durations_never_shorten_the_wait() {
    for duration in [None, Some(0), Some(-30)] {
        let delay = takeover_delay(foreign_lease(duration, None), 3600 * SECOND)
            .await
            .unwrap();
        assert!(
            delay >= 15 * SECOND && delay < 16 * SECOND,
            "{duration:?}: {delay:?}"
        );
    }
    let delay = takeover_delay(foreign_lease(Some(40), None), 3600 * SECOND)
        .await
        .unwrap();
    assert!(delay >= 40 * SECOND && delay < 41 * SECOND, "{delay:?}");
    // i32::MAX seconds is 68 years: the holder keeps it for as long as we can wait.
    assert_eq!(
        takeover_delay(foreign_lease(Some(i32::MAX), None), 86_400 * SECOND).await,
        None
    );
}

/// A follower whose leader stopped renewing reads the lease once, a quarter of a retry period
/// before it expires, so that the claim goes out on a warm connection (benchmarks: the claim
/// after a SIGKILL paid for a new connection to an idle API server); it claims no earlier.
#[tokio::test(start_paused = true)]
async fn a_follower_reads_the_lease_once_just_before_claiming_it() {
    let store = InMemoryLeaseStore::new();
    store.put(&key(), foreign_lease(Some(15), None));
    let start = Instant::now();
    let a = replica(&store, "a").await;
    let mut work = campaign(&a);
    sleep(SECOND).await;
    let following = store.requests();
    // Retry period 2 s: the read comes at 15 s - 0.5 s.
    sleep(Duration::from_millis(13_400)).await;
    assert_eq!(
        store.requests(),
        following,
        "no request while the lease is held"
    );
    sleep(Duration::from_millis(200)).await;
    assert_eq!(store.requests(), following + 1, "one read before the claim");
    assert!(!work.has_started());
    let (taken_at, fencing) = work.started().await;
    assert_eq!(fencing, 4);
    assert!(
        taken_at - start >= 15 * SECOND && taken_at - start < 15 * SECOND + SECOND / 10,
        "claimed {:?} after first seeing the record",
        taken_at - start
    );
    assert_eq!(store.requests(), following + 2, "the read, then the claim");
}

/// The read before the claim never holds the claim up: one that hangs is given up at the expiry.
#[tokio::test(start_paused = true)]
async fn a_read_before_claiming_that_hangs_does_not_hold_up_the_claim() {
    let store = InMemoryLeaseStore::new();
    store.put(&key(), foreign_lease(Some(15), None));
    let start = Instant::now();
    let a = replica(&store, "a").await;
    let mut work = campaign(&a);
    sleep(Duration::from_millis(14_400)).await;
    store.set_fault(Some(Fault::Hang));
    sleep(Duration::from_millis(400)).await;
    store.set_fault(None);
    let (taken_at, _) = work.started().await;
    assert!(
        taken_at - start < 15 * SECOND + SECOND / 10,
        "claimed {:?} after first seeing the record",
        taken_at - start
    );
}

#[tokio::test(start_paused = true)]
async fn remote_timestamps_are_not_trusted() {
    let far_future = MicroTime("2999-01-01T00:00:00Z".parse().unwrap());
    let delay = takeover_delay(foreign_lease(Some(15), Some(far_future)), 3600 * SECOND)
        .await
        .unwrap();
    assert!(delay >= 15 * SECOND && delay < 16 * SECOND, "{delay:?}");
}

#[tokio::test(start_paused = true)]
async fn a_body_ignoring_its_token_is_stopped_before_anyone_else_leads() {
    let store = InMemoryLeaseStore::new();
    let a_connection = store.connection();
    let a = replica(&a_connection, "a").await;
    let b = replica(&store, "b").await;
    let dropped = Arc::new(Mutex::new(None));
    let guard_slot = Arc::clone(&dropped);
    let stubborn = tokio::spawn({
        let election = a.election(LEASE).unwrap();
        async move {
            election
                .lead(move |_leadership| async move {
                    struct SetOnDrop(Arc<Mutex<Option<Instant>>>);
                    impl Drop for SetOnDrop {
                        fn drop(&mut self) {
                            *self.0.lock().unwrap() = Some(Instant::now());
                        }
                    }
                    let _guard = SetOnDrop(guard_slot);
                    std::future::pending::<()>().await
                })
                .await
        }
    });
    status_where(&a, |s| s.is_leader).await;
    let mut second = campaign(&b);
    sleep(3 * SECOND).await;
    a_connection.set_fault(Some(Fault::Unreachable));
    let result = stubborn.await.unwrap();
    assert!(
        matches!(result, Err(Error::HardStopped { grace, .. }) if grace == Duration::from_millis(2500)),
        "{result:?}"
    );
    let (taken_at, _) = second.started().await;
    let dropped_at = dropped.lock().unwrap().expect("the body was dropped");
    assert!(
        dropped_at < taken_at,
        "work dropped {:?} after the takeover",
        dropped_at - taken_at
    );
}

#[tokio::test(start_paused = true)]
async fn fencing_tokens_strictly_increase_over_twenty_handovers() {
    let store = InMemoryLeaseStore::new();
    let replicas = [replica(&store, "a").await, replica(&store, "b").await];
    let mut tokens = Vec::new();
    for round in 0..20 {
        let runtime = &replicas[round % 2];
        let token = runtime
            .election(LEASE)
            .unwrap()
            .lead(|leadership| async move { leadership.fencing_token() })
            .await;
        tokens.push(token.unwrap());
    }
    assert!(
        tokens.windows(2).all(|pair| pair[0] < pair[1]),
        "{tokens:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn functions_on_one_lease_share_one_election() {
    let store = InMemoryLeaseStore::new();
    let a = replica(&store, "a").await;
    let mut one = campaign(&a);
    let mut two = campaign(&a);
    let (_, first) = one.started().await;
    let (_, second) = two.started().await;
    assert_eq!(first, second, "both run in the same term");
    let other = ElectionConfig::default().with_lease_duration(Duration::from_secs(30));
    let conflict = a.election_with(NAMESPACE, LEASE, other).err().unwrap();
    assert!(
        matches!(conflict, Error::ConflictingSettings { .. }),
        "{conflict}"
    );
}

#[tokio::test(start_paused = true)]
async fn bad_names_and_timings_are_refused_with_their_reason() {
    let a = replica(&InMemoryLeaseStore::new(), "a").await;
    let error = a.election("Billing").err().unwrap().to_string();
    assert!(error.contains("invalid lease name `Billing`"), "{error}");
    let timings = ElectionConfig::default().with_renew_deadline(Duration::from_secs(30));
    let error = a
        .election_with(NAMESPACE, "ok", timings)
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("must be longer than renew deadline"),
        "{error}"
    );
}

#[tokio::test(start_paused = true)]
async fn waiting_calls_return_shut_down_when_the_runtime_stops() {
    let store = InMemoryLeaseStore::new();
    let a = replica(&store, "a").await;
    let b = replica(&store, "b").await;
    campaign(&a).started().await;
    let waiting = campaign(&b);
    sleep(SECOND).await;
    b.shutdown().await;
    assert!(matches!(
        waiting.task.await.unwrap(),
        Err(Error::ShutDown { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_renamed_lease_is_the_one_written() {
    let store = InMemoryLeaseStore::new();
    let runtime = Runtime::builder()
        .store(store.clone())
        .identity("a")
        .namespace(NAMESPACE)
        .rename_lease("report", "report-staging")
        .build()
        .await
        .unwrap();
    let election = runtime.election("report").unwrap();
    assert_eq!(election.key().name, "report-staging");
    election.lead(|_| async {}).await.unwrap();
    assert!(
        store
            .lease(&LeaseKey::new(NAMESPACE, "report-staging"))
            .is_some()
    );
    assert!(store.lease(&LeaseKey::new(NAMESPACE, "report")).is_none());
    let bad = Runtime::builder()
        .store(store)
        .rename_lease("x", "Not Valid")
        .build()
        .await
        .unwrap();
    assert!(matches!(bad.election("x"), Err(Error::InvalidName { .. })));
}

/// Regression: the GET that confirms another holder while leading was not bounded by the renew
/// deadline, so a stalled API server could keep the token from firing while a follower took over.
#[tokio::test(start_paused = true)]
async fn regression_a_hanging_confirmation_cannot_delay_the_token() {
    let store = InMemoryLeaseStore::new();
    let a_connection = store.connection();
    let a = replica(&a_connection, "a").await;
    let mut work = campaign(&a);
    work.started().await;
    let last_renew = a
        .election(LEASE)
        .unwrap()
        .status()
        .borrow()
        .last_renew
        .unwrap();
    a_connection.set_fault(Some(Fault::Hang));
    store.edit(&key(), |lease| {
        lease.spec.as_mut().unwrap().holder_identity = Some("intruder".into())
    });
    let stopped = timeout(60 * SECOND, work.stopped())
        .await
        .expect("the token never fired");
    let config = ElectionConfig::default();
    assert!(
        stopped <= last_renew + config.renew_deadline,
        "fired {:?} after the last renew",
        stopped - last_renew
    );
}

/// Regression: a `lead` call handed a term that ended before its task started reported
/// `HardStopped` although its work never ran; it must wait for the next term instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_work_that_never_ran_is_not_reported_as_hard_stopped() {
    let store = InMemoryLeaseStore::new();
    let a = replica(&store, "a").await;
    let election = a.election(LEASE).unwrap();
    for round in 0..2000 {
        let result = election.lead(|_| async {}).await;
        assert!(result.is_ok(), "round {round}: {result:?}");
    }
}

/// Regression: a takeover counted transitions from the record alone, so after someone re-created
/// the lease from zero our next fencing token could be lower than one we had handed out.
#[tokio::test(start_paused = true)]
async fn regression_fencing_tokens_survive_a_lease_recreated_from_zero() {
    let store = InMemoryLeaseStore::new();
    let a = replica(&store, "a").await;
    let mut first = campaign(&a);
    first.started().await;
    store.edit(&key(), |lease| {
        lease.spec.as_mut().unwrap().lease_transitions = Some(5)
    });
    sleep(3 * SECOND).await;
    assert!(store.delete(&key()));
    first.stopped().await;
    store.put(&key(), foreign_lease(Some(4), None)); // someone else re-creates it, counting from 3
    let (_, fencing) = campaign(&a).started().await;
    assert!(
        fencing > 5,
        "fencing token {fencing} after having handed out 5"
    );
}

/// An edit of our record other than the holder (a shorter lease duration, which followers start
/// using at once) is answered by an immediate renew that puts our record back.
#[tokio::test(start_paused = true)]
async fn an_edited_lease_duration_is_renewed_over_at_once() {
    let store = InMemoryLeaseStore::new();
    let a = replica(&store, "a").await;
    campaign(&a).started().await;
    store.edit(&key(), |lease| {
        lease.spec.as_mut().unwrap().lease_duration_seconds = Some(1)
    });
    sleep(Duration::from_millis(10)).await;
    let spec = store.lease(&key()).unwrap().spec.unwrap();
    assert_eq!(
        (spec.holder_identity.as_deref(), spec.lease_duration_seconds),
        (Some("a"), Some(15))
    );
}

/// Regression (benchmarks at scale): a late watch echo of one of the leader's own earlier renews
/// was taken for an edit and answered with an immediate renew, which fed on itself once the API
/// server lagged. Only an edit of something other than renewTime triggers an early renew.
#[tokio::test(start_paused = true)]
async fn regression_a_late_echo_of_our_own_renew_does_not_trigger_a_renew() {
    let store = InMemoryLeaseStore::new();
    let a = replica(&store, "a").await;
    campaign(&a).started().await;
    sleep(Duration::from_millis(100)).await;
    let before = store.requests();
    // As a lagging watch would show it: our record with an older renewTime.
    store.edit(&key(), |lease| {
        lease.spec.as_mut().unwrap().renew_time =
            Some(MicroTime("2020-01-01T00:00:00Z".parse().unwrap()));
    });
    sleep(Duration::from_millis(500)).await; // less than the 2 s retry period
    assert_eq!(
        store.requests(),
        before,
        "no early renew for a renewTime-only difference"
    );
}

#[tokio::test(start_paused = true)]
async fn events_tell_when_each_replica_became_leader_and_stopped_leading() {
    let store = InMemoryLeaseStore::new();
    let (a, b) = (replica(&store, "a").await, replica(&store, "b").await);
    let mut first = campaign(&a);
    first.started().await;
    let mut second = campaign(&b);
    sleep(SECOND).await;
    a.shutdown().await;
    second.started().await;
    b.shutdown().await;
    sleep(SECOND).await;
    assert_eq!(
        store.events(&key()),
        [
            "a became leader",
            "a stopped leading",
            "b became leader",
            "b stopped leading"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn events_can_be_turned_off() {
    let store = InMemoryLeaseStore::new();
    let quiet = Runtime::builder()
        .store(store.clone())
        .identity("quiet")
        .namespace(NAMESPACE)
        .events(false)
        .build()
        .await
        .unwrap();
    campaign(&quiet).started().await;
    quiet.shutdown().await;
    assert!(store.events(&key()).is_empty());
}

#[tokio::test(start_paused = true)]
async fn refused_events_leave_the_election_unharmed() {
    let store = InMemoryLeaseStore::new();
    store.set_fault(Some(Fault::EventsForbidden));
    let a = replica(&store, "a").await;
    for _ in 0..3 {
        let mut work = campaign(&a);
        work.started().await;
        let election = a.election(LEASE).unwrap();
        election.health_check(Duration::ZERO).unwrap();
        store.edit(&key(), |lease| {
            lease.spec.as_mut().unwrap().holder_identity = Some("someone-else".into());
        });
        work.stopped().await;
        store.edit(&key(), |lease| {
            lease.spec.as_mut().unwrap().holder_identity = Some(String::new());
        });
    }
    let status = a.election(LEASE).unwrap().status().borrow().clone();
    assert!(
        !status.permission_denied && status.last_error.is_none(),
        "{status:?}"
    );
    assert!(store.events(&key()).is_empty());
    a.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn labels_are_set_when_taking_the_lease_kept_on_renew_and_merged_over_others() {
    let store = InMemoryLeaseStore::new();
    let labelled = |identity: &'static str, tier: &'static str| {
        Runtime::builder()
            .store(store.clone())
            .identity(identity)
            .namespace(NAMESPACE)
            .lease_labels([("app.kubernetes.io/name", "billing"), ("tier", tier)])
            .build()
    };
    let a = labelled("a", "gold").await.unwrap();
    let labels = || {
        store
            .lease(&key())
            .unwrap()
            .metadata
            .labels
            .unwrap_or_default()
    };
    campaign(&a).started().await;
    assert_eq!(labels()["tier"], "gold");
    // Someone adds a label of their own: it stays through our renews.
    store.edit(&key(), |lease| {
        let own = lease.metadata.labels.get_or_insert_with(Default::default);
        own.insert("owner".into(), "team-a".into());
    });
    sleep(10 * SECOND).await;
    assert_eq!(
        (labels()["tier"].as_str(), labels()["owner"].as_str()),
        ("gold", "team-a")
    );
    a.shutdown().await;
    let b = labelled("b", "silver").await.unwrap();
    campaign(&b).started().await;
    assert_eq!(labels()["tier"], "silver", "the new holder's labels");
    assert_eq!(labels()["owner"], "team-a");
    b.shutdown().await;

    let invalid = Runtime::builder()
        .store(store.clone())
        .lease_labels([("not a key", "x")])
        .build()
        .await;
    assert!(matches!(
        invalid,
        Err(Error::InvalidName {
            what: "label key",
            ..
        })
    ));
}

/// An in-memory store whose feeds come up `delay` after subscribing (as a watch lists), and that
/// records when each request was made.
#[derive(Clone)]
struct Recorded {
    inner: InMemoryLeaseStore,
    delay: Duration,
    requests: Arc<Mutex<Vec<(&'static str, Instant)>>>,
}

impl Recorded {
    fn new(delay: Duration) -> Self {
        Recorded {
            inner: InMemoryLeaseStore::new(),
            delay,
            requests: Arc::default(),
        }
    }

    fn note(&self, verb: &'static str) {
        self.requests.lock().unwrap().push((verb, Instant::now()));
    }

    fn made(&self, verb: &str) -> Vec<Instant> {
        let requests = self.requests.lock().unwrap();
        requests
            .iter()
            .filter(|(v, _)| *v == verb)
            .map(|(_, at)| *at)
            .collect()
    }
}

impl LeaseStore for Recorded {
    fn get<'a>(
        &'a self,
        key: &'a LeaseKey,
    ) -> BoxFuture<'a, leader_runtime::Result<Option<Lease>>> {
        self.note("get");
        self.inner.get(key)
    }

    fn create<'a>(
        &'a self,
        key: &'a LeaseKey,
        lease: Lease,
    ) -> BoxFuture<'a, leader_runtime::Result<Lease>> {
        self.note("create");
        self.inner.create(key, lease)
    }

    fn replace<'a>(
        &'a self,
        key: &'a LeaseKey,
        lease: Lease,
    ) -> BoxFuture<'a, leader_runtime::Result<Lease>> {
        self.note("replace");
        self.inner.replace(key, lease)
    }

    fn subscribe(&self, key: &LeaseKey) -> watch::Receiver<Observation> {
        let mut inner = self.inner.subscribe(key);
        let (sender, feed) = watch::channel(Observation::Unknown);
        let delay = self.delay;
        tokio::spawn(async move {
            sleep(delay).await;
            loop {
                sender.send_replace(inner.borrow_and_update().clone());
                if inner.changed().await.is_err() || sender.is_closed() {
                    return;
                }
            }
        });
        feed
    }
}

/// Leads `count` leases on `runtime` until their tokens fire.
fn lead_many(
    runtime: &Runtime,
    count: usize,
) -> Vec<tokio::task::JoinHandle<leader_runtime::Result<()>>> {
    (0..count)
        .map(|i| {
            let election = runtime.election(&format!("lease-{i}")).unwrap();
            tokio::spawn(async move {
                election
                    .lead(|leadership| async move { leadership.token().cancelled().await })
                    .await
            })
        })
        .collect()
}

/// Regression (issue 13, memory per lease): a follower read its lease with a GET as soon as it
/// started, before its watch had listed, so a thousand leases starting at once sent a thousand
/// GETs, each on a connection of its own. The first read now comes from the feed.
#[tokio::test(start_paused = true)]
async fn starting_followers_wait_for_the_feeds_first_list_instead_of_a_get_each() {
    let store = Recorded::new(Duration::from_millis(300));
    let a = replica_over(store.clone(), "a").await;
    let terms = lead_many(&a, 100);
    sleep(10 * SECOND).await;
    assert_eq!(store.made("create").len(), 100, "every lease created once");
    assert!(
        store.made("get").is_empty(),
        "{} GETs",
        store.made("get").len()
    );
    a.shutdown().await;
    for term in terms {
        assert!(term.await.unwrap().is_ok());
    }

    // A feed that never lists: each lease is read after one retry period.
    let silent = Recorded::new(Duration::from_secs(3600));
    let b = replica_over(silent.clone(), "b").await;
    let started = Instant::now();
    let _terms = lead_many(&b, 10);
    sleep(10 * SECOND).await;
    let gets = silent.made("get");
    assert!(
        !gets.is_empty() && gets.iter().all(|&at| at - started >= 2 * SECOND),
        "{gets:?}"
    );
    b.shutdown().await;
}

/// Regression (issue 13, memory per lease): a replica that took many leases at once renewed
/// them all at the same instants, every retry period, in bursts of as many requests. The first
/// renew now comes at a random point of the second half of the retry period.
#[tokio::test(start_paused = true)]
async fn the_renews_of_leases_taken_together_are_spread_over_the_retry_period() {
    let store = Recorded::new(Duration::ZERO);
    let a = replica_over(store.clone(), "a").await;
    let _terms = lead_many(&a, 200);
    sleep(5 * SECOND).await;
    let renews = store.made("replace");
    assert!(renews.len() >= 200, "{} renews", renews.len());
    let busiest = renews
        .iter()
        .map(|&from| {
            renews
                .iter()
                .filter(|&&t| t >= from && t < from + Duration::from_millis(10))
                .count()
        })
        .max()
        .unwrap();
    assert!(busiest <= 20, "{busiest} renews within 10 ms");
    a.shutdown().await;
}
