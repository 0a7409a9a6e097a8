//! The election state machine for one lease: follow, acquire, renew, step down, release.
//!
//! One elector task runs per lease per runtime. It campaigns only while some caller of
//! [`Election::lead`](crate::Election::lead) is interested, hands each leadership term to the
//! waiting work through a watch channel, and owns the term's work tasks so it can wait for them
//! before anyone else can take over.
//!
//! Timing rules (see [`ElectionConfig::hard_stop_grace`] for the safety argument):
//! - Expiry of someone else's lease is judged on our monotonic clock from when we saw its
//!   record change, never from timestamps in the record.
//! - As leader, every successful renew moves the deadline to `send time + renew deadline`; when
//!   the deadline passes, the term ends and its token fires.
//! - Seeing another holder, or the lease deleted, ends the term at once (after a confirming GET,
//!   since a watch event may predate our own write).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout, timeout_at};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::election::{Deadline, ElectionShared, Leader, Term};
use crate::metrics::LossReason;
use crate::record;
use crate::store::{FeedError, LeaseEvent, LeaseStore, Observation};
use crate::{Error, Result};

/// The last version of the lease we saw, and when (on our clock) its record last changed.
struct Seen {
    /// `None`: the lease did not exist.
    lease: Option<Arc<Lease>>,
    changed_at: Instant,
}

/// Why a leadership term ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TermEnd {
    /// No successful renew within the renew deadline.
    RenewDeadline,
    /// The record names another holder (taken over or edited by hand).
    OtherHolder,
    /// The lease was deleted.
    Deleted,
    /// Nobody in this process wants the lease any more.
    Idle,
    /// The runtime is shutting down.
    Shutdown,
}

impl TermEnd {
    /// The term ended against our will: why, for the metrics.
    fn loss(self) -> Option<LossReason> {
        match self {
            TermEnd::RenewDeadline => Some(LossReason::RenewDeadline),
            TermEnd::OtherHolder => Some(LossReason::OtherHolder),
            TermEnd::Deleted => Some(LossReason::Deleted),
            TermEnd::Idle | TermEnd::Shutdown => None,
        }
    }
}

/// A term in progress.
struct Leading {
    term: Term,
    /// Our last successful write, the base of the next compare-and-swap; shared with
    /// [`Seen`], so that a lease held costs one copy of its record.
    lease: Arc<Lease>,
    /// When the request of our last successful write was sent.
    renewed_at: Instant,
    /// Whether the feed has shown our last write. Watch events come in order, so after that
    /// any record naming another holder is newer than ours, with no need to confirm it.
    echoed: bool,
    /// Recording the `became leader` event, in the background; awaited (briefly) before the
    /// `stopped leading` one, so that the two come in order.
    became_leader: Option<JoinHandle<()>>,
}

/// How long the end of a term waits for its `stopped leading` event to be recorded.
const EVENT_WAIT: Duration = Duration::from_secs(2);

pub(crate) struct Elector {
    shared: Arc<ElectionShared>,
    store: Arc<dyn LeaseStore>,
    feed: watch::Receiver<Observation>,
    shutdown: CancellationToken,
    seen: Option<Seen>,
    /// The highest `leaseTransitions` ever seen, so a lease re-created after a deletion keeps
    /// counting up and fencing tokens keep increasing.
    highest_transitions: Option<i32>,
    /// RBAC refuses this replica's requests on the lease.
    requests_refused: bool,
    /// The feed is interrupted with this error.
    feed_error: Option<FeedError>,
    /// Keeps the replacement feed open once the store's own feed closed.
    feed_keepalive: Option<watch::Sender<Observation>>,
    /// When the elector was made, for the wait for the feed's first list.
    created: Instant,
    /// The wait for the feed's first list is over (it timed out).
    feed_waited: bool,
    /// The expiry before which the lease was last read ([`Elector::before_expiry`]).
    read_before: Option<Instant>,
}

impl Elector {
    pub(crate) fn new(
        shared: Arc<ElectionShared>,
        store: Arc<dyn LeaseStore>,
        shutdown: CancellationToken,
    ) -> Self {
        let feed = store.subscribe(&shared.key);
        Elector {
            shared,
            store,
            feed,
            shutdown,
            seen: None,
            highest_transitions: None,
            requests_refused: false,
            feed_error: None,
            feed_keepalive: None,
            created: Instant::now(),
            feed_waited: false,
            read_before: None,
        }
    }

