//! The public face of one lease's election: [`Election`], the [`Leadership`] handed to the work,
//! and the [`LeaseStatus`] anyone can watch.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::metrics::{DeadlineElapsed, Recorder};
use crate::runtime::Common;
use crate::store::LeaseKey;
use crate::{ElectionConfig, Error, Result, Verb};

/// One leadership term: from acquiring the lease until the token fires.
#[derive(Clone)]
pub(crate) struct Term {
    pub(crate) token: CancellationToken,
    pub(crate) fencing_token: i32,
    /// When the term ends unless renewed: send time of the last successful renew + renew deadline.
    pub(crate) deadline: Deadline,
    /// The work running in this term; the elector waits for it before anyone else can lead.
    pub(crate) tracker: TaskTracker,
    /// The [`Leadership`]s handed out by [`Election::leadership`] (to request handlers, say);
    /// the elector waits for them too, up to the hard-stop grace.
    pub(crate) handed_out: TaskTracker,
}

impl Term {
    /// Whether the term is still on: not ended by the elector, and its deadline not passed. A
    /// term past its deadline is over even if the elector has not run since (the process was
    /// paused, say): this fires its token so that every holder of it sees the end at once.
    pub(crate) fn is_live(&self) -> bool {
        self.deadline.keeps(&self.token)
    }
}

/// The end of a term as last extended by a renew, readable by the work without the elector.
#[derive(Clone, Debug)]
pub(crate) struct Deadline(Arc<std::sync::Mutex<Instant>>);

impl Deadline {
    pub(crate) fn new(at: Instant) -> Self {
        Deadline(Arc::new(std::sync::Mutex::new(at)))
    }

    pub(crate) fn get(&self) -> Instant {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn set(&self, at: Instant) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = at;
    }

    /// Whether `token`'s term is still on: not cancelled, and this deadline not passed. Past the
    /// deadline it cancels `token`, so everyone holding it sees the end, even if the elector has
    /// not run since.
    pub(crate) fn keeps(&self, token: &CancellationToken) -> bool {
        if token.is_cancelled() {
            return false;
        }
        if Instant::now() >= self.get() {
            token.cancel();
            return false;
        }
        true
    }
}

/// State shared between an [`Election`]'s handles and its elector task.
pub(crate) struct ElectionShared {
    pub(crate) key: LeaseKey,
    pub(crate) identity: String,
    pub(crate) config: ElectionConfig,
    /// `Some` while this replica leads.
    term: watch::Sender<Option<Term>>,
    /// How many [`Election::lead`] calls wait for a term, and how many run their work.
    pub(crate) interest: watch::Sender<Interest>,
    status: watch::Sender<LeaseStatus>,
    /// The holder as last seen; changes only when the holder, its address or its token does.
    pub(crate) leader: watch::Sender<Option<Leader>>,
    /// Counters of terms, renews and failed requests.
    pub(crate) metrics: Recorder,
    /// What the runtime's elections share.
    pub(crate) common: Arc<Common>,
    /// The Service to point at this replica while it leads, if one was asked for.
    #[cfg(feature = "leader-service")]
    pub(crate) leader_service: Option<crate::leader_service::LeaderService>,
}

impl ElectionShared {
    pub(crate) fn new(key: LeaseKey, config: ElectionConfig, common: Arc<Common>) -> Self {
        let identity = common.identity.clone();
        let status = LeaseStatus {
            namespace: key.namespace.clone(),
            lease: key.name.clone(),
            identity: identity.clone(),
            lease_duration: config.lease_duration,
            holder: None,
            is_leader: false,
            transitions: None,
            fencing_token: None,
            last_renew: None,
            observed_change: None,
            last_error: None,
            watch_error: None,
            permission_denied: false,
        };
        ElectionShared {
            identity,
            config,
            term: watch::channel(None).0,
            interest: watch::channel(Interest::default()).0,
            status: watch::channel(status).0,
            leader: watch::channel(None).0,
            metrics: Recorder::default(),
            #[cfg(feature = "leader-service")]
            leader_service: (common.leader_services.as_ref())
                .and_then(|services| services.for_lease(&key)),
            key,
            common,
        }
    }

