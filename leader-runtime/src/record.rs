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

/// The annotation in which a holder publishes the address it serves requests on, with the
/// holder and `leaseTransitions` it belongs to:
/// `{"holderIdentity":"web-1","leaseTransitions":7,"address":"10.1.2.3:8080"}`. It is trusted
/// only while both still match the record, so one left by an earlier holder (or kept by a
/// client-go holder, which does not write it) is never read as the current holder's address.
pub const HOLDER_ADDRESS_ANNOTATION: &str = "leader.rs/holder-address";

/// What this replica puts on the metadata of the leases it writes, besides the record.
#[derive(Clone, Debug, Default)]
pub(crate) struct Stamp {
    /// Labels set over the lease's own (client-go's `NewWithLabels`).
    pub(crate) labels: Labels,
    /// The address this replica serves requests on, published while it holds the lease.
    pub(crate) address: Option<String>,
}

impl Stamp {
    /// Puts the stamp on `lease`, whose record names this replica as holder: the labels over
    /// the lease's own, and the address annotation for this record (or none, so that no stale
    /// one stays behind).
    fn apply(&self, lease: &mut Lease) {
        if !self.labels.is_empty() {
            let own = lease.metadata.labels.get_or_insert_with(Labels::new);
            own.extend(
                self.labels
                    .iter()
                    .map(|(key, value)| (key.clone(), value.clone())),
            );
        }
        let value = self.address.as_ref().map(|address| {
            let mut term = term(holder(lease).unwrap_or_default(), transitions(lease));
            term.insert("address".to_owned(), address.as_str().into());
            k8s_openapi::serde_json::Value::Object(term).to_string()
        });
        set_address_annotation(lease, value);
    }
}

/// A term as the annotations that belong to one spell it: `{"holderIdentity": ...,
/// "leaseTransitions": ...}` (the address annotation here, the leader Service's slice).
pub(crate) fn term(
    identity: &str,
    transitions: i32,
) -> k8s_openapi::serde_json::Map<String, k8s_openapi::serde_json::Value> {
    let mut term = k8s_openapi::serde_json::Map::new();
    term.insert("holderIdentity".to_owned(), identity.into());
    term.insert("leaseTransitions".to_owned(), transitions.into());
    term
}

/// Sets or (with `None`) removes the address annotation.
fn set_address_annotation(lease: &mut Lease, value: Option<String>) {
    match value {
        Some(value) => {
            let annotations = lease.metadata.annotations.get_or_insert_with(BTreeMap::new);
            annotations.insert(HOLDER_ADDRESS_ANNOTATION.to_owned(), value);
        }
        None => {
            if let Some(annotations) = &mut lease.metadata.annotations {
                annotations.remove(HOLDER_ADDRESS_ANNOTATION);
                if annotations.is_empty() {
                    lease.metadata.annotations = None;
                }
            }
        }
    }
}

/// What decides who leads `lease` and where, as others see it: the holder, its
/// `leaseTransitions` and the raw address annotation (not `renewTime`, so a renew is no change).
pub(crate) fn leader_of(lease: Option<&Lease>) -> Option<(&str, i32, Option<&str>)> {
    let lease = lease?;
    let annotation = (lease.metadata.annotations.as_ref())
        .and_then(|annotations| annotations.get(HOLDER_ADDRESS_ANNOTATION))
        .map(String::as_str);
    Some((holder(lease)?, transitions(lease), annotation))
}

/// The address the current holder published, if it published one for this very record (same
/// holder, same `leaseTransitions`). Anything malformed reads as no address.
pub(crate) fn holder_address(lease: &Lease) -> Option<String> {
    let holder = holder(lease)?;
    let value = lease
        .metadata
        .annotations
        .as_ref()?
        .get(HOLDER_ADDRESS_ANNOTATION)?;
    let value: k8s_openapi::serde_json::Value = k8s_openapi::serde_json::from_str(value).ok()?;
    let written_for_this_record = value.get("holderIdentity")?.as_str()? == holder
        && value.get("leaseTransitions")?.as_i64()? == i64::from(transitions(lease));
    let address = value.get("address")?.as_str()?;
    (written_for_this_record && !address.is_empty()).then(|| address.to_owned())
}

