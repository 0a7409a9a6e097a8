//! `examples/deploy/` on a real node: the Deployment's three replicas run as containers under
//! kubelet and containerd (the test node `make test` starts, see `tests/control-plane/launcher`),
//! pass kubelet's probes on the library's health endpoint, use the in-cluster configuration and
//! the downward API, elect one leader, hand over when the leader's pod is deleted, and when the
//! leader's container is killed through containerd (a crash).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use kube::api::{Api, ListParams, LogParams};
use kube::runtime::watcher;
use serde_json::{Value, json};

use crate::support::{Identity, Node, control_plane};

mod rollouts;
// examples/writes.rs with its leader Service needs both features.
#[cfg(all(feature = "axum", feature = "leader-service"))]
mod writes;

const SECOND: Duration = Duration::from_secs(1);
/// The lease the Deployment's args name.
const LEASE: &str = "my-leader-election-lock";
/// The Deployment's pod label.
const SELECTOR: &str = "app.kubernetes.io/name=periodic";
const REPLICAS: usize = 3;
/// Where kubelet mounts the service-account token, `ca.crt` and `namespace` for in-cluster
/// configuration.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

// Multi-threaded: the watches timestamp what they see while the test waits for kubectl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_deployment_runs_and_hands_over_on_a_real_node() {
    let began = Instant::now();
    let cluster = control_plane();
    let node = cluster.node();
    let namespace = cluster.namespace("node").await;
    let admin = cluster.client(Identity::Admin).await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &namespace);
    let leases: Api<Lease> = Api::namespaced(admin, &namespace);

    // examples/deploy/ as written, but for the patches printed here.
    apply_service_account_and_role(&node, &namespace);
    let (deployment, patches) = deployment_for_the_test_node(&node);
    for patch in patches {
        println!("deployment.yaml patched: {patch}");
    }
    let applied = Instant::now();
    node.kubectl_with_input(
        &["apply", "-n", &namespace, "-f", "-"],
        &deployment.to_string(),
    );

    // Ready means kubelet's readiness probe passed on the library's /readyz.
    let ready = ready_pods(&pods, SELECTOR, 90 * SECOND).await;
    println!(
        "{REPLICAS} pods Ready {:.1?} after kubectl apply",
        applied.elapsed()
    );
    let names: BTreeSet<String> = ready.iter().map(pod_name).collect();
    for pod in &ready {
        check_pod(pod, &node);
    }
    println!(
        "in-cluster configuration: no KUBECONFIG and no --kubeconfig in the pods, an image with \
         nothing but the program and its libraries, the service-account token mounted at \
         {SERVICE_ACCOUNT_DIR}; identities from the downward API (POD_NAME)"
    );

    // Exactly one pod leads: the Lease names it (its POD_NAME plus the runtime's random suffix),
    // its log says so, and the others' logs name it as the leader.
    let holder = wait_for_holder(&leases, |_| true, 30 * SECOND).await;
    let leader = pod_of(&names, &holder);
    // The two lines come from two tasks of the example, in either order.
    wait_for_log(
        &node,
        &namespace,
        &leader,
        &[
            &format!("{holder}: leading {LEASE}"),
            "working (fencing token",
        ],
        10 * SECOND,
    );
    for follower in names.iter().filter(|name| **name != leader) {
        let log = wait_for_log(
            &node,
            &namespace,
            follower,
            &[&format!("new leader of {LEASE}: {holder}")],
            10 * SECOND,
        );
        assert!(!log.contains(": leading "), "{follower} leads too:\n{log}");
    }
    println!("one leader: {leader} (lease holder {holder}); kubectl logs shows it leading");

    // Delete the leader's pod: kubelet sends SIGTERM, the runtime releases the lease, another
    // pod takes it, and the old pod's container exits 0.
    let holders = watch_holders(leases.clone());
    let exits = watch_exit(pods.clone(), &leader);
    tokio::time::sleep(SECOND / 2).await; // both watches listening
    let deleted_at = Instant::now();
    node.kubectl(&["delete", "pod", "-n", &namespace, &leader, "--wait=false"]);
    let (released_at, taken_at, new_holder) = handover(holders, &holder, 20 * SECOND).await;
    // Another of the three, or the pod the ReplicaSet started in place of the deleted one: it
    // may be running by the time the lease is released, and it competes like the others.
    let list = pods
        .list(&ListParams::default().labels(SELECTOR))
        .await
        .expect("listing the pods");
    let now: BTreeSet<String> = list.items.iter().map(pod_name).collect();
    let new_leader = pod_of(&now, &new_holder);
    assert_ne!(new_leader, leader, "the deleted pod leads again");
    let (exit_seen_at, terminated, deleted) = exits
        .await
        .expect("the pod watch")
        .unwrap_or_else(|| panic!("{leader} went away without a terminated container state"));
    assert_eq!(
        terminated.exit_code, 0,
        "{leader} exited with {terminated:?}"
    );
    // When the container exited, on the node's clock (whole seconds), after the delete: well
    // within terminationGracePeriodSeconds, so kubelet never needed SIGKILL. (When this test
    // sees it depends on how soon kubelet reports it: seconds on a busy machine.)
    let finished = terminated.finished_at.as_ref().expect("finishedAt");
    let exited_after = finished.0.as_second() - deleted.requested;
    assert!(
        exited_after <= deleted.grace - 5,
        "{leader} exited {exited_after} s after the delete, its grace period being {} s",
        deleted.grace
    );
    let gap = taken_at - released_at;
    assert!(gap < SECOND, "no leader for {gap:?} after the release");
    wait_for_log(
        &node,
        &namespace,
        &new_leader,
        &[&format!("{new_holder}: leading {LEASE}")],
        5 * SECOND,
    );
    println!(
        "kubectl delete pod {leader}: released {:.1?} after the delete, {new_leader} leads {:.1?} \
         after the release (as this test's watch saw the Lease); the old container exited with \
         status 0 ({}) {exited_after} s after the delete (whole seconds; the grace period is {} s), \
         kubelet reported it {:.1?} after the delete",
        released_at - deleted_at,
        gap,
        terminated.reason.as_deref().unwrap_or("no reason"),
        deleted.grace,
        exit_seen_at - deleted_at,
    );

    // A crash: the new leader's container killed with SIGKILL through containerd, as the OOM
    // killer or a segfault would end it (kubelet is not asked, and restarts the container).
    // Nothing is released: another replica takes the lease once it has expired, within the
    // lease duration plus 2 s.
    let mut holders = watch_holders(leases.clone());
    tokio::time::sleep(SECOND / 2).await; // the watch listening
    let container = container_id(&pods.get(&new_leader).await.expect("the leader's pod"));
    let killed_at = Instant::now();
    node.kill_container(&container, "SIGKILL");
    let limit = leader::runtime::ElectionConfig::default().lease_duration + 2 * SECOND;
    let crash_holder = tokio::time::timeout(limit, async {
        while let Some((at, holder)) = holders.recv().await {
            assert!(holder.is_some(), "the killed leader released the lease");
            if let Some(holder) = holder.filter(|holder| *holder != new_holder) {
                return (at, holder);
            }
        }
        panic!("the lease watch ended");
    })
    .await;
    let Ok((taken_at, crash_holder)) = crash_holder else {
        panic!("nobody took the lease within {limit:?} of killing {new_leader}'s container");
    };
    println!(
        "ctr tasks kill --signal SIGKILL {new_leader}'s container: {crash_holder} leads {:.1?} \
         later (lease duration {:?}, limit {limit:?})",
        taken_at - killed_at,
        leader::runtime::ElectionConfig::default().lease_duration,
    );

    node.kubectl(&["delete", "namespace", &namespace, "--wait=false"]);
    println!("node smoke test took {:.1?}", began.elapsed());
}