    pub(crate) fn publish_term(&self, term: Option<Term>) {
        let began = term.is_some();
        let was = self.term.send_replace(term).is_some();
        if let Some(pod_cost) = &self.common.pod_cost {
            match (was, began) {
                (false, true) => pod_cost.term_began(),
                (true, false) => pod_cost.term_ended(),
                _ => {}
            }
        }
    }

    /// Changes the status; watchers are woken only when something changed.
    pub(crate) fn update_status(&self, change: impl FnOnce(&mut LeaseStatus)) {
        self.status.send_if_modified(|status| {
            let before = status.clone();
            change(status);
            *status != before
        });
    }

    pub(crate) fn timeout_error(&self, verb: Verb) -> Error {
        Error::Api {
            verb,
            namespace: self.key.namespace.clone(),
            name: self.key.name.clone(),
            message: format!(
                "no answer within the renew deadline ({:?})",
                self.config.renew_deadline
            ),
            source: Some(Box::new(DeadlineElapsed)),
        }
    }
}

/// The election for one lease in a [`Runtime`](crate::Runtime).
///
/// Cheap to clone; every clone, and every [`Runtime::election`](crate::Runtime::election) call for
/// the same lease, shares one election.
#[derive(Clone)]
pub struct Election {
    pub(crate) shared: Arc<ElectionShared>,
    pub(crate) shutdown: CancellationToken,
}

impl std::fmt::Debug for Election {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Election")
            .field("lease", &self.shared.key)
            .field("identity", &self.shared.identity)
            .finish_non_exhaustive()
    }
}

