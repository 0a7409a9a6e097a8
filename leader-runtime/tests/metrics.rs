//! The metrics in a `prometheus_client` registry, as an independent parser of both exposition
//! formats reads them (`openmetrics-parser`): names, types, labels and values as documented.
#![cfg(feature = "metrics")]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use leader_runtime::testing::{Fault, InMemoryLeaseStore};
use leader_runtime::{Routes, Runtime};
use support::exposition::{Exposition, Format, LABELS, app_registry, with};
use support::{LEASE, fast, lead_for, runtime, within_5s};

/// `/metrics` of `routes` in `format`, checked for its content type and parsed.
fn scrape(routes: &Routes, format: Format) -> Exposition {
    let reply = routes.respond("GET", "/metrics", Some(format.accept()));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(format.content_type()));
    Exposition::parse(format, &reply.body)
}

#[tokio::test]
async fn every_metric_keeps_its_documented_name_type_and_labels_in_both_formats() {
    within_5s(async {
        let store = InMemoryLeaseStore::new().connection();
        let runtime = runtime(&store, "pod-1").await;
        let routes = Routes::new(&runtime);
        let term = lead_for(&runtime, Duration::from_secs(10));
        // Leading, with a renew or two.
        let election = runtime.election(LEASE).unwrap();
        while election.metrics().renew_duration.count() < 1 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A refused request, counted by kind.
        store.set_fault(Some(Fault::Forbidden));
        let mut status = election.status();
        status
            .wait_for(|status| status.permission_denied)
            .await
            .unwrap();
        store.set_fault(None);

        for format in Format::ALL {
            let metrics = scrape(&routes, format);
            let counter = |name: &str| match format {
                Format::OpenMetrics => name.to_owned(),
                Format::Text => format!("{name}_total"),
            };
            let expected_families = BTreeMap::from([
                ("leader_election_master_status".to_owned(), "gauge"),
                ("leader_election_is_leader".to_owned(), "gauge"),
                (counter("leader_election_transitions"), "counter"),
                (counter("leader_election_lost"), "counter"),
                (
                    "leader_election_renew_duration_seconds".to_owned(),
                    "histogram",
                ),
                (counter("leader_election_errors"), "counter"),
            ]);
            let families: BTreeMap<String, &str> = metrics
                .families
                .iter()
                .map(|(name, kind)| (name.clone(), kind.as_str()))
                .collect();
            assert_eq!(families, expected_families, "{format:?}");
            // The series names a scraper stores are the same in both formats, and as before.
            let names: Vec<&str> = metrics.series_names().into_iter().collect();
            assert_eq!(
                names,
                [
                    "leader_election_errors_total",
                    "leader_election_is_leader",
                    "leader_election_lost_total",
                    "leader_election_master_status",
                    "leader_election_renew_duration_seconds_bucket",
                    "leader_election_renew_duration_seconds_count",
                    "leader_election_renew_duration_seconds_sum",
                    "leader_election_transitions_total",
                ],
                "{format:?}"
            );

            let sample = |name: &str, labels: &[(&str, &str)]| metrics.sample(name, labels);
            assert_eq!(
                sample("leader_election_master_status", &[("name", LEASE)]),
                1.0
            );
            assert_eq!(
                sample("leader_election_is_leader", &with(("identity", "pod-1"))),
                1.0
            );
            assert_eq!(sample("leader_election_transitions_total", &LABELS), 1.0);
            for reason in ["renew_deadline", "other_holder", "deleted"] {
                let labels = with(("reason", reason));
                assert_eq!(sample("leader_election_lost_total", &labels), 0.0);
            }
            for kind in ["conflict", "not_found", "timeout", "api", "other"] {
                let labels = with(("kind", kind));
                assert_eq!(sample("leader_election_errors_total", &labels), 0.0);
            }
            let forbidden = with(("kind", "forbidden"));
            assert!(sample("leader_election_errors_total", &forbidden) >= 1.0);

            let renews = sample("leader_election_renew_duration_seconds_count", &LABELS);
            assert!(renews >= 1.0);
            let bounds = [
                "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10",
                "+Inf",
            ];
            let mut last = 0.0;
            for le in bounds {
                let bucket = sample(
                    "leader_election_renew_duration_seconds_bucket",
                    &with(("le", le)),
                );
                assert!(bucket >= last, "buckets are cumulative");
                last = bucket;
            }
            assert_eq!(last, renews, "the +Inf bucket counts every renew");
            let buckets = metrics.samples.iter();
            let buckets = buckets.filter(|(name, ..)| name.ends_with("_bucket"));
            assert_eq!(buckets.count(), bounds.len(), "no other bucket");
            assert!(sample("leader_election_renew_duration_seconds_sum", &LABELS) > 0.0);
        }
        runtime.shutdown().await;
        term.await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test]
async fn odd_identities_come_out_unchanged_after_escaping() {
    within_5s(async {
        let identity = "quote\" backslash\\ newline\nend";
        let runtime = runtime(&InMemoryLeaseStore::new(), identity).await;
        runtime.election(LEASE).unwrap();
        let routes = Routes::new(&runtime);
        for format in Format::ALL {
            let metrics = scrape(&routes, format);
            let labels = with(("identity", identity));
            assert_eq!(
                metrics.sample("leader_election_is_leader", &labels),
                0.0,
                "{format:?}"
            );
        }
        runtime.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_lease_name_used_in_two_namespaces_gets_distinct_master_status_series() {
    within_5s(async {
        let runtime = runtime(&InMemoryLeaseStore::new(), "me").await;
        for (namespace, lease) in [("a", "job"), ("b", "job"), ("a", "other")] {
            runtime.election_with(namespace, lease, fast()).unwrap();
        }
        let metrics = scrape(&Routes::new(&runtime), Format::OpenMetrics);
        for name in ["a/job", "b/job", "other"] {
            let labels = [("name", name)];
            assert_eq!(
                metrics.sample("leader_election_master_status", &labels),
                0.0
            );
        }
        runtime.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_applications_registry_serves_its_own_metrics_and_ours_under_a_prefix() {
    within_5s(async {
        let runtime = runtime(&InMemoryLeaseStore::new(), "me").await;
        let mut registry = app_registry(1);
        runtime.register_metrics(registry.sub_registry_with_prefix("app"));
        let routes = Routes::new(&runtime).registry(registry);

        // Registered before any election exists: elections created later are covered.
        let before = scrape(&routes, Format::OpenMetrics);
        assert_eq!(
            before.series_names().into_iter().collect::<Vec<_>>(),
            ["requests_total"]
        );
        runtime.election(LEASE).unwrap();
        for format in Format::ALL {
            let metrics = scrape(&routes, format);
            assert_eq!(metrics.sample("requests_total", &[]), 1.0);
            let labels = [("name", LEASE)];
            assert_eq!(
                metrics.sample("app_leader_election_master_status", &labels),
                0.0,
                "{format:?}"
            );
            assert!(
                metrics
                    .find("leader_election_master_status", &labels)
                    .is_none()
            );
        }
        runtime.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn without_elections_there_are_no_series_of_ours() {
    let runtime = Runtime::builder()
        .store(InMemoryLeaseStore::new())
        .build()
        .await
        .unwrap();
    let routes = Routes::new(&runtime);
    // Nothing at all: an empty exposition (which the parser's grammar does not accept, so it is
    // compared as text).
    let reply = routes.respond("GET", "/metrics", Some(Format::OpenMetrics.accept()));
    assert_eq!(reply.body, "# EOF\n");
    assert_eq!(routes.respond("GET", "/metrics", None).body, "");

    // Next to the application's metrics: still a valid exposition.
    let mut registry = app_registry(0);
    runtime.register_metrics(&mut registry);
    let routes = routes.registry(registry);
    for format in Format::ALL {
        let metrics = scrape(&routes, format);
        let names: Vec<&str> = metrics.series_names().into_iter().collect();
        assert_eq!(names, ["requests_total"], "{format:?}");
    }
    runtime.shutdown().await;
}