/// A leader that stops answering (its process frozen with SIGSTOP through containerd, as a
/// deadlock or a frozen VM would leave it) fails kubelet's liveness probe on `/healthz`; kubelet
/// kills and restarts its container, and another replica leads once the lease has expired.
/// The probe is made quicker than `deployment.yaml`'s (which gives a stuck replica 30 s), so
/// that the test takes seconds, and the test says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_fails_its_liveness_probe_is_restarted_and_another_pod_leads() {
    let cluster = control_plane();
    let node = cluster.node();
    let namespace = cluster.namespace("node-frozen").await;
    let admin = cluster.client(Identity::Admin).await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &namespace);
    let leases: Api<Lease> = Api::namespaced(admin, &namespace);
    apply_service_account_and_role(&node, &namespace);
    let (mut deployment, _) = deployment_for_the_test_node(&node);
    let probe = &mut deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"];
    for (field, value) in [
        ("periodSeconds", 1),
        ("failureThreshold", 2),
        ("timeoutSeconds", 1),
        ("terminationGracePeriodSeconds", 1),
    ] {
        probe[field] = value.into();
    }
    println!("deployment.yaml patched for this test: livenessProbe {probe}");
    node.kubectl_with_input(
        &["apply", "-n", &namespace, "-f", "-"],
        &deployment.to_string(),
    );
    let ready = ready_pods(&pods, SELECTOR, 90 * SECOND).await;
    let names: BTreeSet<String> = ready.iter().map(pod_name).collect();
    let holder = wait_for_holder(&leases, |_| true, 30 * SECOND).await;
    let leader = pod_of(&names, &holder);
    let container = container_id(&pods.get(&leader).await.expect("the leader's pod"));

    let frozen_at = Instant::now();
    node.kill_container(&container, "SIGSTOP");
    let lease_duration = leader::runtime::ElectionConfig::default().lease_duration;
    let limit = lease_duration + 10 * SECOND;
    let next = wait_for_holder(&leases, |h| h != holder, limit).await;
    let led_after = frozen_at.elapsed();
    // kubelet restarted the frozen container for its failed liveness probe.
    let deadline = Instant::now() + 30 * SECOND;
    let last_state = loop {
        let pod = pods.get(&leader).await.expect("the frozen leader's pod");
        let status = pod
            .status
            .and_then(|status| status.container_statuses?.into_iter().next())
            .expect("a container status");
        if status.restart_count >= 1 {
            break status.last_state.and_then(|state| state.terminated);
        }
        assert!(
            Instant::now() < deadline,
            "kubelet did not restart {leader}'s frozen container: {status:?}"
        );
        tokio::time::sleep(SECOND / 4).await;
    };
    let events = node.kubectl(&[
        "get",
        "events",
        "-n",
        &namespace,
        "--field-selector",
        &format!("involvedObject.name={leader}"),
        "-o",
        "custom-columns=REASON:.reason,MESSAGE:.message",
    ]);
    assert!(
        events.contains("Liveness probe failed"),
        "no failed liveness probe among {leader}'s events:\n{events}"
    );
    println!(
        "SIGSTOP of {leader} (lease holder {holder}): kubelet restarted it after its liveness \
         probe failed ({last_state:?}); {next} leads {led_after:.1?} after the freeze (lease \
         duration {lease_duration:?})"
    );
    node.kubectl(&["delete", "namespace", &namespace, "--wait=false"]);
}

