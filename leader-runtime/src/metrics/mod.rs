//! Counters of each election, always kept: terms won and lost, renew latency, failed requests.
//!
//! The elector records them where it logs the same events, with a few relaxed atomic operations
//! and no allocation. [`Election::metrics`] reads them; with the `metrics` feature,
//! `Runtime::register_metrics` puts them (and every election's status) in a `prometheus_client`
//! registry, which the `/metrics` route of [`Routes`](crate::Routes) serves.
//!
//! ```
//! # use leader_runtime::{Runtime, testing::InMemoryLeaseStore, metrics::ErrorKind};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> leader_runtime::Result<()> {
//! # let runtime = Runtime::builder().store(InMemoryLeaseStore::new()).build().await?;
//! let election = runtime.election("reports")?;
//! election.lead(|_| async {}).await?;
//! let metrics = election.metrics();
//! assert_eq!(metrics.acquired, 1);
//! assert_eq!(metrics.errors(ErrorKind::Forbidden), 0);
//! # runtime.shutdown().await;
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "metrics")]
mod collector;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::{Election, Error};

/// Upper bounds, in seconds, of the buckets of the renew latency histogram (Prometheus' default
/// buckets, 5 ms to 10 s). A last bucket without bound counts slower renews.
pub const RENEW_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Why this replica lost a leadership term against its will. Stepping down because nobody in the
/// process wants the lease any more, or because the runtime shuts down, is not a loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LossReason {
    /// No renew succeeded within the renew deadline.
    RenewDeadline,
    /// The record names another holder (taken over, or edited by hand).
    OtherHolder,
    /// The lease was deleted.
    Deleted,
}

impl LossReason {
    /// Every reason, in a fixed order.
    pub const ALL: [LossReason; 3] = [
        LossReason::RenewDeadline,
        LossReason::OtherHolder,
        LossReason::Deleted,
    ];

    /// The reason as a metric label: `renew_deadline`, `other_holder` or `deleted`.
    pub fn as_str(self) -> &'static str {
        match self {
            LossReason::RenewDeadline => "renew_deadline",
            LossReason::OtherHolder => "other_holder",
            LossReason::Deleted => "deleted",
        }
    }
}

/// What kind of failure a request to the API server met.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A write lost an optimistic-concurrency race ([`Error::Conflict`]): another candidate
    /// wrote the lease first.
    Conflict,
    /// The lease did not exist where it was expected ([`Error::NotFound`]).
    NotFound,
    /// RBAC refused the request ([`Error::Forbidden`]).
    Forbidden,
    /// The request got no answer within the renew deadline.
    Timeout,
    /// Any other failed request ([`Error::Api`]): unreachable, an error status, an unexpected
    /// answer.
    Api,
    /// An error that is not about a request.
    Other,
}

impl ErrorKind {
    /// Every kind, in a fixed order.
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::Conflict,
        ErrorKind::NotFound,
        ErrorKind::Forbidden,
        ErrorKind::Timeout,
        ErrorKind::Api,
        ErrorKind::Other,
    ];

    /// The kind as a metric label: `conflict`, `not_found`, `forbidden`, `timeout`, `api` or
    /// `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Conflict => "conflict",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Api => "api",
            ErrorKind::Other => "other",
        }
    }

    /// The kind of `error`.
    pub fn of(error: &Error) -> Self {
        match error {
            Error::Conflict { .. } => ErrorKind::Conflict,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Forbidden { .. } => ErrorKind::Forbidden,
            Error::Api { source, .. }
                if source
                    .as_deref()
                    .is_some_and(|source| source.is::<DeadlineElapsed>()) =>
            {
                ErrorKind::Timeout
            }
            Error::Api { .. } => ErrorKind::Api,
            _ => ErrorKind::Other,
        }
    }
}

/// The source of the [`Error::Api`] the elector makes when a request gets no answer within the
/// renew deadline; it is how [`ErrorKind::of`] tells timeouts apart.
#[derive(Debug)]
pub(crate) struct DeadlineElapsed;

impl std::fmt::Display for DeadlineElapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline elapsed")
    }
}

impl std::error::Error for DeadlineElapsed {}

/// The counters of one election since the runtime created it, as read by [`Election::metrics`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ElectionMetrics {
    /// Leadership terms this replica won (acquisitions of the lease).
    pub acquired: u64,
    /// How long the successful renews of this replica took, from sending the request to the
    /// answer.
    pub renew_duration: Histogram,
    lost: [u64; LossReason::ALL.len()],
    errors: [u64; ErrorKind::ALL.len()],
}

