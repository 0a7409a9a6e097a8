//! Rolling updates on the test node: `kubectl rollout restart` of `examples/deploy/`'s
//! Deployment, and of the same Deployment running the client-go peer instead, side by side. Per
//! rollout: how many times leadership changed hands, how long nobody led, and whether two pods
//! ever led at once (the fault campaign's checks, on what the pods logged, placed at the container
//! runtime's timestamps). Pods take their logs with them when deleted, so every pod's log is
//! followed from its start.
//!
//! `LEADER_NODE_ROLLOUTS` sets the rollouts per implementation (1 in `make test`);
//! `LEADER_NODE_REPORT` names a Markdown file to write the results to (`make node-campaign`
//! writes `docs/rollouts.md`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use serde_json::{Value, json};

use super::{
    LEASE, SECOND, apply_service_account_and_role, deployment_for_the_test_node, follow_logs,
    ready_pods,
};
use crate::leadership::{
    Interval, Transcript, check_fencing_tokens, handover_gaps, leadership_intervals,
    overlapping_pairs, report,
};
use crate::plot;
use crate::support::{Identity, Implementation, Node, control_plane};

/// Every line of every pod with a label, from each pod's start, placed at the container
/// runtime's timestamp (the machine's wall clock, turned into `Instant`s with one offset).
#[derive(Clone, Default)]
struct PodLogs(Arc<Mutex<BTreeMap<String, Lines>>>);

/// A pod's log lines with when each was written.
type Lines = Vec<(Instant, String)>;

impl PodLogs {
    /// Follows the pods matching `selector` as they start.
    fn follow(pods: Api<Pod>, selector: &str) -> PodLogs {
        let logs = PodLogs::default();
        let followed = logs.clone();
        follow_logs(pods, selector, true, move |pod, line| {
            let Some((stamp, text)) = line.split_once(' ') else {
                return;
            };
            let Some(at) = instant_of(stamp) else {
                return;
            };
            let mut logs = followed.0.lock().unwrap();
            let lines = logs.entry(pod.to_owned()).or_default();
            lines.push((at, text.to_owned()));
        });
        logs
    }

    /// The pods' transcripts for the leadership analysis.
    fn intervals(&self, implementation: Implementation) -> Vec<Interval> {
        let logs = self.0.lock().unwrap().clone();
        let transcripts: Vec<Transcript<'_>> = logs
            .iter()
            .map(|(pod, lines)| Transcript {
                id: pod,
                implementation,
                lines,
                killed_at: None,
                paused_at: None,
            })
            .collect();
        leadership_intervals(LEASE, &transcripts).expect("well-formed leadership lines")
    }
}

/// An RFC 3339 time from the container runtime as an `Instant` of this process.
fn instant_of(stamp: &str) -> Option<Instant> {
    let at: k8s_openapi::jiff::Timestamp = stamp.parse().ok()?;
    let wall = SystemTime::from(at);
    let (now_wall, now) = (SystemTime::now(), Instant::now());
    match now_wall.duration_since(wall) {
        Ok(ago) => now.checked_sub(ago),
        Err(ahead) => Some(now + ahead.duration()),
    }
}

/// What one rollout did to leadership.
struct Rollout {
    /// Leaderships that began during the rollout.
    handovers: usize,
    /// Time with no leader during the rollout.
    without_leader: Duration,
    /// Pairs of leaderships that overlapped (must be none).
    overlaps: usize,
    took: Duration,
}

/// `deployment` as the test node runs it for `implementation`: ours as written (with the node's
/// patches), or the client-go peer in the same pod template.
fn deployment_for(implementation: Implementation, node: &Node, namespace: &str) -> (String, Value) {
    let (mut deployment, _) = deployment_for_the_test_node(node);
    if implementation == Implementation::Go {
        let name = "peer";
        deployment["metadata"]["name"] = name.into();
        let labels = json!({ "app.kubernetes.io/name": name });
        deployment["metadata"]["labels"] = labels.clone();
        deployment["spec"]["selector"]["matchLabels"] = labels.clone();
        deployment["spec"]["template"]["metadata"]["labels"] = labels;
        let container = &mut deployment["spec"]["template"]["spec"]["containers"][0];
        container["name"] = name.into();
        container["image"] = node.image("peer").into();
        // The peer's identity is its host name, the pod's name; it has no health endpoint.
        container["args"] = json!([
            "--lease-lock-name",
            LEASE,
            "--lease-lock-namespace",
            namespace,
            "--events=false"
        ]);
        let object = container.as_object_mut().expect("a container");
        for key in ["ports", "livenessProbe", "readinessProbe"] {
            object.remove(key);
        }
    }
    let name = deployment["metadata"]["name"]
        .as_str()
        .expect("a name")
        .to_owned();
    (name, deployment)
}