impl Election {
    /// Waits until this replica leads the lease, then runs `work` with the [`Leadership`] of that
    /// term and returns what it returns.
    ///
    /// - The replica campaigns only while some `lead` call is waiting or running. When the last
    ///   one returns, the lease is released so that another replica can take over at once.
    /// - The work runs as a task owned by the runtime. When leadership ends (renew deadline,
    ///   another holder, the lease deleted, or shutdown), its token fires. If the work has not
    ///   returned [`ElectionConfig::hard_stop_grace`] later, it is dropped and this returns
    ///   [`Error::HardStopped`].
    ///   Dropping is cooperative (see [`ElectionConfig::hard_stop_grace`]): keep the work async.
    /// - It runs once: after losing leadership it is not started again. Call `lead` again (in a
    ///   loop) to run again in a later term.
    /// - Dropping the returned future cancels the work's token.
    ///
    /// # Errors
    /// [`Error::ShutDown`] if the runtime shuts down before this replica leads,
    /// [`Error::HardStopped`] or [`Error::WorkPanicked`] as described above.
    ///
    /// ```
    /// # use leader_runtime::{Runtime, testing::InMemoryLeaseStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> leader_runtime::Result<()> {
    /// # let runtime = Runtime::builder().store(InMemoryLeaseStore::new()).build().await?;
    /// let election = runtime.election("billing-sync")?;
    /// let synced = election
    ///     .lead(|leadership| async move {
    ///         // Only one replica gets here at a time. Stop when the token fires.
    ///         let fencing = leadership.fencing_token();
    ///         tokio::select! {
    ///             () = leadership.token().cancelled() => None,
    ///             () = std::future::ready(()) => Some(fencing),
    ///         }
    ///     })
    ///     .await?;
    /// assert_eq!(synced, Some(0));
    /// # runtime.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn lead<F, Fut, T>(&self, work: F) -> Result<T>
    where
        F: FnOnce(Leadership) -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let grace = self.shared.config.hard_stop_grace();
        let lease = || self.shared.key.to_string();
        let mut work = work;
        loop {
            let waiting = InterestGuard::waiting(&self.shared);
            let term = self.wait_for_term().await?;
            // Counted as running before it stops counting as waiting, so the count never reads idle.
            let running = InterestGuard::running(&self.shared);
            drop(waiting);
            let token = term.token.child_token();
            let _cancel_on_drop = token.clone().drop_guard();
            let leadership = Leadership {
                token: token.clone(),
                deadline: term.deadline.clone(),
                fencing_token: term.fencing_token,
                key: self.shared.key.clone(),
                identity: self.shared.identity.clone(),
                _handed_out: None,
            };
            let task = term.tracker.spawn(async move {
                let _running = running;
                // The term may have ended between handing it out and this task starting (or
                // its deadline passed while the process was paused): then nothing of the work
                // runs, and it goes back to wait for the next term.
                if !leadership.is_leading() {
                    return Run::NotStarted(work);
                }
                let future = work(leadership);
                tokio::select! {
                    biased;
                    output = future => Run::Finished(output),
                    () = async { token.cancelled().await; tokio::time::sleep(grace).await } => Run::HardStopped,
                }
            });
            return match task.await {
                Ok(Run::NotStarted(unused)) => {
                    work = unused;
                    continue;
                }
                Ok(Run::Finished(output)) => Ok(output),
                Ok(Run::HardStopped) => Err(Error::HardStopped {
                    lease: lease(),
                    grace,
                }),
                Err(error) if error.is_panic() => Err(Error::WorkPanicked { lease: lease() }),
                Err(_) => Err(Error::ShutDown { lease: lease() }),
            };
        }
    }

    /// While this replica leads, runs `tick` every `period`; after losing leadership, campaigns
    /// again. Returns `Ok(())` when the runtime shuts down. This is the periodic form of
    /// `#[leader_only(every = "...")]`, and ShedLock's "one instance runs the scheduled task".
    ///
    /// - The first tick comes as soon as this replica leads, then one per period, each with the
    ///   [`Leadership`] of the current term.
    /// - Ticks never overlap: a tick that overruns its period delays the next one, and the ticks
    ///   it missed are skipped, not caught up.
    /// - No tick starts once the term is over, also when the process resumes after a pause past
    ///   its deadline ([`Leadership::is_leading`] reads the clock).
    /// - A term that ends abnormally (the tick ignored its token past the hard-stop grace, or
    ///   panicked) is logged, and the replica campaigns again.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a zero period; [`Error::ShutDown`] if the runtime had shut
    /// down before the call.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use leader_runtime::{Runtime, testing::InMemoryLeaseStore};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> leader_runtime::Result<()> {
    /// # let runtime = Runtime::builder().store(InMemoryLeaseStore::new()).build().await?;
    /// let election = runtime.election("hourly-cleanup")?;
    /// # let stop = runtime.clone();
    /// # tokio::spawn(async move { tokio::time::sleep(Duration::from_secs(3 * 3600 + 1)).await; stop.shutdown().await });
    /// election
    ///     .lead_every(Duration::from_secs(3600), |leadership| async move {
    ///         println!("cleaning up as leader of term {}", leadership.fencing_token());
    ///     })
    ///     .await?; // returns when the runtime shuts down
    /// # Ok(())
    /// # }
    /// ```
    pub async fn lead_every<F, Fut>(&self, period: Duration, tick: F) -> Result<()>
    where
        F: Fn(Leadership) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if period.is_zero() {
            return Err(Error::InvalidConfig {
                reason: format!(
                    "the period of `lead_every` on lease `{}` must be longer than zero",
                    self.shared.key
                ),
            });
        }
        if self.shutdown.is_cancelled() {
            return Err(Error::ShutDown {
                lease: self.shared.key.to_string(),
            });
        }
        let tick = Arc::new(tick);
        loop {
            let tick = Arc::clone(&tick);
            let term = self.lead(move |leadership| async move {
                let mut interval = tokio::time::interval(period);
                interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
                loop {
                    tokio::select! {
                        biased;
                        () = leadership.token().cancelled() => return,
                        _ = interval.tick() => {
                            if !leadership.is_leading() {
                                return;
                            }
                            tick(leadership.clone()).await;
                        }
                    }
                }
            });
            match term.await {
                Ok(()) => {}
                Err(Error::ShutDown { .. }) => return Ok(()),
                Err(error) => {
                    tracing::warn!(
                        lease = %self.shared.key,
                        %error,
                        "periodic leader work ended abnormally; campaigning again"
                    );
                }
            }
        }
    }

    async fn wait_for_term(&self) -> Result<Term> {
        let mut terms = self.shared.term.subscribe();
        loop {
            if self.shutdown.is_cancelled() {
                return Err(Error::ShutDown {
                    lease: self.shared.key.to_string(),
                });
            }
            if let Some(term) = terms
                .borrow_and_update()
                .as_ref()
                .filter(|term| term.is_live())
            {
                return Ok(term.clone());
            }
            tokio::select! {
                () = self.shutdown.cancelled() => {}
                changed = terms.changed() => {
                    if changed.is_err() {
                        return Err(Error::ShutDown { lease: self.shared.key.to_string() });
                    }
                }
            }
        }
    }

    /// The election's status, kept current by the runtime: who holds the lease, whether this
    /// replica leads, its last renew and its errors. It changes with every renew (once per
    /// retry period while leading), so awaiting [`changed`](watch::Receiver::changed) on it
    /// wakes that often; to follow changes of leader, as client-go's `OnNewLeader` does, use
    /// [`leader_changes`](Self::leader_changes), which changes with the holder only.
    ///
    /// ```
    /// # use leader_runtime::{Runtime, testing::InMemoryLeaseStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> leader_runtime::Result<()> {
    /// # let runtime = Runtime::builder().store(InMemoryLeaseStore::new()).build().await?;
    /// let election = runtime.election("reports")?;
    /// let status = election.status().borrow().clone();
    /// if let Some(error) = &status.last_error {
    ///     eprintln!("{}: {error}", status.lease);
    /// }
    /// # runtime.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn status(&self) -> watch::Receiver<LeaseStatus> {
        self.shared.status.subscribe()
    }

    /// Who holds the lease now, as this replica last saw it: its identity, the address it
    /// serves requests on (when it published one, see
    /// [`RuntimeBuilder::address`](crate::RuntimeBuilder::address)) and its fencing token.
    /// `None` while nobody holds it, or before the lease was first read. A holder that died
    /// stays here until another replica takes the lease over (at most a lease duration later).
    pub fn leader(&self) -> Option<Leader> {
        self.shared.leader.borrow().clone()
    }

    /// [`leader`](Self::leader) as a watch: it changes when the holder, its address or its
    /// fencing token does, not on every renew. Await
    /// [`changed`](watch::Receiver::changed) to follow it, as client-go's `OnNewLeader` with
    /// the address.
    ///
    /// ```
    /// # use leader_runtime::{Runtime, testing::InMemoryLeaseStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> leader_runtime::Result<()> {
    /// # let runtime = Runtime::builder().store(InMemoryLeaseStore::new()).build().await?;
    /// let election = runtime.election("writes")?;
    /// let mut leaders = election.leader_changes();
    /// tokio::spawn(async move {
    ///     while leaders.changed().await.is_ok() {
    ///         if let Some(leader) = leaders.borrow_and_update().as_ref() {
    ///             println!("send writes to {:?} ({})", leader.address, leader.identity);
    ///         }
    ///     }
    /// });
    /// # runtime.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn leader_changes(&self) -> watch::Receiver<Option<Leader>> {
        self.shared.leader.subscribe()
    }

    /// This replica's current term, if it leads the lease now: for leader-only work that does
    /// not run inside [`lead`](Self::lead), such as a request handler that writes only on the
    /// leader (see the `axum` feature's `LeaderOnly`). Something else must keep the replica
    /// campaigning (a [`lead`](Self::lead) call waiting or running); this only looks.
    ///
    /// When the term ends, the elector waits for every `Leadership` handed out here to be
    /// dropped, up to [`ElectionConfig::hard_stop_grace`], before it releases the lease: a
    /// write under way finishes before another replica can lead. Drop it when the work is
    /// done, and stop when its token fires.
    pub fn leadership(&self) -> Option<Leadership> {
        let term = self.shared.term.borrow().clone()?;
        if !term.is_live() {
            return None;
        }
        Some(Leadership {
            token: term.token.child_token(),
            deadline: term.deadline.clone(),
            fencing_token: term.fencing_token,
            key: self.shared.key.clone(),
            identity: self.shared.identity.clone(),
            _handed_out: Some(term.handed_out.token()),
        })
    }

    /// Where a request that only the leader may handle goes, from this replica's view: here
    /// (it leads, and gets the [`Leadership`] of the term), to the leader's published address,
    /// or nowhere yet (a handover is going on). The `axum` feature's `LeaderOnly` answers
    /// requests with it; with another server, map the three cases to its responses.
    pub fn route(&self) -> Route {
        if let Some(leadership) = self.leadership() {
            return Route::Here(leadership);
        }
        let Some(leader) = self.leader() else {
            return Route::Handover(None);
        };
        let status = self.shared.status.borrow();
        // No renew seen for a lease duration: the holder is presumably gone (killed, cut off),
        // and the lease is about to change hands.
        let silent = status
            .observed_change
            .is_none_or(|seen| seen.elapsed() >= status.lease_duration);
        drop(status);
        // A holder at this replica's own address is an earlier process of this replica (a
        // restarted container keeps its pod's IP) that has not been replaced yet: sending the
        // request there would send it back here.
        let own_address = self.shared.common.stamp.address.as_deref();
        match leader.address.clone() {
            Some(address)
                if !leader.is_self && !silent && own_address != Some(address.as_str()) =>
            {
                Route::Leader { leader, address }
            }
            _ => Route::Handover(Some(leader)),
        }
    }

    /// The namespace and name of the lease.
    pub fn key(&self) -> &LeaseKey {
        &self.shared.key
    }

    /// The timings of this election.
    pub fn config(&self) -> &ElectionConfig {
        &self.shared.config
    }

    /// A liveness check in the spirit of client-go's `HealthzAdaptor`: unhealthy when this replica
    /// believes it leads but has not renewed for longer than the lease duration plus `tolerance`.
    /// Since a leader steps down by itself at the renew deadline, that only happens when the
    /// elector is stuck (its task not polled, e.g. a thread blocked by synchronous work), which a
    /// restart fixes. Also unhealthy while the API server refuses the runtime for lack of RBAC
    /// rights, so the misconfiguration shows.
    ///
    /// # Errors
    /// [`Error::LeaderStuck`], or [`Error::Unhealthy`] with the API server's refusal.
    pub fn health_check(&self, tolerance: Duration) -> Result<()> {
        let status = self.shared.status.borrow().clone();
        check_health(&status, tolerance, Instant::now())
    }
}