impl ElectionMetrics {
    /// Terms this replica lost for `reason`.
    pub fn lost(&self, reason: LossReason) -> u64 {
        self.lost[reason as usize]
    }

    /// Failed requests of this election of `kind`, including races lost to other candidates.
    pub fn errors(&self, kind: ErrorKind) -> u64 {
        self.errors[kind as usize]
    }
}

/// A histogram of durations over [`RENEW_BUCKETS`].
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last one has no upper bound.
    counts: [u64; RENEW_BUCKETS.len() + 1],
    sum: Duration,
}

impl Histogram {
    /// How many durations were observed.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The sum of the observed durations.
    pub fn sum(&self) -> Duration {
        self.sum
    }

    /// Each bucket's upper bound in seconds (inclusive) with the number of observations up to it,
    /// cumulative as Prometheus counts them; the last bound is infinity and its count is
    /// [`count`](Self::count).
    pub fn buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let bounds = RENEW_BUCKETS.iter().copied().chain([f64::INFINITY]);
        bounds.zip(&self.counts).scan(0, |total, (bound, count)| {
            *total += count;
            Some((bound, *total))
        })
    }
}

impl Election {
    /// The election's counters: terms won and lost, renew latency and failed requests, counted
    /// since the runtime created the election.
    pub fn metrics(&self) -> ElectionMetrics {
        self.shared.metrics.snapshot()
    }
}

/// The live counters of one election, updated by its elector.
#[derive(Default)]
pub(crate) struct Recorder {
    acquired: AtomicU64,
    lost: [AtomicU64; LossReason::ALL.len()],
    errors: [AtomicU64; ErrorKind::ALL.len()],
    renew_counts: [AtomicU64; RENEW_BUCKETS.len() + 1],
    renew_sum_nanos: AtomicU64,
}

impl Recorder {
    /// This replica won a term.
    pub(crate) fn acquired(&self) {
        self.acquired.fetch_add(1, Relaxed);
    }

    /// This replica lost a term.
    pub(crate) fn lost(&self, reason: LossReason) {
        self.lost[reason as usize].fetch_add(1, Relaxed);
    }

    /// A request failed with `error`.
    pub(crate) fn error(&self, error: &Error) {
        self.errors[ErrorKind::of(error) as usize].fetch_add(1, Relaxed);
    }

    /// A renew succeeded after `took`.
    pub(crate) fn renewed(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = RENEW_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(RENEW_BUCKETS.len());
        self.renew_counts[bucket].fetch_add(1, Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.renew_sum_nanos.fetch_add(nanos, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> ElectionMetrics {
        let read = |counter: &AtomicU64| counter.load(Relaxed);
        ElectionMetrics {
            acquired: read(&self.acquired),
            renew_duration: Histogram {
                counts: self.renew_counts.each_ref().map(read),
                sum: Duration::from_nanos(read(&self.renew_sum_nanos)),
            },
            lost: self.lost.each_ref().map(read),
            errors: self.errors.each_ref().map(read),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_land_in_the_first_bucket_whose_bound_they_do_not_exceed() {
        let recorder = Recorder::default();
        recorder.renewed(Duration::from_millis(5));
        recorder.renewed(Duration::from_millis(6));
        recorder.renewed(Duration::from_secs(11));
        let histogram = recorder.snapshot().renew_duration;
        let buckets: Vec<_> = histogram.buckets().collect();
        assert_eq!(buckets[0], (0.005, 1));
        assert_eq!(buckets[1], (0.01, 2));
        assert_eq!(buckets[10], (10.0, 2));
        assert_eq!(buckets[11], (f64::INFINITY, 3));
        assert_eq!(histogram.count(), 3);
        assert_eq!(histogram.sum(), Duration::from_millis(11_011));
    }

    #[test]
    fn errors_are_counted_by_kind_and_timeouts_are_told_from_other_api_errors() {
        let api = |source: Option<Box<dyn std::error::Error + Send + Sync>>| Error::Api {
            verb: crate::Verb::Get,
            namespace: "ns".into(),
            name: "lease".into(),
            message: "failed".into(),
            source,
        };
        let recorder = Recorder::default();
        recorder.error(&api(None));
        recorder.error(&api(Some(Box::new(DeadlineElapsed))));
        recorder.error(&api(Some(Box::new(DeadlineElapsed))));
        recorder.error(&Error::NotStarted);
        let metrics = recorder.snapshot();
        assert_eq!(metrics.errors(ErrorKind::Api), 1);
        assert_eq!(metrics.errors(ErrorKind::Timeout), 2);
        assert_eq!(metrics.errors(ErrorKind::Other), 1);
        assert_eq!(metrics.errors(ErrorKind::Forbidden), 0);
    }
}
