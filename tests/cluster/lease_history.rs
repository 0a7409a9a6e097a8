//! The Leases as the API server committed them: every state a watch from the test delivers
//! (straight to kube-apiserver, never through a candidate's toxiproxy proxy), kept per lease with
//! when it arrived. The evidence beside the candidates' own output: the fault campaign
//! (`faults.rs`) explains overlaps with it, the soak (`soak.rs`) counts handovers and checks the
//! takeovers and the final state with it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};

/// One state of a Lease.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Record {
    /// When the test's watch delivered it.
    pub(crate) seen_at: Instant,
    /// `holderIdentity`; `None` when empty (released).
    pub(crate) holder: Option<String>,
    /// `leaseTransitions`, the fencing token.
    pub(crate) transitions: i32,
    /// `leaseDurationSeconds`.
    pub(crate) duration_seconds: Option<i32>,
    /// `acquireTime`, written by the holder from its wall clock when it took the lease.
    pub(crate) acquire_time: Option<Timestamp>,
    /// `renewTime`, written by the holder from its wall clock at each renew.
    pub(crate) renew_time: Option<Timestamp>,
}

impl Record {
    fn of(lease: Lease) -> Record {
        let spec = lease.spec.unwrap_or_default();
        Record {
            seen_at: Instant::now(),
            holder: spec.holder_identity.filter(|holder| !holder.is_empty()),
            transitions: spec.lease_transitions.unwrap_or(0),
            duration_seconds: spec.lease_duration_seconds,
            acquire_time: spec.acquire_time.map(|time| time.0),
            renew_time: spec.renew_time.map(|time| time.0),
        }
    }

    /// The same state, whenever it was seen.
    fn same_state(&self, other: &Record) -> bool {
        Record {
            seen_at: other.seen_at,
            ..self.clone()
        } == *other
    }

    /// The same state but for `renewTime`: a renew by the same holder.
    fn renew_of(&self, other: &Record) -> bool {
        Record {
            seen_at: other.seen_at,
            renew_time: other.renew_time,
            ..self.clone()
        } == *other
    }
}

/// What to keep of a holder's renews.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Renewals {
    /// Every renew, as its own record.
    Keep,
    /// Only the latest renew of a run of them: it replaces the record before it, so a lease's
    /// records are its changes of holder, duration or transitions, each as last renewed (and
    /// seen). For long runs with many leases.
    Latest,
}

type Records = Arc<Mutex<BTreeMap<String, Vec<Record>>>>;

/// A watch recording the states of Leases until dropped.
pub(crate) struct LeaseHistory {
    records: Records,
    task: tokio::task::JoinHandle<()>,
}

impl LeaseHistory {
    /// Starts recording the Leases of `leases`: only the one named `name`, or every one in its
    /// scope when `None`.
    pub(crate) fn record(leases: Api<Lease>, name: Option<&str>, renewals: Renewals) -> Self {
        let records = Records::default();
        let sink = Arc::clone(&records);
        let mut config = watcher::Config::default();
        if let Some(name) = name {
            config = config.fields(&format!("metadata.name={name}"));
        }
        let task = tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher(leases, config).default_backoff());
            while let Some(event) = events.next().await {
                let (Ok(watcher::Event::Apply(lease)) | Ok(watcher::Event::InitApply(lease))) =
                    event
                else {
                    continue;
                };
                let Some(name) = lease.metadata.name.clone() else {
                    continue;
                };
                let record = Record::of(lease);
                let mut records = sink.lock().unwrap();
                let history = records.entry(name).or_default();
                match history.last_mut() {
                    Some(last) if last.same_state(&record) => {}
                    Some(last) if renewals == Renewals::Latest && last.renew_of(&record) => {
                        *last = record;
                    }
                    _ => history.push(record),
                }
            }
        });
        LeaseHistory { records, task }
    }

    /// The records of `lease` so far, oldest first.
    pub(crate) fn of(&self, lease: &str) -> Vec<Record> {
        let records = self.records.lock().unwrap();
        records.get(lease).cloned().unwrap_or_default()
    }

    /// The records of every lease so far, by name.
    pub(crate) fn all(&self) -> BTreeMap<String, Vec<Record>> {
        self.records.lock().unwrap().clone()
    }

    /// Stops the watch; what it recorded stays readable.
    pub(crate) fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for LeaseHistory {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether each change of holder in `records` (one lease's history) was a takeover by the rules,
/// judged on the holders' own wall-clock stamps: after the previous holder released the lease
/// (an empty holder in between), or with an `acquireTime` at least `lease_duration` after the
/// previous holder's last `renewTime`. A candidate takes over only once the record it observed
/// has stood unchanged for the lease duration on its own clock, and it observed the record after
/// the holder stamped it, so on one machine the second rule holds for every takeover that was not
/// after a release. The errors, one per takeover that breaks it.
pub(crate) fn check_takeovers(records: &[Record], lease_duration: Duration) -> Vec<String> {
    let mut errors = Vec::new();
    for pair in records.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        let (Some(old), Some(new)) = (&before.holder, &after.holder) else {
            continue;
        };
        if old == new {
            continue;
        }
        let (Some(renewed), Some(acquired)) = (before.renew_time, after.acquire_time) else {
            errors.push(format!(
                "{new} took the lease from {old} without a renewTime and acquireTime to judge by"
            ));
            continue;
        };
        let stood = acquired.duration_since(renewed);
        let needed = lease_duration.try_into().expect("a short duration");
        if stood < needed {
            errors.push(format!(
                "{new} acquired the lease at {acquired}, {stood:#} after {old}'s last renew at \
                 {renewed}, before the lease duration ({lease_duration:?}) was over"
            ));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(holder: Option<&str>, acquired: i64, renewed: i64) -> Record {
        Record {
            seen_at: Instant::now(),
            holder: holder.map(Into::into),
            transitions: 0,
            duration_seconds: Some(4),
            acquire_time: Some(Timestamp::from_millisecond(acquired).unwrap()),
            renew_time: Some(Timestamp::from_millisecond(renewed).unwrap()),
        }
    }

    #[test]
    fn takeovers_after_expiry_or_release_pass_early_ones_fail() {
        let lease_duration = Duration::from_secs(4);
        let expired = [record(Some("a"), 0, 1_000), record(Some("b"), 5_000, 5_000)];
        assert!(check_takeovers(&expired, lease_duration).is_empty());
        let released = [
            record(Some("a"), 0, 1_000),
            record(None, 0, 1_200),
            record(Some("b"), 1_300, 1_300),
        ];
        assert!(check_takeovers(&released, lease_duration).is_empty());
        let early = [record(Some("a"), 0, 1_000), record(Some("b"), 4_999, 4_999)];
        assert_eq!(check_takeovers(&early, lease_duration).len(), 1);
    }

    #[test]
    fn renews_are_kept_or_folded() {
        let a = record(Some("a"), 0, 1_000);
        let renewed = record(Some("a"), 0, 2_000);
        assert!(a.renew_of(&renewed) && !a.same_state(&renewed));
        assert!(!a.renew_of(&record(Some("b"), 0, 2_000)));
        assert!(a.same_state(&record(Some("a"), 0, 1_000)));
    }
}