/// The health check over a status, at `now`.
fn check_health(status: &LeaseStatus, tolerance: Duration, now: Instant) -> Result<()> {
    let lease = || format!("{}/{}", status.namespace, status.lease);
    if status.is_leader
        && let Some(last_renew) = status.last_renew
    {
        let since = now.saturating_duration_since(last_renew);
        let limit = status.lease_duration.saturating_add(tolerance);
        if since > limit {
            return Err(Error::LeaderStuck {
                lease: lease(),
                since,
                limit,
            });
        }
    }
    if status.permission_denied {
        let refusals = [&status.last_error, &status.watch_error];
        let message = refusals.into_iter().flatten().cloned().collect::<Vec<_>>();
        return Err(Error::Unhealthy {
            lease: lease(),
            message: message.join("; "),
        });
    }
    Ok(())
}

/// How a term's work task ended.
enum Run<F, T> {
    /// The term was over before the task started; here is the work back, unstarted.
    NotStarted(F),
    /// The work returned.
    Finished(T),
    /// The work ignored its token past the grace period and was dropped.
    HardStopped,
}

/// Who in this process wants the lease.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Interest {
    /// [`Election::lead`] calls waiting for a term: the elector campaigns while there are any.
    pub(crate) waiting: usize,
    /// Work running in the current term: the leader holds on while there is any.
    pub(crate) running: usize,
}