/// Applies `examples/deploy/`'s ServiceAccount, Role and RoleBinding in `namespace`, as written.
fn apply_service_account_and_role(node: &Node, namespace: &str) {
    let manifests = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/deploy");
    for file in ["serviceaccount.yaml", "role.yaml", "rolebinding.yaml"] {
        let path = manifests.join(file);
        let path = path.to_str().expect("UTF-8");
        node.kubectl(&["apply", "-n", namespace, "-f", path]);
    }
}

/// `examples/deploy/deployment.yaml` with [`patch_for_the_test_node`]'s patches, and what they
/// were.
fn deployment_for_the_test_node(node: &Node) -> (Value, Vec<String>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/deploy/deployment.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    let mut deployment: Value = serde_saphyr::from_str(&text)
        .unwrap_or_else(|error| panic!("parsing {}: {error}", path.display()));
    let patches = patch_for_the_test_node(&mut deployment, node, "periodic");
    (deployment, patches)
}

/// The ID of `pod`'s container (`containerd://<id>`), for [`Node::kill_container`].
fn container_id(pod: &Pod) -> String {
    let status = pod.status.as_ref();
    let container = status.and_then(|status| status.container_statuses.as_ref()?.first());
    let id = container.and_then(|container| container.container_id.clone());
    id.unwrap_or_else(|| panic!("{} has no container running", pod_name(pod)))
}