/// Applies the Deployment of `implementation` in a namespace of its own, waits for its pods,
/// restarts it `count` times, and reports each rollout.
async fn rollouts(implementation: Implementation, count: usize) -> Vec<Rollout> {
    let cluster = control_plane();
    let node = cluster.node();
    let namespace = cluster.namespace("rollout").await;
    let pods: Api<Pod> = Api::namespaced(cluster.client(Identity::Admin).await, &namespace);
    apply_service_account_and_role(&node, &namespace);
    let (name, deployment) = deployment_for(implementation, &node, &namespace);
    let selector = format!("app.kubernetes.io/name={name}");
    let logs = PodLogs::follow(pods.clone(), &selector);
    node.kubectl_with_input(
        &["apply", "-n", &namespace, "-f", "-"],
        &deployment.to_string(),
    );
    ready_pods(&pods, &selector, 90 * SECOND).await;
    wait_for_a_leader(&logs, implementation, 30 * SECOND).await;

    let mut results = Vec::new();
    for number in 1..=count {
        let began = Instant::now();
        let target = format!("deployment/{name}");
        node.kubectl(&["rollout", "restart", "-n", &namespace, &target]);
        node.kubectl(&[
            "rollout",
            "status",
            "-n",
            &namespace,
            &target,
            "--timeout=180s",
        ]);
        // Done when only the new pods are left and one of them leads.
        let deadline = Instant::now() + 60 * SECOND;
        loop {
            let present = ready_pods(&pods, &selector, 60 * SECOND).await;
            let all = pods
                .list(&kube::api::ListParams::default().labels(&selector))
                .await
                .expect("listing pods");
            let leaders = logs.intervals(implementation);
            let led_by_new = leaders
                .last()
                .is_some_and(|last| last.end_time().is_none() && last.start >= began);
            if all.items.len() == present.len() && led_by_new {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "rollout {number} of {name}: not settled after 60 s"
            );
            tokio::time::sleep(SECOND / 2).await;
        }
        let intervals = logs.intervals(implementation);
        let overlaps = overlapping_pairs(&intervals);
        assert!(
            overlaps.is_empty(),
            "rollout {number} of {name}: two pods led at once:\n{}",
            report(&intervals, began)
        );
        check_fencing_tokens(&intervals).expect("fencing tokens go up");
        let during: Vec<Interval> = intervals
            .iter()
            .filter(|interval| interval.end_time().is_none_or(|end| end >= began))
            .cloned()
            .collect();
        let handovers = during.iter().filter(|i| i.start >= began).count();
        let without_leader = handover_gaps(&during).iter().sum();
        let rollout = Rollout {
            handovers,
            without_leader,
            overlaps: overlaps.len(),
            took: began.elapsed(),
        };
        println!(
            "rollout {number} of {name} ({implementation}): {handovers} handover(s), {:.0?} \
             without a leader, {} overlap(s), {:.1?}",
            rollout.without_leader, rollout.overlaps, rollout.took
        );
        results.push(rollout);
    }
    node.kubectl(&["delete", "namespace", &namespace, "--wait=false"]);
    results
}

