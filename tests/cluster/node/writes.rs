//! `examples/deploy/writes/writes.yaml` on the test node: three pods of `examples/writes.rs`, each
//! publishing its pod IP (downward API) on the Lease; the test, inside the node's network
//! namespace, writes to every pod at random by its pod IP (the node runs no kube-proxy, so the
//! Service's cluster IP leads nowhere), following the followers' redirects, through handovers of
//! the lease: by turns the leader's pod deleted (SIGTERM from kubelet, a new pod from the
//! Deployment) and its container killed through containerd (SIGKILL, as a crash; kubelet
//! restarts it). The checks are `tests/cluster/writes.rs`'s, on what the pods logged: every
//! accepted write applied once, by the holder with its fencing token, within its term.
//!
//! `LEADER_NODE_WRITES_HANDOVERS` sets the handovers (4 in `make test`, 20 in
//! `make node-writes`, which writes the results to docs/writes.md).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use leader::runtime::LEADER_SERVICE_HOLDER_ANNOTATION;
use serde_json::Value;

use super::{
    SECOND, apply_service_account_and_role, container_id, follow_logs, patch_for_the_test_node,
    pod_name, pod_of, ready_pods,
};
use crate::lease_history::{LeaseHistory, Renewals};
use crate::support::{FAST_TIMINGS, Identity, Node, control_plane};
use crate::writes::{
    Apply, Handover, Targets, check, next_holder, send_writes, summarise, terms, write_results,
};

use crate::writes::LEASE;
const SELECTOR: &str = "app.kubernetes.io/name=writes";
const PORT: u16 = 8080;
/// The selector-less Service writes.yaml keeps on the leader (`--leader-service`).
const LEADER_SERVICE: &str = "writes-leader";
/// The lease duration in [`FAST_TIMINGS`].
const LEASE_DURATION: Duration = Duration::from_secs(4);

/// The apply lines of every container of every pod with the label, followed from each
/// container's start (pods take their logs with them when deleted).
#[derive(Clone, Default)]
struct Applies(Arc<Mutex<Vec<Apply>>>);

impl Applies {
    fn follow(pods: Api<Pod>) -> Applies {
        let applies = Applies::default();
        let followed = applies.clone();
        follow_logs(pods, SELECTOR, false, move |_pod, line| {
            if let Some(apply) = Apply::parse(line) {
                followed.0.lock().unwrap().push(apply);
            }
        });
        applies
    }

    fn all(&self) -> Vec<Apply> {
        self.0.lock().unwrap().clone()
    }
}

/// Where the pods serve: every pod with an IP, terminating ones included (clients do not learn
/// at once that a pod is going).
async fn pod_addresses(pods: &Api<Pod>) -> Vec<SocketAddr> {
    let list = pods
        .list(&ListParams::default().labels(SELECTOR))
        .await
        .expect("listing the pods");
    let ips = list
        .items
        .iter()
        .filter_map(|pod| pod.status.as_ref()?.pod_ip.clone());
    ips.map(|ip| SocketAddr::new(ip.parse().expect("an IP"), PORT))
        .collect()
}

/// The pod whose container holds the lease as `holder` (its POD_NAME plus a suffix), with its
/// container's ID.
async fn pod_of_holder(pods: &Api<Pod>, holder: &str) -> (String, String) {
    let list = pods
        .list(&ListParams::default().labels(SELECTOR))
        .await
        .expect("listing the pods");
    let names: BTreeSet<String> = list.items.iter().map(pod_name).collect();
    let name = pod_of(&names, holder);
    let pod = list
        .items
        .iter()
        .find(|pod| pod_name(pod) == name)
        .expect("listed");
    (name, container_id(pod))
}

