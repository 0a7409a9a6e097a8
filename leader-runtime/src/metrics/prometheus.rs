//! The Prometheus text exposition format (version 0.0.4), written by hand.

use std::collections::BTreeMap;
use std::fmt::{self, Write};

use super::{ElectionMetrics, ErrorKind, LossReason};
use crate::{Election, LeaseStatus};

/// The `Content-Type` to serve [`render`]'s output with.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The status and counters of `elections` in the Prometheus text exposition format 0.0.4, one
/// series per lease, ordered by namespace and name:
///
/// | metric | type | labels | value |
/// | --- | --- | --- | --- |
/// | `leader_election_master_status` | gauge | `name` | 1 while this replica leads, else 0: client-go's gauge, for dashboards built on it. `name` is the lease name, or `namespace/name` for a lease name used in several namespaces |
/// | `leader_election_is_leader` | gauge | `namespace`, `lease`, `identity` | the same, with this replica's identity |
/// | `leader_election_transitions_total` | counter | `namespace`, `lease` | terms this replica won |
/// | `leader_election_lost_total` | counter | `namespace`, `lease`, `reason` | terms lost, by [`LossReason`] |
/// | `leader_election_renew_duration_seconds` | histogram | `namespace`, `lease` | latency of successful renews, over [`RENEW_BUCKETS`](super::RENEW_BUCKETS) |
/// | `leader_election_errors_total` | counter | `namespace`, `lease`, `kind` | failed requests, by [`ErrorKind`] |
///
/// ```
/// # use leader_runtime::{Runtime, testing::InMemoryLeaseStore};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> leader_runtime::Result<()> {
/// # let runtime = Runtime::builder().store(InMemoryLeaseStore::new()).namespace("jobs").build().await?;
/// let election = runtime.election("reports")?;
/// election.lead(|_| async {}).await?;
/// let text = leader_runtime::metrics::render(&runtime.elections());
/// assert!(text.contains("leader_election_transitions_total{namespace=\"jobs\",lease=\"reports\"} 1\n"));
/// # runtime.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub fn render(elections: &[Election]) -> String {
    let mut entries: Vec<Entry> = elections
        .iter()
        .map(|election| Entry {
            status: election.status().borrow().clone(),
            metrics: election.metrics(),
        })
        .collect();
    entries.sort_by(|a, b| {
        (&a.status.namespace, &a.status.lease).cmp(&(&b.status.namespace, &b.status.lease))
    });
    render_entries(&entries)
}

/// What is rendered of one election.
struct Entry {
    status: LeaseStatus,
    metrics: ElectionMetrics,
}

fn render_entries(entries: &[Entry]) -> String {
    let mut out = String::new();
    write_entries(&mut out, entries).expect("writing to a String cannot fail");
    out
}