/// Waits until the pods' logs show a leader.
async fn wait_for_a_leader(logs: &PodLogs, implementation: Implementation, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !logs
        .intervals(implementation)
        .iter()
        .any(|interval| interval.end_time().is_none())
    {
        assert!(Instant::now() < deadline, "no pod leads after {limit:?}");
        tokio::time::sleep(SECOND / 4).await;
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values
        .get(values.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0.0)
}

/// The results as Markdown: a table per implementation and a summary.
fn markdown(results: &[(Implementation, Vec<Rollout>)], minutes: f64) -> String {
    let mut text = format!(
        "# Rolling updates on a real node\n\n\
         Written by `make node-campaign` (`tests/cluster/node/rollouts.rs`) in {minutes:.1} \
         minutes; do not edit by hand. `kubectl rollout restart` of `examples/deploy/`'s \
         Deployment (3 replicas, the Deployment's default strategy: maxSurge 25 %, \
         maxUnavailable 25 %), and of the same pod template running the client-go peer \
         (`tools/leaderelection`, `LeaseLock`, `ReleaseOnCancel`; no probes, it has no health \
         endpoint), on the test node (kubelet, containerd). Leaderships come from what each pod \
         logged, at the container runtime's timestamps.\n\n\
         | implementation | rollouts | with at most one handover | handovers, median / max | \
         without a leader per rollout, median / max (ms) | overlaps |\n|---|---:|---:|---:|---:|---:|\n"
    );
    for (implementation, rollouts) in results {
        let at_most_one = rollouts.iter().filter(|r| r.handovers <= 1).count();
        let handovers: Vec<f64> = rollouts.iter().map(|r| r.handovers as f64).collect();
        let gaps: Vec<f64> = rollouts
            .iter()
            .map(|r| r.without_leader.as_secs_f64() * 1e3)
            .collect();
        let max = |values: &[f64]| values.iter().copied().fold(0.0, f64::max);
        let overlaps: usize = rollouts.iter().map(|r| r.overlaps).sum();
        let name = match implementation {
            Implementation::Rust => "ours (`examples/periodic.rs`)",
            Implementation::Go => "client-go peer",
        };
        let _ = writeln!(
            text,
            "| {name} | {} | {at_most_one} | {:.0} / {:.0} | {:.0} / {:.0} | {overlaps} |",
            rollouts.len(),
            median(handovers.clone()),
            max(&handovers),
            median(gaps.clone()),
            max(&gaps),
        );
    }
    text.push_str("\n## Each rollout\n\n| implementation | rollout | handovers | without a leader (ms) | took (s) |\n|---|---:|---:|---:|---:|\n");
    for (implementation, rollouts) in results {
        for (number, rollout) in rollouts.iter().enumerate() {
            let _ = writeln!(
                text,
                "| {implementation} | {} | {} | {:.0} | {:.1} |",
                number + 1,
                rollout.handovers,
                rollout.without_leader.as_secs_f64() * 1e3,
                rollout.took.as_secs_f64()
            );
        }
    }
    text
}

/// Each rollout's time without a leader and handovers, both implementations on one chart.
fn chart(results: &[(Implementation, Vec<Rollout>)]) -> String {
    let mut panels = vec![
        plot::Panel::new("time without a leader per rollout (ms)"),
        plot::Panel::new("handovers per rollout"),
    ];
    for (implementation, rollouts) in results {
        let (color, label) = match implementation {
            Implementation::Rust => ("#1f77b4", "ours"),
            Implementation::Go => ("#ff7f0e", "client-go peer"),
        };
        let series = |value: fn(&Rollout) -> f64| {
            let points = rollouts.iter().enumerate();
            points
                .map(|(i, rollout)| ((i + 1) as f64, value(rollout)))
                .collect()
        };
        let line = |points, label: Option<&str>| plot::Line {
            label: label.map(str::to_owned),
            color,
            dashed: false,
            points,
        };
        let gaps = series(|r| r.without_leader.as_secs_f64() * 1e3);
        panels[0].lines.push(line(gaps, Some(label)));
        panels[1]
            .lines
            .push(line(series(|r| r.handovers as f64), None));
    }
    let count = results.iter().map(|(_, r)| r.len()).max().unwrap_or(1);
    plot::Chart {
        title: "kubectl rollout restart on the test node, 3 replicas".to_owned(),
        x_max: count as f64,
        x_label: Some("rollout"),
        panels,
        markers: Vec::new(),
        marker_legend: Vec::new(),
        bands: Vec::new(),
    }
    .svg()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_updates_hand_over_without_overlap() {
    let began = Instant::now();
    let count = match std::env::var("LEADER_NODE_ROLLOUTS") {
        Ok(text) => text.parse().expect("LEADER_NODE_ROLLOUTS: a number"),
        Err(_) => 1,
    };
    let mut results = Vec::new();
    for implementation in [Implementation::Rust, Implementation::Go] {
        results.push((implementation, rollouts(implementation, count).await));
    }
    if let Ok(path) = std::env::var("LEADER_NODE_REPORT") {
        let svg = Path::new(&path).with_extension("svg");
        let mut text = markdown(&results, began.elapsed().as_secs_f64() / 60.0);
        let name = svg
            .file_name()
            .and_then(|name| name.to_str())
            .expect("a file name");
        text.push_str(&format!(
            "\n![Each rollout, both implementations]({name})\n"
        ));
        std::fs::write(&path, text).unwrap_or_else(|error| panic!("writing {path}: {error}"));
        std::fs::write(&svg, chart(&results))
            .unwrap_or_else(|error| panic!("writing {}: {error}", svg.display()));
        println!("wrote {path} and {}", svg.display());
    }
}