/// Patches the Deployment for the test node: only what the node forces, with the node's image
/// of `example`. Returns what was patched and why.
fn patch_for_the_test_node(deployment: &mut Value, node: &Node, example: &str) -> Vec<String> {
    let container = &mut deployment["spec"]["template"]["spec"]["containers"][0];
    let mut patches = Vec::new();
    let image = node.image(example);
    patches.push(format!(
        "image {} -> {image}: built from target/debug/examples/{example} (`cargo test \
         --all-features`) by tests/node/images.py and imported into the node's containerd",
        container["image"]
    ));
    container["image"] = image.into();
    patches.push(format!(
        "imagePullPolicy {} -> Never: the node has no registry to pull from",
        container["imagePullPolicy"]
    ));
    container["imagePullPolicy"] = "Never".into();
    let host = node.api_server_host();
    let port = node.api_server_port().to_string();
    let env = container["env"].as_array_mut().expect("env is a list");
    env.push(json!({"name": "KUBERNETES_SERVICE_HOST", "value": host}));
    env.push(json!({"name": "KUBERNETES_SERVICE_PORT", "value": port}));
    patches.push(format!(
        "env += KUBERNETES_SERVICE_HOST={host}, KUBERNETES_SERVICE_PORT={port}: the test node \
         runs no kube-proxy, so the `kubernetes` Service's cluster IP leads nowhere; the API \
         server listens on the node's address (an explicit env entry wins over kubelet's)"
    ));
    patches
}

/// Follows the log of each container of the pods matching `selector` from its start, and
/// calls `on_line` with the pod's name and each line (with the container runtime's timestamp
/// first when `timestamps`): a container is followed as soon as it runs, or is seen already
/// exited, once per container (a restarted one again). Pods take their logs with them when
/// deleted, so a log must be followed from its start.
fn follow_logs<F>(pods: Api<Pod>, selector: &str, timestamps: bool, on_line: F)
where
    F: Fn(&str, &str) + Send + Sync + 'static,
{
    let on_line = std::sync::Arc::new(on_line);
    let config = watcher::Config::default().labels(selector);
    tokio::spawn(async move {
        let mut started = BTreeSet::new();
        let mut events = watcher::watcher(pods.clone(), config).boxed();
        while let Ok(Some(event)) = events.try_next().await {
            let (watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) = event else {
                continue;
            };
            let status = pod
                .status
                .as_ref()
                .and_then(|status| status.container_statuses.as_ref())
                .and_then(|statuses| statuses.first());
            let Some(status) = status else { continue };
            let started_once = (status.state.as_ref())
                .is_some_and(|state| state.running.is_some() || state.terminated.is_some());
            let name = pod_name(&pod);
            if started_once && started.insert((name.clone(), status.restart_count)) {
                let (pods, on_line) = (pods.clone(), std::sync::Arc::clone(&on_line));
                tokio::spawn(async move {
                    let params = LogParams {
                        follow: true,
                        timestamps,
                        ..LogParams::default()
                    };
                    // The log request reads the pod's current container, until it exits.
                    let Ok(stream) = pods.log_stream(&name, &params).await else {
                        return;
                    };
                    let mut lines = stream.lines();
                    while let Some(Ok(line)) = lines.next().await {
                        on_line(&name, &line);
                    }
                });
            }
        }
    });
}

fn pod_name(pod: &Pod) -> String {
    pod.metadata.name.clone().expect("a pod has a name")
}