impl Interest {
    /// Nobody waits and nothing runs: time to release the lease.
    pub(crate) fn is_idle(&self) -> bool {
        self.waiting == 0 && self.running == 0
    }
}

/// Counts one waiting call or one running work for as long as it lives.
struct InterestGuard {
    shared: Arc<ElectionShared>,
    count: fn(&mut Interest) -> &mut usize,
}

impl InterestGuard {
    fn waiting(shared: &Arc<ElectionShared>) -> Self {
        Self::new(shared, |interest| &mut interest.waiting)
    }

    fn running(shared: &Arc<ElectionShared>) -> Self {
        Self::new(shared, |interest| &mut interest.running)
    }

    fn new(shared: &Arc<ElectionShared>, count: fn(&mut Interest) -> &mut usize) -> Self {
        shared
            .interest
            .send_modify(|interest| *count(interest) += 1);
        InterestGuard {
            shared: Arc::clone(shared),
            count,
        }
    }
}

impl Drop for InterestGuard {
    fn drop(&mut self) {
        let count = self.count;
        self.shared
            .interest
            .send_modify(|interest| *count(interest) = count(interest).saturating_sub(1));
    }
}

/// What the work of one leadership term receives.
#[derive(Clone, Debug)]
pub struct Leadership {
    token: CancellationToken,
    deadline: Deadline,
    fencing_token: i32,
    key: LeaseKey,
    identity: String,
    /// Holds the end of the term until dropped (a [`Election::leadership`] handed out).
    _handed_out: Option<TaskTrackerToken>,
}