/// A fresh Lease held by `identity`, with this replica's `stamp`, for creating.
pub(crate) fn new_lease(
    key: &LeaseKey,
    identity: &str,
    config: &ElectionConfig,
    transitions: i32,
    stamp: &Stamp,
) -> Lease {
    let now = now();
    let mut lease = Lease {
        metadata: ObjectMeta {
            name: Some(key.name.clone()),
            namespace: Some(key.namespace.clone()),
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
    };
    stamp.apply(&mut lease);
    lease
}

/// `current` rewritten to name `identity` as holder, as client-go's acquire-or-renew does: a
/// renew (we hold it already) keeps `acquireTime` and `leaseTransitions`, a take-over sets
/// `acquireTime` and adds one to `leaseTransitions`, counting from `floor` (the highest value we
/// ever saw) if that is higher, so fencing tokens keep increasing even if someone re-created the
/// lease from zero. Metadata (resourceVersion, uid, other labels) and the Coordinated Leader
/// Election fields are kept; the `stamp` is put on (its labels over the lease's own, as
/// client-go's lease lock sets its labels on every write, and the address annotation).
pub(crate) fn claimed(
    current: &Lease,
    identity: &str,
    config: &ElectionConfig,
    floor: Option<i32>,
    stamp: &Stamp,
) -> Lease {
    let now = now();
    let renewing = holder(current) == Some(identity);
    let mut lease = current.clone();
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
    stamp.apply(&mut lease);
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
    set_address_annotation(&mut lease, None);
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
        let taken = claimed(&held, "b", &config, None, &Stamp::default());
        assert_eq!((holder(&taken), transitions(&taken)), (Some("b"), 5));
        let renewed = claimed(&taken, "b", &config, None, &Stamp::default());
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
            &Stamp::default(),
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
                &Stamp::default()
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
                &Stamp::default()
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
        let ours = Stamp {
            labels: Labels::from([("tier".into(), "gold".into())]),
            address: None,
        };
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
            &Stamp::default(),
        );
        assert_eq!(
            renewed.metadata.labels, taken.metadata.labels,
            "kept on renew"
        );
        let key = LeaseKey::new("ns", "a");
        let fresh = new_lease(&key, "me", &ElectionConfig::default(), 0, &ours);
        assert_eq!(fresh.metadata.labels, Some(ours.labels));
    }

    #[test]
    fn the_address_is_trusted_only_for_the_record_it_was_written_with() {
        let config = ElectionConfig::default();
        let web1 = Stamp {
            address: Some("10.1.2.3:8080".into()),
            ..Stamp::default()
        };
        let free = lease_with(LeaseSpec {
            lease_transitions: Some(6),
            ..LeaseSpec::default()
        });
        let taken = claimed(&free, "web-1", &config, None, &web1);
        assert_eq!(holder_address(&taken).as_deref(), Some("10.1.2.3:8080"));
        let renewed = claimed(&taken, "web-1", &config, None, &web1);
        assert_eq!(holder_address(&renewed).as_deref(), Some("10.1.2.3:8080"));

        // A client-go candidate takes over: it keeps the annotation but names itself.
        let mut by_go = renewed.clone();
        let spec = by_go.spec.as_mut().unwrap();
        spec.holder_identity = Some("go-peer".into());
        spec.lease_transitions = Some(8);
        assert_eq!(holder_address(&by_go), None, "another holder's address");
        // The same identity in a later term that wrote no address (a client-go process with
        // the same name, say): the transitions differ.
        let mut later = renewed.clone();
        later.spec.as_mut().unwrap().lease_transitions = Some(9);
        assert_eq!(holder_address(&later), None, "an earlier term's address");

        // Taken by a replica of ours that declares no address: the stale one is removed.
        let by_quiet = claimed(&by_go, "web-2", &config, None, &Stamp::default());
        assert_eq!(by_quiet.metadata.annotations, None);
        let freed = released(&renewed);
        assert_eq!(
            (holder_address(&freed), freed.metadata.annotations),
            (None, None)
        );

        for junk in [
            "",
            "{",
            "[]",
            r#"{"holderIdentity":"web-1"}"#,
            r#"{"holderIdentity":"web-1","leaseTransitions":7,"address":""}"#,
            r#"{"holderIdentity":7,"leaseTransitions":"7","address":1}"#,
        ] {
            let mut lease = renewed.clone();
            lease.metadata.annotations = Some(BTreeMap::from([(
                HOLDER_ADDRESS_ANNOTATION.to_owned(),
                junk.to_owned(),
            )]));
            assert_eq!(holder_address(&lease), None, "{junk}");
        }
    }
}
