//! The Leases as the API server committed them: every state a watch from the test delivers
//! (straight to kube-apiserver, never through a candidate's toxiproxy proxy), kept per lease with
//! when it arrived. The evidence beside the candidates' own output: the fault campaign
//! (`faults.rs`) explains overlaps with it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
    pub(crate) fn record(leases: Api<Lease>, name: Option<&str>) -> Self {
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
                if history.last().is_none_or(|last| !last.same_state(&record)) {
                    history.push(record);
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