impl Leadership {
    /// Fires when this term ends: at the latest at the renew deadline after the last successful
    /// renew was sent, always before any other candidate can consider the lease expired; at once
    /// when another holder or a deleted lease is seen; and on shutdown. Return promptly once it
    /// fires: the work is dropped [`ElectionConfig::hard_stop_grace`] later.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// The lease's `leaseTransitions` when this term began: greater than that of every earlier
    /// holder of the lease, also when this process re-creates a deleted lease (it counts on from
    /// the highest value it saw). It identifies a holder, not a term: a replica that renews its
    /// own record after a lapse (say the API server was unreachable past the renew deadline but
    /// nobody took over) keeps its token. Pass it to the systems you write to, so they can
    /// refuse writes from an older leader that has not noticed yet that it lost the lease (a
    /// paused process, for example), which no lease scheme can prevent on its own.
    pub fn fencing_token(&self) -> i32 {
        self.fencing_token
    }

    /// Completes when this term ends (the token fires). Unlike `token().cancelled()`, it owns
    /// what it waits on and borrows nothing, so it can go where a `'static` future is wanted:
    /// kube's `Controller::graceful_shutdown_on`, `tokio::spawn`, a struct field. (With a
    /// `CancellationToken` in hand, `token.clone().cancelled_owned()` is the same.)
    ///
    /// ```
    /// # use leader_runtime::{Runtime, testing::InMemoryLeaseStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> leader_runtime::Result<()> {
    /// # let runtime = Runtime::builder().store(InMemoryLeaseStore::new()).build().await?;
    /// let election = runtime.election("controller")?;
    /// election
    ///     .lead(|leadership| async move {
    ///         let stop = tokio::spawn(leadership.cancelled()); // a 'static future
    ///         leadership.token().cancel(); // as if the term ended
    ///         stop.await.unwrap();
    ///     })
    ///     .await?;
    /// # runtime.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn cancelled(&self) -> WaitForCancellationFutureOwned {
        self.token.clone().cancelled_owned()
    }

    /// Whether this term is still going on.
    ///
    /// Unlike `token().is_cancelled()`, this also reads the clock: past the term's deadline it
    /// fires the token itself and answers `false`, even if the runtime has not run since. Check
    /// it before each unit of work, so that a process resumed after a pause (SIGSTOP, a frozen
    /// VM) does not start one more unit of work on a lease it may have lost.
    pub fn is_leading(&self) -> bool {
        self.deadline.keeps(&self.token)
    }

    /// When this term ends unless renewed first: the send time of the last successful renew
    /// plus the renew deadline. Useful as a timeout for writes done as leader.
    pub fn valid_until(&self) -> Instant {
        self.deadline.get()
    }

    /// The lease this leadership is for.
    pub fn key(&self) -> &LeaseKey {
        &self.key
    }

    /// This replica's identity, as written to the lease's `holderIdentity`.
    pub fn identity(&self) -> &str {
        &self.identity
    }
}