fn write_entries(out: &mut String, entries: &[Entry]) -> fmt::Result {
    // client-go's gauge has only a `name` label: a lease name used in several namespaces gets
    // its namespace in front so that the series stay distinct.
    let mut namespaces_per_name = BTreeMap::<&str, usize>::new();
    for entry in entries {
        *namespaces_per_name.entry(&entry.status.lease).or_default() += 1;
    }
    header(
        out,
        "leader_election_master_status",
        "gauge",
        "Whether this replica leads the lease (1) or not (0), as client-go reports it.",
    )?;
    for Entry { status, .. } in entries {
        let name = if namespaces_per_name[status.lease.as_str()] > 1 {
            format!("{}/{}", status.namespace, status.lease)
        } else {
            status.lease.clone()
        };
        writeln!(
            out,
            "leader_election_master_status{{name=\"{}\"}} {}",
            Escaped(&name),
            u8::from(status.is_leader)
        )?;
    }

    header(
        out,
        "leader_election_is_leader",
        "gauge",
        "Whether this replica leads the lease (1) or not (0).",
    )?;
    for Entry { status, .. } in entries {
        writeln!(
            out,
            "leader_election_is_leader{{{},identity=\"{}\"}} {}",
            Lease(status),
            Escaped(&status.identity),
            u8::from(status.is_leader)
        )?;
    }

    header(
        out,
        "leader_election_transitions_total",
        "counter",
        "Leadership terms this replica won.",
    )?;
    for Entry { status, metrics } in entries {
        writeln!(
            out,
            "leader_election_transitions_total{{{}}} {}",
            Lease(status),
            metrics.acquired
        )?;
    }

    header(
        out,
        "leader_election_lost_total",
        "counter",
        "Leadership terms this replica lost, by reason (stepping down is not a loss).",
    )?;
    for Entry { status, metrics } in entries {
        for reason in LossReason::ALL {
            writeln!(
                out,
                "leader_election_lost_total{{{},reason=\"{}\"}} {}",
                Lease(status),
                reason.as_str(),
                metrics.lost(reason)
            )?;
        }
    }

    let histogram = "leader_election_renew_duration_seconds";
    header(
        out,
        histogram,
        "histogram",
        "Time from sending a renew of the lease to its successful answer.",
    )?;
    for Entry { status, metrics } in entries {
        let renews = &metrics.renew_duration;
        for (bound, count) in renews.buckets() {
            let le = if bound.is_finite() {
                bound.to_string()
            } else {
                "+Inf".to_owned()
            };
            writeln!(
                out,
                "{histogram}_bucket{{{},le=\"{le}\"}} {count}",
                Lease(status)
            )?;
        }
        writeln!(
            out,
            "{histogram}_sum{{{}}} {}",
            Lease(status),
            renews.sum().as_secs_f64()
        )?;
        writeln!(
            out,
            "{histogram}_count{{{}}} {}",
            Lease(status),
            renews.count()
        )?;
    }

    header(
        out,
        "leader_election_errors_total",
        "counter",
        "Failed requests on the lease, by kind (conflicts are races lost to other candidates).",
    )?;
    for Entry { status, metrics } in entries {
        for kind in ErrorKind::ALL {
            writeln!(
                out,
                "leader_election_errors_total{{{},kind=\"{}\"}} {}",
                Lease(status),
                kind.as_str(),
                metrics.errors(kind)
            )?;
        }
    }
    Ok(())
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) -> fmt::Result {
    writeln!(out, "# HELP {name} {help}")?;
    writeln!(out, "# TYPE {name} {kind}")
}

/// The `namespace` and `lease` labels of a status.
struct Lease<'a>(&'a LeaseStatus);

impl fmt::Display for Lease<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "namespace=\"{}\",lease=\"{}\"",
            Escaped(&self.0.namespace),
            Escaped(&self.0.lease)
        )
    }
}

