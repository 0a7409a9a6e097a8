//! Election timings, validated the way client-go validates them.

use std::time::Duration;

use crate::{Error, Result};

/// client-go's `JitterFactor`: followers poll every retry period stretched by up to this factor,
/// and the retry period times this factor must stay below the renew deadline.
pub const JITTER_FACTOR: f64 = 1.2;

/// The timings of one election. The defaults are those of Kubernetes' own components:
/// 15 s lease duration, 10 s renew deadline, 2 s retry period.
///
/// ```
/// use std::time::Duration;
/// use leader_runtime::ElectionConfig;
///
/// let config = ElectionConfig::default().with_lease_duration(Duration::from_secs(30));
/// assert!(config.validate().is_ok());
///
/// let bad = ElectionConfig::default().with_renew_deadline(Duration::from_secs(20));
/// assert!(bad.validate().unwrap_err().to_string().contains("renew deadline"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use]
pub struct ElectionConfig {
    /// How long a follower waits, after it last saw the record change, before it considers the
    /// lease expired and takes over. Written to the record as `leaseDurationSeconds`.
    pub lease_duration: Duration,
    /// How long the leader keeps leading without a successful renew, counted from when the last
    /// successful renew was sent. Its leadership token fires when this runs out.
    pub renew_deadline: Duration,
    /// How often the leader renews, and how often followers poll when their watch is down.
    pub retry_period: Duration,
}

impl Default for ElectionConfig {
    fn default() -> Self {
        ElectionConfig {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl ElectionConfig {
    /// Sets the lease duration.
    pub fn with_lease_duration(mut self, value: Duration) -> Self {
        self.lease_duration = value;
        self
    }

    /// Sets the renew deadline.
    pub fn with_renew_deadline(mut self, value: Duration) -> Self {
        self.renew_deadline = value;
        self
    }

    /// Sets the retry period.
    pub fn with_retry_period(mut self, value: Duration) -> Self {
        self.retry_period = value;
        self
    }

    /// Checks client-go's rule: `lease duration > renew deadline > 1.2 x retry period`, all
    /// positive, and a lease duration of whole seconds (the record stores seconds).
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: String| {
            Err(Error::InvalidConfig {
                reason: format!("election timings: {reason}"),
            })
        };
        let ElectionConfig {
            lease_duration,
            renew_deadline,
            retry_period,
        } = *self;
        if retry_period.is_zero() {
            return invalid("retry period must be greater than zero".into());
        }
        if lease_duration.subsec_nanos() != 0 {
            return invalid(format!(
                "lease duration ({lease_duration:?}) must be whole seconds: the Lease stores \
                 leaseDurationSeconds"
            ));
        }
        if lease_duration.as_secs() > i32::MAX as u64 {
            return invalid(format!("lease duration ({lease_duration:?}) is too long"));
        }
        if lease_duration <= renew_deadline {
            return invalid(format!(
                "lease duration ({lease_duration:?}) must be longer than renew deadline \
                 ({renew_deadline:?})"
            ));
        }
        if renew_deadline <= retry_period.mul_f64(JITTER_FACTOR) {
            return invalid(format!(
                "renew deadline ({renew_deadline:?}) must be longer than {JITTER_FACTOR} x retry \
                 period ({retry_period:?})"
            ));
        }
        Ok(())
    }

    /// How long work may keep running after its leadership token fired before the runtime drops
    /// it: half the margin between renew deadline and lease duration (2.5 s with the defaults).
    ///
    /// The token fires at the latest at `s + renew_deadline`, where `s` is when the last
    /// successful renew was sent. No other candidate can take over before `s + lease_duration`:
    /// it must see that renew (which happens after `s`) and then see no change for a whole lease
    /// duration on its own clock, and its write must then win a compare-and-swap on the
    /// `resourceVersion` it saw. So the work is gone by `s + renew_deadline + grace`, which leaves
    /// the other half of the margin for clock-rate differences and scheduling delays.
    ///
    /// Dropping is cooperative: the work's future is dropped at its next `.await`. Work that
    /// blocks its thread (synchronous I/O, long computations) cannot be stopped, and on a
    /// current-thread tokio runtime it also stalls the elector itself. Keep leader work async,
    /// move blocking parts to `spawn_blocking` and check the token around them, and prefer the
    /// multi-thread runtime. Tasks the work spawns itself are not tracked: stop them from the
    /// token.
    pub fn hard_stop_grace(&self) -> Duration {
        self.lease_duration.saturating_sub(self.renew_deadline) / 2
    }

    /// The retry period stretched by a random factor in `[1, 1 + JITTER_FACTOR)`, as client-go's
    /// `wait.Jitter` stretches it, so that candidates do not retry in lockstep.
    pub(crate) fn jittered_retry_period(&self) -> Duration {
        jittered(self.retry_period)
    }

    /// `leaseDurationSeconds` as written to the record.
    pub(crate) fn lease_duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// `period` stretched by a random factor in `[1, 1 + JITTER_FACTOR)`, as client-go's
/// `wait.Jitter` stretches its retry period.
pub(crate) fn jittered(period: Duration) -> Duration {
    period + period.mul_f64(JITTER_FACTOR * crate::identity::random_fraction())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn config(lease: f64, renew: f64, retry: f64) -> ElectionConfig {
        ElectionConfig {
            lease_duration: secs(lease),
            renew_deadline: secs(renew),
            retry_period: secs(retry),
        }
    }

    #[test]
    fn defaults_are_client_go_defaults_and_valid() {
        assert_eq!(ElectionConfig::default(), config(15.0, 10.0, 2.0));
        ElectionConfig::default().validate().unwrap();
        assert_eq!(ElectionConfig::default().hard_stop_grace(), secs(2.5));
    }

    #[test]
    fn rejects_each_broken_rule_with_its_reason() {
        let cases = [
            (
                config(10.0, 10.0, 2.0),
                "must be longer than renew deadline",
            ),
            (
                config(15.0, 2.4, 2.0),
                "must be longer than 1.2 x retry period",
            ),
            (
                config(15.0, 10.0, 0.0),
                "retry period must be greater than zero",
            ),
            (config(15.5, 10.0, 2.0), "whole seconds"),
        ];
        for (config, expected) in cases {
            let message = config.validate().unwrap_err().to_string();
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        }
    }

    #[test]
    fn accepts_fast_test_timings() {
        config(3.0, 2.0, 0.5).validate().unwrap();
    }
}