/// Who holds a lease, as a replica last saw it ([`Election::leader`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Leader {
    /// The holder's identity, as in the lease's `holderIdentity`.
    pub identity: String,
    /// The address the holder serves requests on, `host:port`, when it published one for its
    /// current term ([`RuntimeBuilder::address`](crate::RuntimeBuilder::address)). `None` for a
    /// holder that published none, such as a client-go candidate.
    pub address: Option<String>,
    /// The holder's fencing token: the record's `leaseTransitions` (see
    /// [`Leadership::fencing_token`]).
    pub fencing_token: i32,
    /// Whether the record names this replica. (Whether this replica may act as leader right
    /// now is [`Election::leadership`]'s answer: the record may outlive the term.)
    pub is_self: bool,
}

/// Where a request that only the leader may handle goes ([`Election::route`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Route {
    /// This replica leads: handle it here, within this term (stop when its token fires).
    Here(Leadership),
    /// Another replica leads, and serves requests at `address`.
    Leader {
        /// The holder.
        leader: Leader,
        /// Its published address, `host:port`.
        address: String,
    },
    /// Nobody can handle it now; try again in a moment. Nobody holds the lease; or its holder
    /// is this replica, whose term is ending or not yet begun; or the holder has not renewed
    /// for a lease duration (it is presumably gone, and another replica will take over); or it
    /// published this replica's own address (an earlier process of this replica: a restarted
    /// container keeps its pod's IP); or it published no address (a client-go holder, say).
    /// The holder as last seen, if any.
    Handover(Option<Leader>),
}

