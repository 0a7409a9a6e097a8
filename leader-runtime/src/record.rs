//! Reading and writing the leader-election record in a Lease's spec, the way client-go does.
//!
//! Everything read here comes from the API and is untrusted: missing, zero, negative or huge
//! values never cause a panic, and remote timestamps are never read as clock values.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;

use crate::ElectionConfig;
use crate::store::LeaseKey;

/// The holder named in the record, `None` when the lease is free (no holder, or an empty one).
pub(crate) fn holder(lease: &Lease) -> Option<&str> {
    let holder = lease.spec.as_ref()?.holder_identity.as_deref()?;
    (!holder.is_empty()).then_some(holder)
}

/// `leaseTransitions`, with a missing or negative value read as 0.
pub(crate) fn transitions(lease: &Lease) -> i32 {
    let value = lease.spec.as_ref().and_then(|spec| spec.lease_transitions);
    value.unwrap_or(0).max(0)
}

/// How long the holder's claim lasts after the record last changed: `leaseDurationSeconds`, or
/// `fallback` (our own lease duration) when that is missing, zero or negative. Never shorter
/// than what the record says, so we never take over earlier than its holder expects.
pub(crate) fn lease_duration(lease: &Lease, fallback: Duration) -> Duration {
    match lease
        .spec
        .as_ref()
        .and_then(|spec| spec.lease_duration_seconds)
    {
        Some(seconds) if seconds > 0 => Duration::from_secs(seconds.unsigned_abs().into()),
        _ => fallback,
    }
}

/// The two records the same, for deciding whether the record changed (client-go compares the
/// whole record, so a renew, which moves `renewTime`, is a change and a label edit is not).
pub(crate) fn same_record(a: &Lease, b: &Lease) -> bool {
    a.spec == b.spec
}

/// The two records equal but for `renewTime`: `a` is an earlier or later renew of `b`.
pub(crate) fn same_but_renew_time(a: &Lease, b: &Lease) -> bool {
    let without_renew = |lease: &Lease| {
        let mut spec = lease.spec.clone().unwrap_or_default();
        spec.renew_time = None;
        spec
    };
    without_renew(a) == without_renew(b)
}

/// Labels this replica puts on the leases it writes (client-go's `NewWithLabels`).
pub(crate) type Labels = BTreeMap<String, String>;

/// A fresh Lease held by `identity`, with `labels`, for creating.
pub(crate) fn new_lease(
    key: &LeaseKey,
    identity: &str,
    config: &ElectionConfig,
    transitions: i32,
    labels: &Labels,
) -> Lease {
    let now = now();
    Lease {
        metadata: ObjectMeta {
            name: Some(key.name.clone()),
            namespace: Some(key.namespace.clone()),
            labels: (!labels.is_empty()).then(|| labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(identity.to_owned()),
            lease_duration_seconds: Some(config.lease_duration_seconds()),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }),
    }
}

/// `current` rewritten to name `identity` as holder, as client-go's acquire-or-renew does: a
/// renew (we hold it already) keeps `acquireTime` and `leaseTransitions`, a take-over sets
/// `acquireTime` and adds one to `leaseTransitions`, counting from `floor` (the highest value we
/// ever saw) if that is higher, so fencing tokens keep increasing even if someone re-created the
/// lease from zero. Metadata (resourceVersion, uid, other labels) and the Coordinated Leader
/// Election fields are kept; `labels` are set over the lease's own, as client-go's lease lock
/// sets its labels on every write.
pub(crate) fn claimed(
    current: &Lease,
    identity: &str,
    config: &ElectionConfig,
    floor: Option<i32>,
    labels: &Labels,
) -> Lease {
    let now = now();
    let renewing = holder(current) == Some(identity);
    let mut lease = current.clone();
    if !labels.is_empty() {
        let own = lease.metadata.labels.get_or_insert_with(Labels::new);
        own.extend(
            labels
                .iter()
                .map(|(key, value)| (key.clone(), value.clone())),
        );
    }
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if !renewing {
        spec.acquire_time = Some(now.clone());
        let base = transitions(current).max(floor.unwrap_or(0));
        spec.lease_transitions = Some(base.saturating_add(1));
    } else if spec.lease_transitions.is_none_or(|t| t < 0) {
        spec.lease_transitions = Some(0);
    }
    spec.holder_identity = Some(identity.to_owned());
    spec.lease_duration_seconds = Some(config.lease_duration_seconds());
    spec.renew_time = Some(now);
    lease
}