    /// Runs the election until the runtime shuts down; a held lease is released on the way out.
    ///
    /// Not an `async fn`: the future holds the elector once, not twice (one elector task runs
    /// per lease, so its size counts).
    pub(crate) fn run(mut self) -> impl Future<Output = ()> + Send + 'static {
        let span = info_span!(
            "lease",
            lease = %self.shared.key.name,
            namespace = %self.shared.key.namespace,
            identity = %self.shared.identity,
        );
        async move {
            self.absorb_feed();
            while let Some(leading) = self.follow().await {
                if self.lead(leading).await == TermEnd::Shutdown {
                    break;
                }
            }
            self.shared.publish_term(None);
        }
        .instrument(span)
    }

    // ----- following -----

    /// Follows the lease until this replica acquires it (`Some`) or the runtime shuts down.
    async fn follow(&mut self) -> Option<Leading> {
        let mut interest = self.shared.interest.subscribe();
        loop {
            if self.shutdown.is_cancelled() {
                return None;
            }
            if self.feed.has_changed().unwrap_or(false) {
                self.absorb_feed();
            }
            let wanted = interest.borrow_and_update().waiting > 0;
            let mut poll_at = None;
            let mut wake_at = None;
            if wanted {
                match self.next_step() {
                    Step::Refresh => {
                        if let Err(error) = Box::pin(self.refresh()).await {
                            Box::pin(self.failed(error)).await;
                        }
                        continue;
                    }
                    Step::AwaitFeed(at) => {
                        tokio::select! {
                            () = self.shutdown.cancelled() => return None,
                            changed = self.feed.changed() => match changed {
                                Ok(()) => self.absorb_feed(),
                                Err(_) => self.feed_waited = true,
                            },
                            () = sleep_until(at) => self.feed_waited = true,
                        }
                        continue;
                    }
                    Step::Claim => match Box::pin(self.claim()).await {
                        Ok(Some(leading)) => return Some(leading),
                        Ok(None) => continue,
                        Err(error) => {
                            Box::pin(self.failed(error)).await;
                            continue;
                        }
                    },
                    Step::ReadBeforeClaim(expiry) => {
                        Box::pin(self.read_before_claim(expiry)).await;
                        continue;
                    }
                    Step::WaitUntil(at) => wake_at = Some(at),
                    Step::WaitForChange => {}
                }
                if !self.feed.borrow().is_known() {
                    poll_at = Some(Instant::now() + self.shared.config.jittered_retry_period());
                }
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return None,
                changed = self.feed.changed() => {
                    if changed.is_ok() {
                        self.absorb_feed();
                    } else {
                        // The store dropped the feed: poll from now on, on a feed that stays
                        // Unknown (its sender is kept so that it never reports closed again).
                        let (sender, feed) = watch::channel(Observation::Unknown);
                        self.feed = feed;
                        self.feed_keepalive = Some(sender);
                    }
                }
                _ = interest.changed() => {}
                () = sleep_until_opt(wake_at) => {}
                () = sleep_until_opt(poll_at) => {
                    if let Err(error) = Box::pin(self.refresh()).await {
                        Box::pin(self.failed(error)).await;
                    }
                }
            }
        }
    }

    /// What a follower that wants the lease does next, judged from what it has seen.
    fn next_step(&self) -> Step {
        let Some(seen) = &self.seen else {
            // Nothing seen yet: the feed's first list is on its way, and it spares a GET per
            // lease (a thousand leases starting at once would open as many connections). If it
            // does not come within a retry period, or reports a failure, read the lease.
            if !self.feed_waited && *self.feed.borrow() == Observation::Unknown {
                return Step::AwaitFeed(self.created + self.shared.config.retry_period);
            }
            return Step::Refresh;
        };
        let Some(lease) = &seen.lease else {
            return Step::Claim;
        };
        match record::holder(lease) {
            None => Step::Claim,
            Some(holder) if holder == self.shared.identity => Step::Claim,
            Some(_) => {
                let duration = record::lease_duration(lease, self.shared.config.lease_duration);
                match seen.changed_at.checked_add(duration) {
                    Some(at) if at <= Instant::now() => Step::Claim,
                    Some(at) => self.before_expiry(at),
                    // Held for longer than our clock can count: wait for a change.
                    None => Step::WaitForChange,
                }
            }
        }
    }

    /// Waiting for someone else's lease to expire at `expiry`: read it once more a quarter of a
    /// retry period before. After a lease duration of following through the watch alone, the
    /// connection pool is empty; the read pays for the new connection (TCP and TLS handshakes)
    /// and wakes the API server, so that the claim at `expiry` goes out at once on a warm
    /// connection, and a renew the watch did not show is seen before claiming, not after a
    /// conflict. The claim itself never comes earlier.
    fn before_expiry(&self, expiry: Instant) -> Step {
        if self.read_before == Some(expiry) {
            return Step::WaitUntil(expiry);
        }
        match expiry.checked_sub(self.shared.config.retry_period / 4) {
            Some(read_at) if read_at > Instant::now() => Step::WaitUntil(read_at),
            _ => Step::ReadBeforeClaim(expiry),
        }
    }

    /// The read of [`before_expiry`](Self::before_expiry), given up at the expiry; a failure is
    /// reported but waits for nothing: the claim at the expiry goes out whatever came of it.
    async fn read_before_claim(&mut self, expiry: Instant) {
        self.read_before = Some(expiry);
        match timeout_at(expiry, self.store.get(&self.shared.key)).await {
            Ok(Ok(lease)) => {
                self.succeeded(crate::Verb::Get);
                self.observe(lease);
            }
            Ok(Err(error)) => self.request_failed(&error),
            Err(_) => debug!("reading the lease before claiming it took until it expired"),
        }
    }

    /// Tries to become leader: create the lease, or take it over with compare-and-swap.
    /// `Ok(None)`: someone else won this round; what they wrote has been seen.
    async fn claim(&mut self) -> Result<Option<Leading>> {
        let shared = Arc::clone(&self.shared);
        let existing = self.seen.as_ref().and_then(|seen| seen.lease.clone());
        let sent = Instant::now();
        let attempt = match &existing {
            None => {
                let transitions = self.highest_transitions.map_or(0, |t| t.saturating_add(1));
                let lease = record::new_lease(
                    &shared.key,
                    &shared.identity,
                    &shared.config,
                    transitions,
                    &shared.common.stamp,
                );
                timeout_at(
                    sent + shared.config.renew_deadline,
                    self.store.create(&shared.key, lease),
                )
                .await
            }
            Some(current) => {
                let lease = record::claimed(
                    current,
                    &shared.identity,
                    &shared.config,
                    self.highest_transitions,
                    &shared.common.stamp,
                );
                timeout_at(
                    sent + shared.config.renew_deadline,
                    self.store.replace(&shared.key, lease),
                )
                .await
            }
        };
        let verb = if existing.is_none() {
            crate::Verb::Create
        } else {
            crate::Verb::Update
        };
        match attempt.map_err(|_| shared.timeout_error(verb))? {
            Ok(lease) => {
                self.succeeded(verb);
                let lease = Arc::new(lease);
                self.observe(Some(Arc::clone(&lease)));
                let fencing_token = record::transitions(&lease);
                info!(fencing_token, "became leader");
                let became_leader = self
                    .event(&lease, LeaseEvent::BecameLeader)
                    .map(|recording| tokio::spawn(recording.in_current_span()));
                Ok(Some(Leading {
                    term: Term::new(fencing_token, sent + shared.config.renew_deadline),
                    lease,
                    renewed_at: sent,
                    echoed: false,
                    became_leader,
                }))
            }
            Err(error) if error.is_conflict() || error.is_not_found() => {
                debug!(%error, "lost the race to acquire");
                shared.metrics.error(&error);
                self.refresh().await?;
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    // ----- leading -----

    /// Leads until the term ends; returns why. The term's work has stopped when this returns.
    async fn lead(&mut self, mut leading: Leading) -> TermEnd {
        let shared = Arc::clone(&self.shared);
        let config = shared.config;
        // The first renew at a random point of the second half of the retry period: the leases
        // of a replica that took many at once then renew spread over time, not in bursts.
        let phase = 0.5 + 0.5 * crate::identity::random_fraction();
        let mut next_renew = leading.renewed_at + config.retry_period.mul_f64(phase);
        // The leader Service points here before the work starts, so that the work can count on
        // it; bounded by the first renew, so that the renew is never late for it.
        #[cfg(feature = "leader-service")]
        if let Some(service) = &shared.leader_service {
            let fencing_token = leading.term.fencing_token;
            let pointed = service.point_here(&shared.identity, fencing_token, next_renew);
            if Box::pin(pointed).await == crate::leader_service::Pointed::TryAgain {
                crate::leader_service::keep_trying(Arc::clone(&shared), &leading.term);
            }
        }
        shared.publish_term(Some(leading.term.clone()));
        shared.update_status(|status| {
            status.is_leader = true;
            status.fencing_token = Some(leading.term.fencing_token);
            status.last_renew = Some(leading.renewed_at);
        });
        shared.metrics.acquired();
        let mut interest = shared.interest.subscribe();
        let end = loop {
            let deadline = leading.renewed_at + config.renew_deadline;
            if interest.borrow_and_update().is_idle() {
                break TermEnd::Idle;
            }
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break TermEnd::Shutdown,
                () = sleep_until(deadline) => break TermEnd::RenewDeadline,
                () = sleep_until(next_renew) => {
                    match timeout_at(deadline, Box::pin(self.renew(&mut leading))).await {
                        Err(_) => break TermEnd::RenewDeadline,
                        Ok(Ok(())) => {
                            next_renew = leading.renewed_at + config.retry_period;
                            debug!("renewed");
                        }
                        Ok(Err(Renewal::Lost(end))) => break end,
                        Ok(Err(Renewal::Failed(error))) => {
                            debug!(%error, "renew failed; retrying until the renew deadline");
                            self.request_failed(&error);
                            // Stretched by up to a tenth, so that leases that failed together
                            // do not retry together.
                            let stretch = 1.0 + 0.1 * crate::identity::random_fraction();
                            next_renew = Instant::now() + config.retry_period.mul_f64(stretch);
                        }
                    }
                }
                changed = self.feed.changed(), if !self.feed_closed() => {
                    if changed.is_ok() {
                        let check = Box::pin(self.check_feed_while_leading(&mut leading));
                        match timeout_at(deadline, check).await {
                            Err(_) => break TermEnd::RenewDeadline,
                            Ok(FeedCheck::Lost(end)) => break end,
                            Ok(FeedCheck::RenewNow) => next_renew = Instant::now(),
                            Ok(FeedCheck::Fine) => {}
                        }
                    }
                }
                _ = interest.changed() => {}
            }
        };
        Box::pin(self.end_term(leading, end)).await;
        end
    }

    /// Renews once: compare-and-swap on our last write; on a conflict, re-read and renew on the
    /// fresh version if we are still the holder.
    async fn renew(&mut self, leading: &mut Leading) -> std::result::Result<(), Renewal> {
        let shared = Arc::clone(&self.shared);
        let mut base = Arc::clone(&leading.lease);
        for _ in 0..2 {
            let sent = Instant::now();
            let lease = record::claimed(
                &base,
                &shared.identity,
                &shared.config,
                None,
                &shared.common.stamp,
            );
            match self.store.replace(&shared.key, lease).await {
                Ok(lease) => {
                    self.succeeded(crate::Verb::Update);
                    let lease = Arc::new(lease);
                    self.observe(Some(Arc::clone(&lease)));
                    leading.lease = lease;
                    leading.renewed_at = sent;
                    leading.echoed = false;
                    leading
                        .term
                        .deadline
                        .set(sent + shared.config.renew_deadline);
                    shared.update_status(|status| status.last_renew = Some(sent));
                    shared.metrics.renewed(sent.elapsed());
                    return Ok(());
                }
                Err(error) if error.is_not_found() => return Err(Renewal::Lost(TermEnd::Deleted)),
                Err(error) if error.is_conflict() => {
                    let current = self.store.get(&shared.key).await.map_err(Renewal::Failed)?;
                    let current = current.map(Arc::new);
                    self.observe(current.clone());
                    match current {
                        None => return Err(Renewal::Lost(TermEnd::Deleted)),
                        Some(current) if record::holder(&current) == Some(&shared.identity) => {
                            base = current
                        }
                        Some(_) => return Err(Renewal::Lost(TermEnd::OtherHolder)),
                    }
                }
                Err(error) => return Err(Renewal::Failed(error)),
            }
        }
        Err(Renewal::Failed(Error::Conflict {
            verb: crate::Verb::Update,
            namespace: shared.key.namespace.clone(),
            name: shared.key.name.clone(),
        }))
    }

    /// A feed event while leading. If it shows the lease gone or held by someone else, confirm
    /// with a GET (the event may predate our own last write) and end the term if it holds. If it
    /// shows our lease edited otherwise (say a shorter `leaseDurationSeconds`, which followers
    /// start using at once), renew at once so the record is ours again. The caller bounds this
    /// by the renew deadline.
    async fn check_feed_while_leading(&mut self, leading: &mut Leading) -> FeedCheck {
        let feed = self.feed.borrow_and_update().clone();
        self.feed_changed(&feed);
        let suspicious = match &feed {
            Observation::Unknown | Observation::Interrupted(_) => false,
            Observation::Absent => true,
            Observation::Present(lease) if record::holder(lease) == Some(&self.shared.identity) => {
                if record::same_record(lease, &leading.lease) {
                    leading.echoed = true;
                    return FeedCheck::Fine;
                }
                // A late echo of one of our earlier renews differs only in renewTime: renewing
                // again for it would add load exactly when the API server lags behind.
                if record::same_but_renew_time(lease, &leading.lease) {
                    return FeedCheck::Fine;
                }
                return FeedCheck::RenewNow;
            }
            Observation::Present(_) => true,
        };
        if suspicious && leading.echoed {
            // Newer than our last write (see `Leading::echoed`): the lease was taken, released
            // by someone else or deleted. End the term now; a GET would only add its latency.
            let lease = match feed {
                Observation::Present(lease) => Some(lease),
                _ => None,
            };
            let end = if lease.is_some() {
                TermEnd::OtherHolder
            } else {
                TermEnd::Deleted
            };
            self.observe(lease);
            return FeedCheck::Lost(end);
        }
        if !suspicious {
            return FeedCheck::Fine;
        }
        match self.store.get(&self.shared.key).await {
            Ok(None) => {
                self.observe(None::<Lease>);
                FeedCheck::Lost(TermEnd::Deleted)
            }
            Ok(Some(lease)) => {
                let ours = record::holder(&lease) == Some(&self.shared.identity);
                self.observe(Some(lease));
                if ours {
                    FeedCheck::Fine
                } else {
                    FeedCheck::Lost(TermEnd::OtherHolder)
                }
            }
            // Cannot confirm: keep leading; the renew deadline still bounds the term.
            Err(error) => {
                self.request_failed(&error);
                FeedCheck::Fine
            }
        }
    }

    /// Ends a term: fires the token, waits for the work (it is dropped at the hard-stop grace at
    /// the latest), and releases the lease when leaving voluntarily.
    async fn end_term(&mut self, leading: Leading, end: TermEnd) {
        let shared = Arc::clone(&self.shared);
        leading.term.token.cancel();
        shared.publish_term(None);
        shared.update_status(|status| status.is_leader = false);
        match end {
            TermEnd::Idle | TermEnd::Shutdown => info!(reason = ?end, "stepping down"),
            _ => warn!(reason = ?end, "lost leadership"),
        }
        if let Some(reason) = end.loss() {
            shared.metrics.lost(reason);
        }
        leading.term.tracker.close();
        leading.term.tracker.wait().await;
        leading.term.handed_out.close();
        let grace = shared.config.hard_stop_grace();
        if timeout(grace, leading.term.handed_out.wait())
            .await
            .is_err()
        {
            warn!(
                ?grace,
                "a leadership handed out (a request under way as leader) was not dropped within \
                 the hard-stop grace; releasing the lease anyway"
            );
        }
        // Before the release, so that the next leader's endpoint comes after; only if it still
        // points at this term, so that a late one never removes a newer leader's endpoint.
        #[cfg(feature = "leader-service")]
        if let Some(service) = &shared.leader_service {
            let until = Instant::now() + shared.config.retry_period;
            let fencing_token = leading.term.fencing_token;
            service.clear(&shared.identity, fencing_token, until).await;
        }
        let last_written = Arc::clone(&leading.lease);
        if matches!(end, TermEnd::Idle | TermEnd::Shutdown) {
            self.release(leading.lease).await;
        }
        // After the release, so that the next leader is not kept waiting; bounded, so that a
        // slow API server cannot hold up a shutdown.
        if let Some(recording) = self.event(&last_written, LeaseEvent::StoppedLeading) {
            let became_leader = leading.became_leader.map(|recording| async {
                let _ = recording.await;
            });
            let both = async {
                if let Some(became_leader) = became_leader {
                    became_leader.await;
                }
                recording.await;
            };
            if tokio::time::timeout(EVENT_WAIT, both).await.is_err() {
                debug!("recording the `stopped leading` event took too long; left behind");
            }
        }
    }

    /// Recording `event` about `lease`, unless events are off, or refused in its namespace.
    /// Failures are logged, never fatal: a refusal once, as a warning, and no event is recorded
    /// in that namespace any more.
    fn event(
        &self,
        lease: &Lease,
        event: LeaseEvent,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        let common = Arc::clone(&self.shared.common);
        let namespace = self.shared.key.namespace.clone();
        if !common.events || !common.reporter.may_record_events(&namespace) {
            return None;
        }
        let recording = self.store.record_event(lease, &self.shared.identity, event);
        Some(async move {
            match recording.await {
                Ok(()) => {}
                Err(error @ Error::EventsForbidden { .. }) => {
                    common.reporter.events_refused(&namespace, &error);
                }
                Err(error) => debug!(%error, "recording a leader-election event failed"),
            }
        })
    }

    /// Writes the record with no holder so that another candidate takes over at once; gives up
    /// after the renew deadline (the lease then expires on its own).
    async fn release(&mut self, ours: Arc<Lease>) {
        let deadline = Instant::now() + self.shared.config.renew_deadline;
        if timeout_at(deadline, self.try_release(ours)).await.is_err() {
            warn!("releasing the lease timed out; it expires on its own");
        }
    }

    async fn try_release(&mut self, ours: Arc<Lease>) {
        let shared = Arc::clone(&self.shared);
        let mut base = ours;
        for _ in 0..2 {
            match self
                .store
                .replace(&shared.key, record::released(&base))
                .await
            {
                Ok(lease) => {
                    info!("released the lease");
                    self.observe(Some(lease));
                    return;
                }
                Err(error) if error.is_conflict() => match self.store.get(&shared.key).await {
                    Ok(Some(current)) if record::holder(&current) == Some(&shared.identity) => {
                        base = Arc::new(current)
                    }
                    // Someone else holds it, or it is gone: nothing to release.
                    Ok(current) => {
                        self.observe(current);
                        return;
                    }
                    Err(error) => {
                        warn!(%error, "could not release the lease; it expires on its own");
                        return;
                    }
                },
                Err(error) => {
                    warn!(%error, "could not release the lease; it expires on its own");
                    return;
                }
            }
        }
    }

    // ----- observing -----

    /// Takes in whatever the feed has that is newer than what we saw.
    fn absorb_feed(&mut self) {
        let feed = self.feed.borrow_and_update().clone();
        self.feed_changed(&feed);
        match feed {
            Observation::Unknown | Observation::Interrupted(_) => {}
            Observation::Absent => self.observe(None::<Lease>),
            Observation::Present(lease) => self.observe(Some(lease)),
        }
    }

    /// Keeps the status, the metrics and the log in step with the feed's health: an interrupted
    /// feed is a failure of its list or watch, and a feed that knows the lease again ends it.
    fn feed_changed(&mut self, feed: &Observation) {
        match feed {
            Observation::Interrupted(error) if self.feed_error.as_ref() != Some(error) => {
                debug!(error = %error.error(), "lease feed interrupted; polling meanwhile");
                self.shared.metrics.error(error.error());
                self.shared.common.reporter.failed(error.error());
                self.feed_error = Some(error.clone());
                self.publish_errors(None);
            }
            Observation::Absent | Observation::Present(_) if self.feed_error.is_some() => {
                debug!("lease feed back");
                self.shared
                    .common
                    .reporter
                    .succeeded(crate::Verb::Watch, &self.shared.key.namespace);
                self.feed_error = None;
                // The API server answers again: an error of a request made while it did not is
                // over too (a follower may make no request for a long time to clear it), unless
                // it was a refusal, which the watch coming back says nothing about.
                let last_error = (!self.requests_refused).then_some(None);
                self.publish_errors(last_error);
            }
            _ => {}
        }
    }

    /// Reads the lease now and takes it in.
    async fn refresh(&mut self) -> Result<()> {
        let deadline = Instant::now() + self.shared.config.renew_deadline;
        let lease = timeout_at(deadline, self.store.get(&self.shared.key))
            .await
            .map_err(|_| self.shared.timeout_error(crate::Verb::Get))??;
        self.succeeded(crate::Verb::Get);
        self.observe(lease);
        Ok(())
    }

    /// Records a version of the lease; the change time moves only when the record changed.
    fn observe(&mut self, lease: Option<impl Into<Arc<Lease>>>) {
        let lease: Option<Arc<Lease>> = lease.map(Into::into);
        let changed = match (&self.seen, &lease) {
            (
                Some(Seen {
                    lease: Some(old), ..
                }),
                Some(new),
            ) => !record::same_record(old, new),
            (Some(Seen { lease: None, .. }), None) => false,
            _ => true,
        };
        let old_holder = self
            .seen
            .as_ref()
            .and_then(|seen| seen.lease.as_deref())
            .and_then(record::holder);
        let new_holder = lease.as_deref().and_then(record::holder);
        if self.seen.is_none() || old_holder != new_holder {
            match new_holder {
                Some(holder) => info!(holder, "new leader observed"),
                None => info!("lease has no holder"),
            }
        }
        if let Some(lease) = &lease {
            let transitions = record::transitions(lease);
            self.highest_transitions = Some(
                self.highest_transitions
                    .map_or(transitions, |t| t.max(transitions)),
            );
        }
        let holder = new_holder.map(str::to_owned);
        let transitions = lease.as_deref().map(record::transitions);
        // The leader as others see it changes with the holder, its token or its address, not
        // with a renew: only then is the address annotation read again.
        let old_lease = self.seen.as_ref().and_then(|seen| seen.lease.as_deref());
        if self.seen.is_none()
            || record::leader_of(old_lease) != record::leader_of(lease.as_deref())
        {
            let leader = holder.clone().map(|identity| Leader {
                is_self: identity == self.shared.identity,
                identity,
                address: lease.as_deref().and_then(record::holder_address),
                fencing_token: transitions.unwrap_or(0),
            });
            self.shared.leader.send_if_modified(|current| {
                let changed = *current != leader;
                *current = leader;
                changed
            });
        }
        let changed_at = match &self.seen {
            Some(seen) if !changed => seen.changed_at,
            _ => Instant::now(),
        };
        self.seen = Some(Seen { lease, changed_at });
        self.shared.update_status(|status| {
            status.holder = holder;
            status.transitions = transitions;
            status.observed_change = Some(changed_at);
        });
    }

    // ----- failures -----

    /// A request (`verb`) succeeded: the status no longer shows the last failure.
    fn succeeded(&mut self, verb: crate::Verb) {
        self.shared
            .common
            .reporter
            .succeeded(verb, &self.shared.key.namespace);
        self.requests_refused = false;
        self.publish_errors(Some(None));
    }

    /// A request failed: the status, the metrics and the runtime's log say it.
    fn request_failed(&mut self, error: &Error) {
        debug!(%error, "election request failed");
        self.shared.metrics.error(error);
        self.shared.common.reporter.failed(error);
        self.requests_refused = matches!(error, Error::Forbidden { .. });
        self.publish_errors(Some(Some(error.to_string())));
    }

    /// Shows the failures in the status: `last_error` if given, the feed's error, and whether
    /// RBAC refuses anything.
    fn publish_errors(&self, last_error: Option<Option<String>>) {
        let watch_error = self
            .feed_error
            .as_ref()
            .map(|error| error.error().to_string());
        let feed_refused = (self.feed_error.as_ref())
            .is_some_and(|error| matches!(error.error(), Error::Forbidden { .. }));
        let permission_denied = self.requests_refused || feed_refused;
        self.shared.update_status(|status| {
            if let Some(last_error) = last_error {
                status.last_error = last_error;
            }
            status.watch_error = watch_error;
            status.permission_denied = permission_denied;
        });
    }

    /// Records a failed request and waits before the next try: the retry period, jittered as
    /// client-go jitters it (so that leases do not retry in lockstep), or longer if the API
    /// server asked for it (a 429's `retryAfterSeconds`). The wait never grows with the number of
    /// failures: once the API server is back, the next try comes within one retry period.
    ///
    /// When the feed shows the lease meanwhile (its watch is back, or the lease changed), the API
    /// server is talking again: the try comes sooner, at a random point within one retry period,
    /// so that the leases of a namespace whose watch came back do not all retry at once.
    async fn failed(&mut self, error: Error) {
        self.request_failed(&error);
        let asked = crate::report::retry_after(&error);
        let retry_period = self.shared.config.retry_period;
        let mut retry_at = Instant::now()
            + asked
                .unwrap_or_default()
                .max(self.shared.config.jittered_retry_period());
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = sleep_until(retry_at) => return,
                changed = self.feed.changed(), if !self.feed_closed() => {
                    if changed.is_err() {
                        continue;
                    }
                    self.absorb_feed();
                    if asked.is_none() && self.feed.borrow().is_known() {
                        let fraction = crate::identity::random_fraction();
                        retry_at = retry_at.min(Instant::now() + retry_period.mul_f64(fraction));
                    }
                }
            }
        }
    }

    fn feed_closed(&self) -> bool {
        self.feed.has_changed().is_err()
    }
}