/// What this replica knows about one lease.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseStatus {
    /// Namespace of the lease.
    pub namespace: String,
    /// Name of the lease.
    pub lease: String,
    /// This replica's identity.
    pub identity: String,
    /// This election's lease duration.
    pub lease_duration: Duration,
    /// The holder named by the record as last seen; `None` when nobody holds it.
    pub holder: Option<String>,
    /// Whether this replica leads now.
    pub is_leader: bool,
    /// `leaseTransitions` as last seen.
    pub transitions: Option<i32>,
    /// The fencing token of this replica's current or last term.
    pub fencing_token: Option<i32>,
    /// When this replica sent its last successful renew (or acquire) while leading.
    pub last_renew: Option<Instant>,
    /// When this replica last saw the record change, on its own clock.
    pub observed_change: Option<Instant>,
    /// The last failed request, cleared by the next success, or when the watch comes back after
    /// the API server was out of reach (not after an RBAC refusal).
    pub last_error: Option<String>,
    /// Why this replica follows the lease by polling instead of its watch: the error of the
    /// list or watch that feeds it, cleared when the watch is back.
    pub watch_error: Option<String>,
    /// Whether the API server refuses this replica for lack of RBAC rights: a request on the
    /// lease (see `last_error`), or the list or watch of its namespace (see `watch_error`).
    pub permission_denied: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader_status(last_renew: Instant) -> LeaseStatus {
        let shared = ElectionShared::new(
            LeaseKey::new("ns", "lease"),
            ElectionConfig::default(),
            Arc::new(Common::new("me")),
        );
        let mut status = shared.status.borrow().clone();
        status.is_leader = true;
        status.last_renew = Some(last_renew);
        status
    }

    #[test]
    fn a_leader_is_stuck_once_it_has_not_renewed_for_lease_duration_plus_tolerance() {
        let renewed = Instant::now();
        let status = leader_status(renewed);
        let tolerance = Duration::from_secs(5);
        check_health(&status, tolerance, renewed + Duration::from_secs(20)).unwrap();
        let error =
            check_health(&status, tolerance, renewed + Duration::from_secs(21)).unwrap_err();
        assert!(
            matches!(error, Error::LeaderStuck { since, limit, .. }
            if since == Duration::from_secs(21) && limit == Duration::from_secs(20)),
            "{error:?}"
        );
    }

    #[test]
    fn is_leading_reads_the_clock_and_fires_the_token_past_the_deadline() {
        let leadership = |deadline| Leadership {
            token: CancellationToken::new(),
            deadline: Deadline::new(deadline),
            fencing_token: 1,
            key: LeaseKey::new("ns", "lease"),
            identity: "me".into(),
            _handed_out: None,
        };
        let current = leadership(Instant::now() + Duration::from_secs(10));
        assert!(current.is_leading() && !current.token().is_cancelled());
        // As after a SIGSTOP: the deadline passed while nothing ran, the elector included.
        let resumed = leadership(Instant::now() - Duration::from_millis(1));
        assert!(!resumed.token().is_cancelled(), "nobody fired it yet");
        assert!(!resumed.is_leading());
        assert!(resumed.token().is_cancelled(), "is_leading fired it");
    }

    /// Regression (fault campaign, SIGSTOP): a process resumed after a pause longer than its
    /// renew deadline handed the stale term to `lead` calls, and work ran again on a lease that
    /// another replica held, until the elector task got to run.
    #[tokio::test(start_paused = true)]
    async fn regression_a_term_past_its_deadline_is_not_handed_out() {
        let shared = Arc::new(ElectionShared::new(
            LeaseKey::new("ns", "lease"),
            ElectionConfig::default(),
            Arc::new(Common::new("me")),
        ));
        let election = Election {
            shared: Arc::clone(&shared),
            shutdown: CancellationToken::new(),
        };
        let stale = Term::new(0, Instant::now() - Duration::from_millis(1));
        shared.publish_term(Some(stale.clone()));
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&ran);
        let call = tokio::spawn(async move {
            election
                .lead(move |_| async move { flag.store(true, std::sync::atomic::Ordering::SeqCst) })
                .await
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            !ran.load(std::sync::atomic::Ordering::SeqCst),
            "work ran on a stale term"
        );
        assert!(stale.token.is_cancelled(), "the stale term's token fired");
        assert!(!call.is_finished(), "still waiting for a live term");
        call.abort();
    }

    #[test]
    fn a_follower_is_never_stuck() {
        let renewed = Instant::now();
        let mut status = leader_status(renewed);
        status.is_leader = false;
        check_health(&status, Duration::ZERO, renewed + Duration::from_secs(3600)).unwrap();
    }

    #[test]
    fn other_errors_than_forbidden_keep_it_healthy() {
        let mut status = leader_status(Instant::now());
        status.is_leader = false;
        status.last_error = Some("connection refused".into());
        check_health(&status, Duration::ZERO, Instant::now()).unwrap();
        status.permission_denied = true;
        assert!(matches!(
            check_health(&status, Duration::ZERO, Instant::now()),
            Err(Error::Unhealthy { .. })
        ));
    }
}