/// `current` rewritten as client-go's `ReleaseOnCancel` writes it: no holder, a one-second
/// duration, fresh times, and `leaseTransitions` kept, so the next holder counts up from it.
pub(crate) fn released(current: &Lease) -> Lease {
    let now = now();
    let mut lease = current.clone();
    let transitions = transitions(current);
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = Some(String::new());
    spec.lease_duration_seconds = Some(1);
    spec.acquire_time = Some(now.clone());
    spec.renew_time = Some(now);
    spec.lease_transitions = Some(transitions);
    lease
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease_with(spec: LeaseSpec) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(spec),
        }
    }

    #[test]
    fn odd_durations_fall_back_to_ours() {
        let ours = Duration::from_secs(15);
        for seconds in [None, Some(0), Some(-5)] {
            let lease = lease_with(LeaseSpec {
                lease_duration_seconds: seconds,
                ..LeaseSpec::default()
            });
            assert_eq!(lease_duration(&lease, ours), ours, "{seconds:?}");
        }
        let huge = lease_with(LeaseSpec {
            lease_duration_seconds: Some(i32::MAX),
            ..LeaseSpec::default()
        });
        assert_eq!(
            lease_duration(&huge, ours),
            Duration::from_secs(i32::MAX as u64)
        );
        assert_eq!(lease_duration(&Lease::default(), ours), ours);
    }

    #[test]
    fn empty_holder_is_no_holder() {
        let lease = lease_with(LeaseSpec {
            holder_identity: Some(String::new()),
            ..LeaseSpec::default()
        });
        assert_eq!(holder(&lease), None);
        assert_eq!(holder(&Lease::default()), None);
    }

    #[test]
    fn takeover_counts_a_transition_and_renew_does_not() {
        let config = ElectionConfig::default();
        let held = lease_with(LeaseSpec {
            holder_identity: Some("a".into()),
            lease_transitions: Some(4),
            ..LeaseSpec::default()
        });
        let taken = claimed(&held, "b", &config, None, &Labels::new());
        assert_eq!((holder(&taken), transitions(&taken)), (Some("b"), 5));
        let renewed = claimed(&taken, "b", &config, None, &Labels::new());
        assert_eq!(transitions(&renewed), 5);
        assert_eq!(
            renewed.spec.as_ref().unwrap().acquire_time,
            taken.spec.as_ref().unwrap().acquire_time
        );
        let freed = released(&renewed);
        assert_eq!((holder(&freed), transitions(&freed)), (None, 5));
        assert_eq!(freed.spec.unwrap().lease_duration_seconds, Some(1));
    }

    #[test]
    fn a_takeover_counts_up_from_the_highest_transitions_seen() {
        let recreated = lease_with(LeaseSpec {
            holder_identity: Some("go".into()),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        });
        let taken = claimed(
            &recreated,
            "me",
            &ElectionConfig::default(),
            Some(5),
            &Labels::new(),
        );
        assert_eq!(transitions(&taken), 6);
    }

    #[test]
    fn negative_or_overflowing_transitions_do_not_panic() {
        let negative = lease_with(LeaseSpec {
            lease_transitions: Some(-3),
            ..LeaseSpec::default()
        });
        assert_eq!(
            transitions(&claimed(
                &negative,
                "x",
                &ElectionConfig::default(),
                None,
                &Labels::new()
            )),
            1
        );
        let max = lease_with(LeaseSpec {
            lease_transitions: Some(i32::MAX),
            ..LeaseSpec::default()
        });
        assert_eq!(
            transitions(&claimed(
                &max,
                "x",
                &ElectionConfig::default(),
                None,
                &Labels::new()
            )),
            i32::MAX
        );
    }

    #[test]
    fn our_labels_are_set_over_the_leases_own_and_others_kept() {
        let mut held = lease_with(LeaseSpec {
            holder_identity: Some("go-peer".into()),
            ..LeaseSpec::default()
        });
        held.metadata.labels = Some(Labels::from([
            ("team".into(), "billing".into()),
            ("tier".into(), "old".into()),
        ]));
        let ours = Labels::from([("tier".into(), "gold".into())]);
        let taken = claimed(&held, "me", &ElectionConfig::default(), None, &ours);
        let expected = Labels::from([
            ("team".into(), "billing".into()),
            ("tier".into(), "gold".into()),
        ]);
        assert_eq!(taken.metadata.labels, Some(expected));
        let renewed = claimed(
            &taken,
            "me",
            &ElectionConfig::default(),
            None,
            &Labels::new(),
        );
        assert_eq!(
            renewed.metadata.labels, taken.metadata.labels,
            "kept on renew"
        );
        let key = LeaseKey::new("ns", "a");
        let fresh = new_lease(&key, "me", &ElectionConfig::default(), 0, &ours);
        assert_eq!(fresh.metadata.labels, Some(ours));
    }
}