/// What a follower does next.
enum Step {
    /// Read the lease: we know nothing about it yet.
    Refresh,
    /// Wait for the feed's first list, until this instant at the latest.
    AwaitFeed(Instant),
    /// Create it or take it over.
    Claim,
    /// Someone else holds it: wait until this instant (its expiry, or the read before it)
    /// unless its record changes.
    WaitUntil(Instant),
    /// Someone else holds it until this instant: read it once more before claiming it.
    ReadBeforeClaim(Instant),
    /// Someone else holds it for an unmeasurably long time.
    WaitForChange,
}

/// What a feed event means for the leader.
enum FeedCheck {
    /// Nothing to do.
    Fine,
    /// Our record was edited: renew at once.
    RenewNow,
    /// The term is over.
    Lost(TermEnd),
}

/// How a renew failed.
enum Renewal {
    /// The lease is no longer ours.
    Lost(TermEnd),
    /// The request failed; we may still be leader until the renew deadline.
    Failed(Error),
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Term {
    pub(crate) fn new(fencing_token: i32, deadline: Instant) -> Self {
        Term {
            token: CancellationToken::new(),
            fencing_token,
            deadline: Deadline::new(deadline),
            tracker: TaskTracker::new(),
            handed_out: TaskTracker::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Common;
    use crate::store::LeaseKey;
    use crate::testing::InMemoryLeaseStore;

    /// One elector task runs per lease, so its future's size is memory per lease: 7 KB each
    /// before (issue 13's heap profile: 7 MB for a thousand leases), about 3 KB once the rare,
    /// large steps (claim, renew, end of term) were boxed and the task held the elector once,
    /// 1.2 KB since a term holds its last write behind an `Arc` (a `Lease` is 496 bytes inline,
    /// and the compiler kept two of them in the task).
    /// The bound is for the pinned toolchain; a new compiler may lay futures out differently.
    #[tokio::test]
    async fn the_elector_task_stays_small() {
        let shared = Arc::new(ElectionShared::new(
            LeaseKey::new("ns", "lease"),
            crate::ElectionConfig::default(),
            Arc::new(Common::new("me")),
        ));
        let store: Arc<dyn LeaseStore> = Arc::new(InMemoryLeaseStore::new());
        let elector = Elector::new(shared, store, CancellationToken::new());
        let size = std::mem::size_of_val(&elector.run());
        println!("elector task future: {size} bytes");
        assert!(size <= 1_300, "the elector task's future is {size} bytes");
    }
}