/// A label value with `\`, `"` and line feeds escaped, as the text format requires.
struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::election::ElectionShared;
    use crate::store::LeaseKey;
    use crate::{ElectionConfig, Error};

    fn entry(namespace: &str, lease: &str, identity: &str) -> (ElectionShared, LeaseStatus) {
        let shared = ElectionShared::new(
            LeaseKey::new(namespace, lease),
            ElectionConfig::default(),
            std::sync::Arc::new(crate::runtime::Common::new(identity)),
        );
        let mut status = None;
        shared.update_status(|current| status = Some(current.clone()));
        (shared, status.expect("read"))
    }

    #[test]
    fn renders_every_family_with_help_type_and_one_series_per_label_set() {
        let (shared, mut status) = entry("jobs", "billing", "pod-1");
        status.is_leader = true;
        shared.metrics.acquired();
        shared.metrics.renewed(Duration::from_millis(3));
        shared.metrics.renewed(Duration::from_millis(30));
        shared.metrics.lost(LossReason::OtherHolder);
        shared.metrics.error(&Error::Forbidden {
            verb: crate::Verb::Get,
            namespace: "jobs".into(),
            user: "u".into(),
            message: "no".into(),
        });
        let text = render_entries(&[Entry {
            status,
            metrics: shared.metrics.snapshot(),
        }]);
        let expected = [
            "# HELP leader_election_master_status Whether this replica leads the lease (1) or not (0), as client-go reports it.",
            "# TYPE leader_election_master_status gauge",
            "leader_election_master_status{name=\"billing\"} 1",
            "# TYPE leader_election_is_leader gauge",
            "leader_election_is_leader{namespace=\"jobs\",lease=\"billing\",identity=\"pod-1\"} 1",
            "# TYPE leader_election_transitions_total counter",
            "leader_election_transitions_total{namespace=\"jobs\",lease=\"billing\"} 1",
            "# TYPE leader_election_lost_total counter",
            "leader_election_lost_total{namespace=\"jobs\",lease=\"billing\",reason=\"renew_deadline\"} 0",
            "leader_election_lost_total{namespace=\"jobs\",lease=\"billing\",reason=\"other_holder\"} 1",
            "leader_election_lost_total{namespace=\"jobs\",lease=\"billing\",reason=\"deleted\"} 0",
            "# TYPE leader_election_renew_duration_seconds histogram",
            "leader_election_renew_duration_seconds_bucket{namespace=\"jobs\",lease=\"billing\",le=\"0.005\"} 1",
            "leader_election_renew_duration_seconds_bucket{namespace=\"jobs\",lease=\"billing\",le=\"0.025\"} 1",
            "leader_election_renew_duration_seconds_bucket{namespace=\"jobs\",lease=\"billing\",le=\"0.05\"} 2",
            "leader_election_renew_duration_seconds_bucket{namespace=\"jobs\",lease=\"billing\",le=\"1\"} 2",
            "leader_election_renew_duration_seconds_bucket{namespace=\"jobs\",lease=\"billing\",le=\"+Inf\"} 2",
            "leader_election_renew_duration_seconds_sum{namespace=\"jobs\",lease=\"billing\"} 0.033",
            "leader_election_renew_duration_seconds_count{namespace=\"jobs\",lease=\"billing\"} 2",
            "# TYPE leader_election_errors_total counter",
            "leader_election_errors_total{namespace=\"jobs\",lease=\"billing\",kind=\"forbidden\"} 1",
            "leader_election_errors_total{namespace=\"jobs\",lease=\"billing\",kind=\"timeout\"} 0",
        ];
        let lines: Vec<&str> = text.lines().collect();
        for line in expected {
            assert!(lines.contains(&line), "missing `{line}` in\n{text}");
        }
        assert_eq!(lines.iter().filter(|l| l.starts_with("# HELP")).count(), 6);
        assert_eq!(lines.iter().filter(|l| l.starts_with("# TYPE")).count(), 6);
        assert!(text.ends_with('\n'));
        // Every sample line is `name{labels} value` with a number for the value.
        for line in lines.iter().filter(|line| !line.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').expect("a value");
            assert!(series.ends_with('}'), "{line}");
            value.parse::<f64>().expect("a number");
        }
    }

    #[test]
    fn escapes_backslashes_quotes_and_line_feeds_in_label_values() {
        let (shared, status) = entry("jobs", "billing", "a\"b\\c\nd");
        let text = render_entries(&[Entry {
            status,
            metrics: shared.metrics.snapshot(),
        }]);
        assert!(
            text.contains(
                "leader_election_is_leader{namespace=\"jobs\",lease=\"billing\",identity=\"a\\\"b\\\\c\\nd\"} 0\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_lease_name_used_in_two_namespaces_gets_distinct_master_status_series() {
        let entries: Vec<Entry> = [("a", "job"), ("b", "job"), ("a", "other")]
            .into_iter()
            .map(|(namespace, lease)| {
                let (shared, status) = entry(namespace, lease, "me");
                Entry {
                    status,
                    metrics: shared.metrics.snapshot(),
                }
            })
            .collect();
        let text = render_entries(&entries);
        for name in ["a/job", "b/job", "other"] {
            assert!(
                text.contains(&format!(
                    "leader_election_master_status{{name=\"{name}\"}} 0\n"
                )),
                "{name} in\n{text}"
            );
        }
    }
}
