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

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout_at};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::election::{Deadline, ElectionShared, Term};
use crate::metrics::LossReason;
use crate::record;
use crate::store::{LeaseStore, Observation};
use crate::{Error, Result};

/// Backoff after a failed request stops growing here.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The last version of the lease we saw, and when (on our clock) its record last changed.
struct Seen {
    /// `None`: the lease did not exist.
    lease: Option<Lease>,
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
    /// Our last successful write, the base of the next compare-and-swap.
    lease: Lease,
    /// When the request of our last successful write was sent.
    renewed_at: Instant,
    /// Whether the feed has shown our last write. Watch events come in order, so after that
    /// any record naming another holder is newer than ours, with no need to confirm it.
    echoed: bool,
}

pub(crate) struct Elector {
    shared: Arc<ElectionShared>,
    store: Arc<dyn LeaseStore>,
    feed: watch::Receiver<Observation>,
    shutdown: CancellationToken,
    seen: Option<Seen>,
    /// The highest `leaseTransitions` ever seen, so a lease re-created after a deletion keeps
    /// counting up and fencing tokens keep increasing.
    highest_transitions: Option<i32>,
    failures: u32,
    /// Keeps the replacement feed open once the store's own feed closed.
    feed_keepalive: Option<watch::Sender<Observation>>,
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
            failures: 0,
            feed_keepalive: None,
        }
    }

    /// Runs the election until the runtime shuts down; a held lease is released on the way out.
    pub(crate) async fn run(mut self) {
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
        .await;
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
            let mut expires_at = None;
            if wanted {
                match self.next_step() {
                    Step::Refresh => {
                        if let Err(error) = self.refresh().await {
                            self.failed(error).await;
                        }
                        continue;
                    }
                    Step::Claim => match self.claim().await {
                        Ok(Some(leading)) => return Some(leading),
                        Ok(None) => continue,
                        Err(error) => {
                            self.failed(error).await;
                            continue;
                        }
                    },
                    Step::WaitUntil(at) => expires_at = Some(at),
                    Step::WaitForChange => {}
                }
                if *self.feed.borrow() == Observation::Unknown {
                    poll_at = Some(Instant::now() + self.jittered_retry_period());
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
                () = sleep_until_opt(expires_at) => {}
                () = sleep_until_opt(poll_at) => {
                    if let Err(error) = self.refresh().await {
                        self.failed(error).await;
                    }
                }
            }
        }
    }

    /// What a follower that wants the lease does next, judged from what it has seen.
    fn next_step(&self) -> Step {
        let Some(seen) = &self.seen else {
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
                    Some(at) => Step::WaitUntil(at),
                    // Held for longer than our clock can count: wait for a change.
                    None => Step::WaitForChange,
                }
            }
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
                let lease =
                    record::new_lease(&shared.key, &shared.identity, &shared.config, transitions);
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
                self.succeeded();
                self.observe(Some(lease.clone()));
                let fencing_token = record::transitions(&lease);
                info!(fencing_token, "became leader");
                Ok(Some(Leading {
                    term: Term::new(fencing_token, sent + shared.config.renew_deadline),
                    lease,
                    renewed_at: sent,
                    echoed: false,
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
        shared.publish_term(Some(leading.term.clone()));
        shared.update_status(|status| {
            status.is_leader = true;
            status.fencing_token = Some(leading.term.fencing_token);
            status.last_renew = Some(leading.renewed_at);
        });
        shared.metrics.acquired();
        let mut interest = shared.interest.subscribe();
        let mut next_renew = leading.renewed_at + config.retry_period;
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
                    match timeout_at(deadline, self.renew(&mut leading)).await {
                        Err(_) => break TermEnd::RenewDeadline,
                        Ok(Ok(())) => {
                            next_renew = leading.renewed_at + config.retry_period;
                            debug!("renewed");
                        }
                        Ok(Err(Renewal::Lost(end))) => break end,
                        Ok(Err(Renewal::Failed(error))) => {
                            warn!(%error, "renew failed; retrying until the renew deadline");
                            shared.record_error(&error);
                            next_renew = Instant::now() + config.retry_period;
                        }
                    }
                }
                changed = self.feed.changed(), if !self.feed_closed() => {
                    if changed.is_ok() {
                        match timeout_at(deadline, self.check_feed_while_leading(&mut leading)).await {
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
        self.end_term(leading, end).await;
        end
    }

    /// Renews once: compare-and-swap on our last write; on a conflict, re-read and renew on the
    /// fresh version if we are still the holder.
    async fn renew(&mut self, leading: &mut Leading) -> std::result::Result<(), Renewal> {
        let shared = Arc::clone(&self.shared);
        let mut base = leading.lease.clone();
        for _ in 0..2 {
            let sent = Instant::now();
            let lease = record::claimed(&base, &shared.identity, &shared.config, None);
            match self.store.replace(&shared.key, lease).await {
                Ok(lease) => {
                    self.succeeded();
                    self.observe(Some(lease.clone()));
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
        let suspicious = match &feed {
            Observation::Unknown => false,
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
                self.observe(None);
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
                self.shared.record_error(&error);
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
        if matches!(end, TermEnd::Idle | TermEnd::Shutdown) {
            self.release(leading.lease).await;
        }
    }

    /// Writes the record with no holder so that another candidate takes over at once; gives up
    /// after the renew deadline (the lease then expires on its own).
    async fn release(&mut self, ours: Lease) {
        let deadline = Instant::now() + self.shared.config.renew_deadline;
        if timeout_at(deadline, self.try_release(ours)).await.is_err() {
            warn!("releasing the lease timed out; it expires on its own");
        }
    }

    async fn try_release(&mut self, ours: Lease) {
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
                        base = current
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
        match feed {
            Observation::Unknown => {}
            Observation::Absent => self.observe(None),
            Observation::Present(lease) => self.observe(Some(lease)),
        }
    }

    /// Reads the lease now and takes it in.
    async fn refresh(&mut self) -> Result<()> {
        let deadline = Instant::now() + self.shared.config.renew_deadline;
        let lease = timeout_at(deadline, self.store.get(&self.shared.key))
            .await
            .map_err(|_| self.shared.timeout_error(crate::Verb::Get))??;
        self.succeeded();
        self.observe(lease);
        Ok(())
    }

    /// Records a version of the lease; the change time moves only when the record changed.
    fn observe(&mut self, lease: Option<Lease>) {
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
            .and_then(|seen| seen.lease.as_ref())
            .and_then(record::holder);
        let new_holder = lease.as_ref().and_then(record::holder);
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
        let transitions = lease.as_ref().map(record::transitions);
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

    fn succeeded(&mut self) {
        if self.failures > 0 {
            info!("API server reachable again");
        }
        self.failures = 0;
        self.shared.update_status(|status| {
            status.last_error = None;
            status.permission_denied = false;
        });
    }

    /// Records a failed request and waits before the next try: the retry period, doubling with
    /// each further failure up to 30 s (interrupted by shutdown).
    async fn failed(&mut self, error: Error) {
        warn!(%error, "election request failed");
        self.shared.record_error(&error);
        self.failures = self.failures.saturating_add(1);
        let base = self.jittered_retry_period();
        let backoff = base
            .saturating_mul(1 << self.failures.saturating_sub(1).min(5))
            .min(MAX_BACKOFF.max(base));
        // A change on the feed (a release, say) means the API server is talking again: retry now.
        tokio::select! {
            () = self.shutdown.cancelled() => {}
            () = tokio::time::sleep(backoff) => {}
            changed = self.feed.changed(), if !self.feed_closed() => {
                if changed.is_ok() {
                    self.absorb_feed();
                }
            }
        }
    }

    /// The retry period stretched by a random factor in `[1, 1 + JITTER_FACTOR)`, as client-go's
    /// `wait.Jitter` does, so followers do not poll in lockstep.
    fn jittered_retry_period(&self) -> Duration {
        let retry = self.shared.config.retry_period;
        retry + retry.mul_f64(crate::JITTER_FACTOR * crate::identity::random_fraction())
    }

    fn feed_closed(&self) -> bool {
        self.feed.has_changed().is_err()
    }
}

/// What a follower does next.
enum Step {
    /// Read the lease: we know nothing about it yet.
    Refresh,
    /// Create it or take it over.
    Claim,
    /// Someone else holds it; it expires at this instant unless its record changes.
    WaitUntil(Instant),
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
        }
    }
}