/// Waits until exactly [`REPLICAS`] pods matching `selector` are Ready, and returns them.
async fn ready_pods(pods: &Api<Pod>, selector: &str, limit: Duration) -> Vec<Pod> {
    let deadline = Instant::now() + limit;
    loop {
        let list = pods
            .list(&ListParams::default().labels(selector))
            .await
            .expect("listing the pods");
        let ready: Vec<Pod> = list.items.into_iter().filter(is_ready).collect();
        if ready.len() == REPLICAS {
            return ready;
        }
        if Instant::now() > deadline {
            let all = pods.list(&ListParams::default()).await.expect("listing");
            let states: Vec<String> = all
                .items
                .iter()
                .map(|pod| format!("{}: {:?}", pod_name(pod), pod.status))
                .collect();
            panic!(
                "{} of {REPLICAS} pods Ready after {limit:?}:\n{}",
                ready.len(),
                states.join("\n")
            );
        }
        tokio::time::sleep(SECOND / 4).await;
    }
}

fn is_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    pod.metadata.deletion_timestamp.is_none()
        && conditions.is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// Checks a Ready pod: the node's image, no restarts, probes on the health endpoint, no
/// kubeconfig but a mounted service-account token, POD_NAME from the downward API.
fn check_pod(pod: &Pod, node: &Node) {
    let name = pod_name(pod);
    let spec = pod.spec.as_ref().expect("a pod spec");
    assert_eq!(
        spec.node_name.as_deref(),
        Some(node.name()),
        "{name}'s node"
    );
    let container = &spec.containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some(node.image("periodic").as_str())
    );
    let status = &pod
        .status
        .as_ref()
        .expect("status")
        .container_statuses
        .as_ref()
        .expect("container statuses")[0];
    assert!(status.ready, "{name}: container not ready: {status:?}");
    assert_eq!(status.restart_count, 0, "{name} restarted: {status:?}");
    for (probe, path) in [
        (&container.readiness_probe, "/readyz"),
        (&container.liveness_probe, "/healthz"),
    ] {
        let get = probe.as_ref().and_then(|p| p.http_get.as_ref());
        assert_eq!(
            get.and_then(|g| g.path.as_deref()),
            Some(path),
            "{name}'s probes"
        );
    }
    let env = container.env.as_deref().unwrap_or_default();
    assert!(
        env.iter().all(|var| var.name != "KUBECONFIG"),
        "{name} has KUBECONFIG"
    );
    let args = container.args.as_deref().unwrap_or_default();
    assert!(
        args.iter().all(|arg| !arg.contains("kubeconfig")),
        "{name} is given a kubeconfig: {args:?}"
    );
    let pod_name_source = env
        .iter()
        .find(|var| var.name == "POD_NAME")
        .and_then(|var| var.value_from.as_ref())
        .and_then(|from| from.field_ref.as_ref())
        .map(|field| field.field_path.as_str());
    assert_eq!(pod_name_source, Some("metadata.name"), "{name}'s POD_NAME");
    let mounts = container.volume_mounts.as_deref().unwrap_or_default();
    assert!(
        mounts.iter().any(|m| m.mount_path == SERVICE_ACCOUNT_DIR),
        "{name} has no service-account token mounted: {mounts:?}"
    );
}

/// The pod among `names` whose identity `holder` is: the pod name, `_`, and a random suffix.
fn pod_of(names: &BTreeSet<String>, holder: &str) -> String {
    let matching: Vec<&String> = names
        .iter()
        .filter(|name| {
            holder
                .strip_prefix(name.as_str())
                .is_some_and(|rest| rest.starts_with('_'))
        })
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "the lease holder {holder:?} is not the identity of exactly one of {names:?}"
    );
    matching[0].clone()
}

/// Waits until the lease has a holder that `accept`s; returns it.
async fn wait_for_holder(
    leases: &Api<Lease>,
    accept: impl Fn(&str) -> bool,
    limit: Duration,
) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let lease = leases.get_opt(LEASE).await.expect("reading the lease");
        let holder = lease
            .and_then(|lease| lease.spec?.holder_identity)
            .filter(|holder| !holder.is_empty());
        if let Some(holder) = holder.filter(|holder| accept(holder)) {
            return holder;
        }
        assert!(Instant::now() < deadline, "no leader after {limit:?}");
        tokio::time::sleep(SECOND / 10).await;
    }
}