/// Waits up to `limit` for the leader Service's EndpointSlice to name `holder` alone, at the IP
/// of its pod; returns that IP.
async fn wait_for_slice(
    slices: &Api<EndpointSlice>,
    pods: &Api<Pod>,
    holder: &str,
    limit: Duration,
) -> String {
    let name = leader::runtime::leader_service_slice_name(LEADER_SERVICE);
    let deadline = Instant::now() + limit;
    let (pod, _) = pod_of_holder(pods, holder).await;
    let pod_ip = pods
        .get(&pod)
        .await
        .expect("the pod")
        .status
        .and_then(|s| s.pod_ip)
        .expect("a pod IP");
    loop {
        let slice = slices.get_opt(&name).await.expect("reading the slice");
        let named = slice.as_ref().and_then(|slice| {
            let annotation = slice
                .metadata
                .annotations
                .as_ref()?
                .get(LEADER_SERVICE_HOLDER_ANNOTATION)?;
            let value: Value = serde_json::from_str(annotation).ok()?;
            Some(value["holderIdentity"].as_str()?.to_owned())
        });
        let addresses: Vec<String> = slice
            .iter()
            .flat_map(|slice| slice.endpoints.iter().flatten())
            .flat_map(|endpoint| endpoint.addresses.clone())
            .collect();
        if named.as_deref() == Some(holder) && addresses == [pod_ip.clone()] {
            return pod_ip;
        }
        assert!(
            addresses.len() <= 1,
            "the leader Service has several endpoints: {slice:?}"
        );
        assert!(
            Instant::now() < deadline,
            "the leader Service did not point at {holder} ({pod_ip}) within {limit:?}: {slice:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn deployment_for_the_test_node(node: &Node) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/deploy/writes/writes.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    let mut documents = Vec::new();
    for document in text.split("\n---\n") {
        let mut object: Value = serde_saphyr::from_str(document)
            .unwrap_or_else(|error| panic!("parsing {}: {error}", path.display()));
        if object["kind"] == "Deployment" {
            for patch in patch_for_the_test_node(&mut object, node, "writes") {
                println!("writes.yaml patched: {patch}");
            }
            let args = &mut object["spec"]["template"]["spec"]["containers"][0]["args"];
            let args = args.as_array_mut().expect("args are a list");
            args.extend(FAST_TIMINGS.iter().map(|arg| Value::from(*arg)));
            println!("writes.yaml patched: args += {FAST_TIMINGS:?}, so that crashes cost 4 s");
        }
        documents.push(object.to_string());
    }
    documents.join("\n---\n")
}

// Multi-threaded: the client keeps writing while the test waits for kubectl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_reach_the_leader_pod_and_are_applied_once_across_handovers() {
    let handovers: usize = std::env::var("LEADER_NODE_WRITES_HANDOVERS").map_or(4, |n| {
        n.parse().expect("LEADER_NODE_WRITES_HANDOVERS: a number")
    });
    let cluster = control_plane();
    let node = cluster.node();
    let namespace = cluster.namespace("node-writes").await;
    let admin = cluster.client(Identity::Admin).await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &namespace);
    let leases: Api<Lease> = Api::namespaced(admin.clone(), &namespace);
    let slices: Api<EndpointSlice> = Api::namespaced(admin, &namespace);
    let history = LeaseHistory::record(leases.clone(), Some(LEASE), Renewals::Latest);
    let applies = Applies::follow(pods.clone());

    apply_service_account_and_role(&node, &namespace);
    let manifests = deployment_for_the_test_node(&node);
    node.kubectl_with_input(&["apply", "-n", &namespace, "-f", "-"], &manifests);
    ready_pods(&pods, SELECTOR, 90 * SECOND).await;
    let mut holder = next_holder(&leases, None, 30 * SECOND).await;
    wait_for_slice(&slices, &pods, &holder, 5 * SECOND).await;

    let targets: Targets = Arc::new(Mutex::new(pod_addresses(&pods).await));
    let stop = leader::CancellationToken::new();
    let writer = tokio::spawn(send_writes(Arc::clone(&targets), stop.clone()));
    let mut done = Vec::new();
    for round in 0..handovers {
        tokio::time::sleep(SECOND).await;
        let (pod, container) = pod_of_holder(&pods, &holder).await;
        let signal = if round % 2 == 0 { "TERM" } else { "KILL" };
        let at = Instant::now();
        let limit = if signal == "TERM" {
            node.kubectl(&["delete", "pod", "-n", &namespace, &pod, "--wait=false"]);
            5 * SECOND
        } else {
            node.kill_container(&container, "SIGKILL");
            LEASE_DURATION + 2 * SECOND
        };
        let next = next_holder(&leases, Some(&holder), limit).await;
        done.push(Handover {
            from: holder.clone(),
            signal,
            at,
            next_at: Instant::now(),
        });
        let led_after = at.elapsed();
        // The leader Service follows, the crashed leader's endpoint replaced too.
        let ip = wait_for_slice(&slices, &pods, &next, 5 * SECOND).await;
        println!(
            "handover {}: {signal} of {holder} ({pod}); {next} leads {led_after:?} later, and \
             the leader Service points at {ip} {:?} after the {signal}",
            round + 1,
            at.elapsed()
        );
        holder = next;
        // Three pods Ready again (a new one for a deleted pod, a restarted container for a
        // killed one) before the next round, and written to.
        ready_pods(&pods, SELECTOR, 90 * SECOND).await;
        *targets.lock().unwrap() = pod_addresses(&pods).await;
    }
    tokio::time::sleep(SECOND).await;
    stop.cancel();
    let sent = writer.await.expect("the client");
    // The last applies reach the log readers.
    tokio::time::sleep(2 * SECOND).await;
    history.stop();

    let applies = applies.all();
    let terms = terms(&history.of(LEASE));
    let report = check(&sent, &applies, &terms);
    let summary = summarise(&sent, &done, &applies);
    println!("node writes: {report}\n{summary}");
    let setup = format!(
        "Three pods of `examples/deploy/writes/writes.yaml` (`examples/writes.rs`, \
         `--on-follower=redirect`) on the test node, lease duration 4 s, renew deadline 3 s, \
         retry period 1 s; the client, in the node's network namespace, writes to the pod IPs \
         at random; {handovers} handovers, by turns the leader's pod deleted (`kubectl delete \
         pod`: SIGTERM, then a new pod) and its container killed through containerd (`ctr tasks \
         kill --signal SIGKILL`: kubelet restarts it)."
    );
    write_results(
        "LEADER_WRITES_RESULTS",
        "pods on the test node",
        &setup,
        &report,
        &summary,
    );
}
