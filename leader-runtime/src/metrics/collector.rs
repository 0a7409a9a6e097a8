//! The elections' status and counters in a `prometheus_client` registry, read at scrape time.

use std::collections::BTreeMap;
use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::{ElectionMetrics, ErrorKind, LossReason, RENEW_BUCKETS};
use crate::health::sorted;
use crate::{LeaseStatus, Runtime};

impl Runtime {
    /// Registers the metrics of this runtime's elections into `registry`, including elections
    /// created later: they are read from the elections at every scrape. Pass a sub-registry for
    /// a prefix (`registry.sub_registry_with_prefix("my_app")`), which the names then start with.
    ///
    /// | metric | type | labels | value |
    /// | --- | --- | --- | --- |
    /// | `leader_election_master_status` | gauge | `name` | 1 while this replica leads, else 0: client-go's gauge, for dashboards built on it. `name` is the lease name, or `namespace/name` for a lease name used in several namespaces |
    /// | `leader_election_is_leader` | gauge | `namespace`, `lease`, `identity` | the same, with this replica's identity |
    /// | `leader_election_transitions_total` | counter | `namespace`, `lease` | terms this replica won |
    /// | `leader_election_lost_total` | counter | `namespace`, `lease`, `reason` | terms lost, by [`LossReason`] |
    /// | `leader_election_renew_duration_seconds` | histogram | `namespace`, `lease` | latency of successful renews, over [`RENEW_BUCKETS`] |
    /// | `leader_election_errors_total` | counter | `namespace`, `lease`, `kind` | failed requests, by [`ErrorKind`] |
    ///
    /// ```
    /// use prometheus_client::{encoding::text::encode, registry::Registry};
    /// # use leader_runtime::{Runtime, testing::InMemoryLeaseStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> leader_runtime::Result<()> {
    /// # let runtime = Runtime::builder().store(InMemoryLeaseStore::new()).namespace("jobs").build().await?;
    /// let mut registry = Registry::default();
    /// runtime.register_metrics(&mut registry);
    /// runtime.election("reports")?.lead(|_| async {}).await?;
    ///
    /// let mut text = String::new();
    /// encode(&mut text, &registry).expect("encoding to a String");
    /// assert!(text.contains("leader_election_transitions_total{namespace=\"jobs\",lease=\"reports\"} 1\n"));
    /// # runtime.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(Elections {
            runtime: self.clone(),
        }));
    }
}

/// The collector [`Runtime::register_metrics`] registers.
struct Elections {
    runtime: Runtime,
}

impl fmt::Debug for Elections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Elections")
            .field("identity", &self.runtime.identity())
            .finish_non_exhaustive()
    }
}

/// What is encoded of one election.
struct Entry {
    status: LeaseStatus,
    metrics: ElectionMetrics,
}

impl Collector for Elections {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        let entries: Vec<Entry> = sorted(self.runtime.elections())
            .iter()
            .map(|election| Entry {
                status: election.status().borrow().clone(),
                metrics: election.metrics(),
            })
            .collect();
        encode_entries(encoder, &entries)
    }
}

/// Writes the families of `entries`; nothing at all without entries.
fn encode_entries(mut encoder: DescriptorEncoder, entries: &[Entry]) -> fmt::Result {
    if entries.is_empty() {
        return Ok(());
    }
    // client-go's gauge has only a `name` label: a lease name used in several namespaces gets
    // its namespace in front so that the series stay distinct.
    let mut namespaces_per_name = BTreeMap::<&str, usize>::new();
    for entry in entries {
        *namespaces_per_name.entry(&entry.status.lease).or_default() += 1;
    }
    let mut family = encoder.encode_descriptor(
        "leader_election_master_status",
        "Whether this replica leads the lease (1) or not (0), as client-go reports it.",
        None,
        MetricType::Gauge,
    )?;
    for Entry { status, .. } in entries {
        let name = if namespaces_per_name[status.lease.as_str()] > 1 {
            format!("{}/{}", status.namespace, status.lease)
        } else {
            status.lease.clone()
        };
        let labels = [("name", name.as_str())];
        ConstGauge::new(i64::from(status.is_leader)).encode(family.encode_family(&labels)?)?;
    }

    let mut family = encoder.encode_descriptor(
        "leader_election_is_leader",
        "Whether this replica leads the lease (1) or not (0).",
        None,
        MetricType::Gauge,
    )?;
    for Entry { status, .. } in entries {
        let labels = [
            ("namespace", status.namespace.as_str()),
            ("lease", status.lease.as_str()),
            ("identity", status.identity.as_str()),
        ];
        ConstGauge::new(i64::from(status.is_leader)).encode(family.encode_family(&labels)?)?;
    }

    // Counters are named without `_total`: the encoder appends it to the samples (and, in the
    // 0.0.4 format, to the family name).
    let mut family = encoder.encode_descriptor(
        "leader_election_transitions",
        "Leadership terms this replica won.",
        None,
        MetricType::Counter,
    )?;
    for Entry { status, metrics } in entries {
        let counter = ConstCounter::new(metrics.acquired);
        counter.encode(family.encode_family(&lease_labels(status))?)?;
    }

    let mut family = encoder.encode_descriptor(
        "leader_election_lost",
        "Leadership terms this replica lost, by reason (stepping down is not a loss).",
        None,
        MetricType::Counter,
    )?;
    let reasons = &LossReason::ALL;
    counters_by(
        &mut family,
        entries,
        ("reason", reasons),
        LossReason::as_str,
        ElectionMetrics::lost,
    )?;

    // No `# UNIT` line (the name says it), as before and as client_golang writes histograms.
    let mut family = encoder.encode_descriptor(
        "leader_election_renew_duration_seconds",
        "Time from sending a renew of the lease to its successful answer.",
        None,
        MetricType::Histogram,
    )?;
    for Entry { status, metrics } in entries {
        let renews = &metrics.renew_duration;
        // Observations per bucket, not cumulative: the encoder adds them up.
        let bounds = RENEW_BUCKETS.iter().copied().chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds.zip(renews.counts).collect();
        family
            .encode_family(&lease_labels(status))?
            .encode_histogram::<NoLabelSet>(
                renews.sum().as_secs_f64(),
                renews.count(),
                &buckets,
                None,
            )?;
    }

    let mut family = encoder.encode_descriptor(
        "leader_election_errors",
        "Failed requests on the lease, by kind (conflicts are races lost to other candidates).",
        None,
        MetricType::Counter,
    )?;
    let kinds = &ErrorKind::ALL;
    counters_by(
        &mut family,
        entries,
        ("kind", kinds),
        ErrorKind::as_str,
        ElectionMetrics::errors,
    )
}

/// One counter per election and key, the key as label `label`: its value is `count` of the
/// election's metrics for that key.
fn counters_by<K: Copy>(
    family: &mut MetricEncoder<'_>,
    entries: &[Entry],
    (label, keys): (&'static str, &[K]),
    key_name: fn(K) -> &'static str,
    count: fn(&ElectionMetrics, K) -> u64,
) -> fmt::Result {
    for Entry { status, metrics } in entries {
        for &key in keys {
            let [namespace, lease] = lease_labels(status);
            let labels = [namespace, lease, (label, key_name(key))];
            let counter = ConstCounter::new(count(metrics, key));
            counter.encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// The `namespace` and `lease` labels of a status.
fn lease_labels(status: &LeaseStatus) -> [(&'static str, &str); 2] {
    [
        ("namespace", status.namespace.as_str()),
        ("lease", status.lease.as_str()),
    ]
}