/// `kubectl logs` of `pod`, once it contains every one of `texts` (polled for up to `limit`).
fn wait_for_log(
    node: &Node,
    namespace: &str,
    pod: &str,
    texts: &[&str],
    limit: Duration,
) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let log = node.kubectl(&["logs", "-n", namespace, pod]);
        if texts.iter().all(|text| log.contains(text)) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "{pod}'s log lacks one of {texts:?} after {limit:?}:\n{log}"
        );
        std::thread::sleep(SECOND / 2);
    }
}

/// The Lease's holder at each change, with when this test saw it (`None`: released).
type HolderChanges = tokio::sync::mpsc::UnboundedReceiver<(Instant, Option<String>)>;

fn watch_holders(leases: Api<Lease>) -> HolderChanges {
    let (sender, changes) = tokio::sync::mpsc::unbounded_channel();
    let config = watcher::Config::default().fields(&format!("metadata.name={LEASE}"));
    tokio::spawn(async move {
        let mut events = watcher::watcher(leases, config).boxed();
        while let Ok(Some(event)) = events.try_next().await {
            if let watcher::Event::Apply(lease) | watcher::Event::InitApply(lease) = event {
                let holder = lease.spec.and_then(|spec| spec.holder_identity);
                let holder = holder.filter(|holder| !holder.is_empty());
                if sender.send((Instant::now(), holder)).is_err() {
                    return;
                }
            }
        }
    });
    changes
}

/// Waits for `old` to release the lease and another holder to take it; returns when each was
/// seen and the new holder.
async fn handover(
    mut changes: HolderChanges,
    old: &str,
    limit: Duration,
) -> (Instant, Instant, String) {
    let mut released = None;
    let wait = async {
        while let Some((at, holder)) = changes.recv().await {
            match holder {
                None => released = released.or(Some(at)),
                Some(holder) if holder != old => return Some((at, holder)),
                Some(_) => {}
            }
        }
        None
    };
    let taken = tokio::time::timeout(limit, wait).await;
    let Ok(Some((taken_at, holder))) = taken else {
        panic!("no other pod took the lease within {limit:?}");
    };
    let Some(released_at) = released else {
        panic!("{holder} took the lease without {old} releasing it first");
    };
    (released_at, taken_at, holder)
}

/// When a pod's deletion was requested and its grace period, in whole seconds on the API
/// server's clock.
struct Deletion {
    /// Unix time of the request (`deletionTimestamp` minus the grace period).
    requested: i64,
    grace: i64,
}

/// Watches pod `name` until its container is terminated or the pod is gone; resolves to when
/// the terminated state was seen, the state and the deletion (`None` if the pod went without
/// one).
fn watch_exit(
    pods: Api<Pod>,
    name: &str,
) -> tokio::task::JoinHandle<Option<(Instant, ContainerStateTerminated, Deletion)>> {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    tokio::spawn(async move {
        let mut events = watcher::watcher(pods, config).boxed();
        let deadline = tokio::time::Instant::now() + 60 * SECOND;
        loop {
            let event = tokio::time::timeout_at(deadline, events.try_next()).await;
            let Ok(Ok(Some(event))) = event else {
                return None;
            };
            let (pod, gone) = match event {
                watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => (pod, false),
                watcher::Event::Delete(pod) => (pod, true),
                _ => continue,
            };
            let terminated = pod
                .status
                .and_then(|status| status.container_statuses)
                .and_then(|statuses| statuses.into_iter().next())
                .and_then(|status| status.state?.terminated);
            let metadata = pod.metadata;
            if let (Some(terminated), Some(at), Some(grace)) = (
                terminated,
                metadata.deletion_timestamp,
                metadata.deletion_grace_period_seconds,
            ) {
                let requested = at.0.as_second() - grace;
                return Some((Instant::now(), terminated, Deletion { requested, grace }));
            }
            if gone {
                return None;
            }
        }
    })
}
