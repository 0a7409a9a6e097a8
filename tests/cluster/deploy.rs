//! The deployment manifests in `examples/deploy/` against the real API server.
//!
//! The RBAC objects are applied for real and the Deployment as a server-side dry run (it runs on
//! a real node in `node.rs`), all with strict field validation, so a misspelt field fails here as
//! it would fail `kubectl apply`. Then the `election` example runs with a token of the
//! manifests' ServiceAccount: with the Role as written it leads, renews and releases; with one
//! verb removed from the Role, it shows what that verb is for and says so clearly. And the
//! `periodic` example, the image the Deployment runs, starts with the container's arguments and
//! environment and answers the Deployment's probes on the port they name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::serde::de::DeserializeOwned;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use leader::runtime::metrics::ErrorKind;
use leader::runtime::{
    DEFAULT_HEALTH_TOLERANCE, EVENT_RULE, ElectionConfig, LEASE_RULE, POD_DELETION_COST, POD_RULE,
    RBAC_RULES, Runtime,
};
use serde_json::Value;

use crate::support::{
    ControlPlane, FAST_TIMINGS, Identity, Process, Stream, control_plane, example_binary,
};

const SECOND: Duration = Duration::from_secs(1);
/// The lease the Deployment's args name.
const LEASE: &str = "my-leader-election-lock";
/// The `--id` of every candidate run here (each runs in a namespace of its own).
const CANDIDATE: &str = "sa-candidate";
/// The verbs the runtime uses on leases, in the order LEASE_RULE lists them.
const RUNTIME_VERBS: [&str; 5] = ["get", "list", "watch", "create", "update"];
/// Lease verbs the runtime never uses; the Role must not grant them.
const OTHER_VERBS: [&str; 3] = ["patch", "delete", "deletecollection"];

#[tokio::test]
async fn manifests_apply_and_grant_exactly_what_the_runtime_needs() {
    let cluster = control_plane();
    let admin = cluster.client(Identity::Admin).await;
    let manifests = Manifests::load();
    manifests.check_rbac_consistency();

    let installed = install(&cluster, &admin, &manifests, "deploy").await;
    let namespace = installed.namespace.as_str();

    // The Deployment, as the API server would store it.
    let deployment: Deployment = apply(&admin, namespace, &manifests.deployment, true)
        .await
        .unwrap_or_else(|error| panic!("the API server refused deployment.yaml: {error}"));
    check_deployment(&deployment, namespace, &manifests);
    // And as a plain create, as `kubectl apply` sends a new object.
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), namespace);
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let manifest: Deployment =
        serde_json::from_value(manifests.deployment.clone()).expect("deployment.yaml");
    let created = deployments.create(&dry_run, &manifest).await;
    created.unwrap_or_else(|error| panic!("a dry-run create of deployment.yaml failed: {error}"));
    // The validation is strict: a misspelt field is an error, not silently dropped.
    let mut misspelt = manifests.deployment.clone();
    misspelt["spec"]["template"]["spec"]["terminationGracePeriodSecond"] = 15.into();
    match apply::<Deployment>(&admin, namespace, &misspelt, true).await {
        Err(kube::Error::Api(status)) => assert!(
            status.message.contains("terminationGracePeriodSecond"),
            "unexpected refusal: {status:?}"
        ),
        other => panic!("a misspelt field was accepted: {other:?}"),
    }

    // The authorizer grants the ServiceAccount the runtime's verbs on leases and nothing else,
    // and on events what kube's events recorder needs (events.k8s.io, not the core group).
    wait_for_lease_grants(&admin, &installed.user, namespace, &RUNTIME_VERBS).await;
    for (group, verb, expected) in [
        ("events.k8s.io", "create", true),
        ("events.k8s.io", "patch", true),
        ("events.k8s.io", "delete", false),
        ("", "create", false),
    ] {
        let allowed = allowed(&admin, &installed.user, namespace, group, "events", verb).await;
        assert_eq!(
            allowed, expected,
            "the Role must grant {verb} on events in `{group}`: {expected}"
        );
    }

    // A candidate with the ServiceAccount's token leads, renews without refusals, and releases.
    let leases: Api<Lease> = Api::namespaced(admin.clone(), namespace);
    let mut candidate = start_candidate(&installed);
    let leading = format!("{CANDIDATE}: leading {LEASE}");
    candidate.wait_for(Stream::Out, &leading, 20 * SECOND).await;
    let first = leases.get(LEASE).await.expect("reading the lease");
    assert_eq!(holder(&first).as_deref(), Some(CANDIDATE));
    tokio::time::sleep(3 * SECOND).await; // three retry periods: at least two renews
    let renewed = leases.get(LEASE).await.expect("reading the lease");
    assert_eq!(holder(&renewed).as_deref(), Some(CANDIDATE));
    assert!(
        renew_time(&renewed) > renew_time(&first),
        "the lease was not renewed: {:?} then {:?}",
        renew_time(&first),
        renew_time(&renewed)
    );
    assert!(!candidate.printed(Stream::Out, &format!("stopped leading {LEASE}")));
    candidate.signal("TERM");
    candidate
        .wait_for(Stream::Out, &format!("{CANDIDATE}: released"), 10 * SECOND)
        .await;
    assert!(candidate.exited_successfully(10 * SECOND).await);
    let released = leases.get(LEASE).await.expect("reading the lease");
    assert_eq!(holder(&released), None, "the lease was not released");
    let refusals = candidate.matching(Stream::Err, "forbidden");
    assert!(
        refusals.is_empty(),
        "refused with the full Role: {refusals:#?}"
    );
}

/// The container as the Deployment describes it, run as a process: its liveness and readiness
/// probes get `200 ok` on the port and paths the manifest names, `/metrics` shows the lease, and
/// while it leads, the pod it is told it runs in (`POD_NAME`; a Pod object without a node here)
/// carries the pod deletion cost (`--pod-deletion-cost` in the manifest).
#[tokio::test]
async fn the_deployments_probes_answer_on_the_port_and_paths_it_names() {
    let cluster = control_plane();
    let admin = cluster.client(Identity::Admin).await;
    let manifests = Manifests::load();
    let installed = install(&cluster, &admin, &manifests, "probes").await;
    let deployment: Deployment =
        serde_json::from_value(manifests.deployment.clone()).expect("deployment.yaml");
    let pod = deployment.spec.template.spec.expect("pod spec");
    let [container] = pod.containers.as_slice() else {
        panic!("one container: {:?}", pod.containers);
    };

    // The probes, the container port and `--health-port` all name one port.
    let mut args = container.args.clone().unwrap_or_default();
    let port_arg = args
        .iter()
        .position(|arg| arg == "--health-port")
        .map(|at| at + 1);
    let port_arg = port_arg.expect("--health-port in the container's args");
    let port: i32 = args[port_arg].parse().expect("a port number");
    let ports = container.ports.iter().flatten();
    let declared: Vec<i32> = ports.map(|port| port.container_port).collect();
    assert_eq!(declared, [port], "the container port is the health port");
    let probes = [
        ("liveness", container.liveness_probe.as_ref()),
        ("readiness", container.readiness_probe.as_ref()),
    ];
    let mut paths = Vec::new();
    for (kind, probe) in probes {
        let http = probe.and_then(|probe| probe.http_get.as_ref());
        let http = http.unwrap_or_else(|| panic!("an HTTP {kind} probe"));
        assert_eq!(http.port, IntOrString::Int(port), "the {kind} probe's port");
        paths.push(http.path.clone().expect("a probe path"));
    }

    // The container's process, on a free port of this machine instead: its arguments as
    // written, its environment as the kubelet fills it in, the ServiceAccount's credentials.
    let free_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    args[port_arg] = free_port.to_string();
    let pod_name = "periodic-7d9f8-probes";
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &installed.namespace);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": pod_name },
        "spec": {
            "serviceAccountName": Manifests::name(&manifests.service_account),
            "automountServiceAccountToken": false,
            "containers": [{ "name": "periodic", "image": "periodic:latest" }],
        }
    }))
    .expect("a Pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("creating the Pod object");
    let mut command = Command::new(example_binary("periodic"));
    command
        .args(&args)
        .env("KUBECONFIG", &installed.kubeconfig)
        .env("RUST_LOG", "leader_runtime=warn")
        .env("NO_COLOR", "1");
    for var in container.env.iter().flatten() {
        let field = var
            .value_from
            .as_ref()
            .and_then(|from| from.field_ref.as_ref());
        let value = match field.map(|field| field.field_path.as_str()) {
            Some("metadata.name") => pod_name.to_owned(),
            Some("metadata.namespace") => installed.namespace.clone(),
            other => panic!("an environment variable this test cannot fill in: {other:?}"),
        };
        command.env(&var.name, value);
    }
    let mut process = Process::start(command);
    process
        .wait_for(Stream::Out, &format!("leading {LEASE}"), 20 * SECOND)
        .await;

    let base = format!("http://127.0.0.1:{free_port}");
    for path in &paths {
        let (status, body) = http_get_until_ok(&format!("{base}{path}"), 10 * SECOND).await;
        assert_eq!((status, body.as_str()), (200, "ok\n"), "GET {path}");
    }
    let (status, metrics) = http_get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    let leading = format!("leader_election_master_status{{name=\"{LEASE}\"}} 1\n");
    assert!(metrics.contains(&leading), "{metrics}");
    let deadline = Instant::now() + 10 * SECOND;
    loop {
        let pod = pods.get(pod_name).await.expect("reading the Pod");
        let cost = pod.metadata.annotations.unwrap_or_default();
        if cost.get(POD_DELETION_COST).map(String::as_str) == Some("1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no {POD_DELETION_COST}: 1 on the leader's pod: {cost:?}"
        );
        tokio::time::sleep(SECOND / 10).await;
    }

    process.signal("TERM");
    assert!(process.exited_successfully(15 * SECOND).await);
    let refusals = process.matching(Stream::Err, "forbidden");
    assert!(refusals.is_empty(), "refused: {refusals:#?}");
}

/// GETs `url` with hyper's client: the status and the body.
async fn http_get(url: &str) -> (u16, String) {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<hyper::body::Bytes>>();
    let uri: hyper::Uri = url.parse().expect("a URL");
    let response = match client.get(uri).await {
        Ok(response) => response,
        Err(error) => return (0, format!("{error:?}")),
    };
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.expect("the body");
    (
        status,
        String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    )
}

/// GETs `url` until it answers 200 or `limit` has passed; the last answer.
async fn http_get_until_ok(url: &str, limit: Duration) -> (u16, String) {
    let deadline = Instant::now() + limit;
    loop {
        let answer = http_get(url).await;
        if answer.0 == 200 || Instant::now() >= deadline {
            return answer;
        }
        tokio::time::sleep(SECOND / 10).await;
    }
}

/// What a candidate does when the Role lacks one verb, and what it prints.
#[tokio::test]
async fn a_role_missing_a_verb_gives_the_clear_forbidden_message() {
    let cluster = control_plane();
    let admin = cluster.client(Identity::Admin).await;
    let manifests = Manifests::load();
    // One namespace per verb, all at once: each scenario takes a few seconds of waiting.
    let mut scenarios = Vec::new();
    for verb in RUNTIME_VERBS {
        let installed = install(&cluster, &admin, &manifests.without_verb(verb), verb).await;
        let admin = admin.clone();
        let task = tokio::spawn(async move { missing_verb(verb, installed, admin).await });
        scenarios.push((verb, task));
    }
    let mut failed = Vec::new();
    for (verb, task) in scenarios {
        match task.await {
            Ok(outcome) => println!("without `{verb}`: {outcome}"),
            Err(_) => failed.push(verb), // the panic message is printed already
        }
    }
    assert!(failed.is_empty(), "scenarios failed without: {failed:?}");
}

/// Runs the candidate with the Role minus `verb` and checks what that causes; returns what
/// happened, for the test output.
async fn missing_verb(verb: &'static str, installed: Installed, admin: Client) -> String {
    let namespace = installed.namespace.clone();
    let mut granted = RUNTIME_VERBS.to_vec();
    granted.retain(|v| *v != verb);
    wait_for_lease_grants(&admin, &installed.user, &namespace, &granted).await;

    let leases: Api<Lease> = Api::namespaced(admin, &namespace);
    let mut candidate = start_candidate(&installed);
    let leading = format!("{CANDIDATE}: leading {LEASE}");
    let stopped = format!("{CANDIDATE}: stopped leading {LEASE}");
    let refusal = refusal_text(&installed.user, verb, &namespace);
    let outcome = match verb {
        // The lease does not exist and may not be created: the candidate never leads.
        "create" => {
            candidate.wait_for(Stream::Err, &refusal, 10 * SECOND).await;
            tokio::time::sleep(3 * SECOND).await; // retries with backoff, refused again
            assert!(
                !candidate.printed(Stream::Out, &leading),
                "led without `create`"
            );
            let lease = leases.get_opt(LEASE).await.expect("reading the lease");
            assert!(
                lease.is_none(),
                "a lease exists without `create`: {lease:?}"
            );
            "never leads; the lease is never created".to_owned()
        }
        // Creating the lease works, so the candidate leads once; then every renew is refused
        // and the term ends at the renew deadline. It cannot take its own lease back (that is an
        // update too), nor release it: the stale record stays until someone else takes over.
        "update" => {
            let began = candidate.wait_for(Stream::Out, &leading, 10 * SECOND).await;
            let ended = candidate.wait_for(Stream::Out, &stopped, 10 * SECOND).await;
            // The term ends at the renew deadline (3 s), in any case before the lease (4 s)
            // could expire and let another candidate in.
            let term = ended - began;
            assert!(term < 4 * SECOND, "led {term:?} without a renew");
            candidate.wait_for(Stream::Err, &refusal, 5 * SECOND).await;
            let why = "lost leadership reason=RenewDeadline";
            candidate.wait_for(Stream::Err, why, SECOND).await;
            tokio::time::sleep(3 * SECOND).await;
            let terms = candidate.matching(Stream::Out, &leading).len();
            assert_eq!(terms, 1, "led again without `update`");
            let lease = leases.get(LEASE).await.expect("reading the lease");
            assert_eq!(holder(&lease).as_deref(), Some(CANDIDATE));
            format!("leads once (create), stops leading {term:?} later at the renew deadline")
        }
        // The watch feeds followers; without `list` it cannot start, without `watch` it cannot
        // follow the list. Either way the elector falls back to GETs every retry period and
        // leads: correct, only less efficient. The refusal is still reported.
        "list" | "watch" => {
            candidate.wait_for(Stream::Out, &leading, 10 * SECOND).await;
            candidate.wait_for(Stream::Err, &refusal, 10 * SECOND).await;
            tokio::time::sleep(3 * SECOND).await;
            assert!(!candidate.printed(Stream::Out, &stopped), "stopped leading");
            let lease = leases.get(LEASE).await.expect("reading the lease");
            assert_eq!(holder(&lease).as_deref(), Some(CANDIDATE));
            format!("leads and renews, polling instead of watching; the {verb} refusal is logged")
        }
        // Reads come from the watch; a GET is needed only before the watch has synced (and to
        // confirm a suspicious watch event while leading). The candidate leads either way.
        "get" => {
            candidate.wait_for(Stream::Out, &leading, 10 * SECOND).await;
            tokio::time::sleep(3 * SECOND).await;
            assert!(!candidate.printed(Stream::Out, &stopped), "stopped leading");
            let lease = leases.get(LEASE).await.expect("reading the lease");
            assert_eq!(holder(&lease).as_deref(), Some(CANDIDATE));
            let refused = candidate.printed(Stream::Err, &refusal);
            format!(
                "leads and renews from the watch; startup GET {}",
                if refused {
                    "refused and reported, then the watch synced"
                } else {
                    "not needed: the watch synced first"
                }
            )
        }
        other => unreachable!("no scenario for `{other}`"),
    };
    // Every refusal reported names the missing verb and only it, the user, the namespace and
    // the rule that fixes it.
    let refusals = candidate.matching(Stream::Err, "forbidden");
    for line in &refusals {
        assert!(
            line.contains(&refusal) && line.contains(LEASE_RULE),
            "unclear or unexpected refusal without `{verb}`: {line}"
        );
    }
    format!("{outcome} ({} refusals logged)", refusals.len())
}

/// Without the event rule, a candidate leads and renews as usual, and says once that it records
/// no events.
#[tokio::test]
async fn a_role_without_the_event_rule_warns_once_and_the_election_goes_on() {
    let cluster = control_plane();
    let admin = cluster.client(Identity::Admin).await;
    let manifests = Manifests::load().without_events();
    let installed = install(&cluster, &admin, &manifests, "no-events").await;
    wait_for_lease_grants(
        &admin,
        &installed.user,
        &installed.namespace,
        &RUNTIME_VERBS,
    )
    .await;
    let leases: Api<Lease> = Api::namespaced(admin, &installed.namespace);
    let mut candidate = start_candidate(&installed);
    let leading = format!("{CANDIDATE}: leading {LEASE}");
    candidate.wait_for(Stream::Out, &leading, 20 * SECOND).await;
    let refusal = format!(
        "may not record events in namespace `{}`",
        installed.namespace
    );
    candidate.wait_for(Stream::Err, &refusal, 10 * SECOND).await;
    let first = leases.get(LEASE).await.expect("reading the lease");
    tokio::time::sleep(3 * SECOND).await;
    let renewed = leases.get(LEASE).await.expect("reading the lease");
    assert!(renew_time(&renewed) > renew_time(&first), "renews go on");
    candidate.signal("TERM");
    let released = format!("{CANDIDATE}: released");
    candidate
        .wait_for(Stream::Out, &released, 10 * SECOND)
        .await;
    assert!(candidate.exited_successfully(10 * SECOND).await);
    let refusals = candidate.matching(Stream::Err, "forbidden");
    assert_eq!(
        refusals.len(),
        1,
        "one warning, for the events: {refusals:#?}"
    );
    assert!(refusals[0].contains(EVENT_RULE) && refusals[0].contains("events(false)"));
}

/// Without `list` or `watch`, the runtime follows its lease by polling; its status, health check
/// and metrics say why, naming the verb and the rule, as they do for the other verbs.
#[tokio::test]
async fn a_refused_list_or_watch_shows_in_status_health_and_metrics() {
    let cluster = control_plane();
    let admin = cluster.client(Identity::Admin).await;
    for verb in ["list", "watch"] {
        let manifests = Manifests::load().without_verb(verb);
        let installed = install(&cluster, &admin, &manifests, &format!("no-{verb}")).await;
        let mut granted = RUNTIME_VERBS.to_vec();
        granted.retain(|v| *v != verb);
        wait_for_lease_grants(&admin, &installed.user, &installed.namespace, &granted).await;
        let runtime = Runtime::builder()
            .client(crate::support::client_from_kubeconfig(&installed.kubeconfig).await)
            .namespace(&installed.namespace)
            .identity(CANDIDATE)
            .build()
            .await
            .expect("building the runtime");
        let election = runtime.election(LEASE).expect("a valid lease");
        let work = {
            let election = election.clone();
            tokio::spawn(async move { election.lead(|_| async {}).await })
        };
        let mut status = election.status();
        let watched = status.wait_for(|status| status.watch_error.is_some());
        let status = tokio::time::timeout(20 * SECOND, watched)
            .await
            .unwrap_or_else(|_| panic!("without `{verb}`: no watch error within 20 s"))
            .expect("the election lives")
            .clone();
        let refusal = refusal_text(&installed.user, verb, &installed.namespace);
        let watch_error = status.watch_error.clone().unwrap_or_default();
        assert!(
            watch_error.contains(&refusal) && watch_error.contains(LEASE_RULE),
            "{watch_error}"
        );
        assert!(status.permission_denied, "{status:?}");
        let live = runtime.liveness(DEFAULT_HEALTH_TOLERANCE);
        assert!(
            !live.is_healthy() && live.to_string().contains(&refusal),
            "{live}"
        );
        let ready = runtime.readiness();
        assert!(ready.to_string().contains(&refusal), "{ready}");
        assert!(election.metrics().errors(ErrorKind::Forbidden) >= 1);
        // Polling instead, it still leads.
        let led = work.await.expect("the work ran");
        assert!(led.is_ok(), "without `{verb}` it leads by polling: {led:?}");
        runtime.shutdown().await;
    }
}

/// The runtime's message when the API server refuses `verb` to `user`.
fn refusal_text(user: &str, verb: &str, namespace: &str) -> String {
    format!("`{user}` may not {verb} leases.coordination.k8s.io in namespace `{namespace}`")
}

fn holder(lease: &Lease) -> Option<String> {
    let holder = lease.spec.as_ref()?.holder_identity.clone()?;
    (!holder.is_empty()).then_some(holder)
}

fn renew_time(lease: &Lease) -> Option<k8s_openapi::jiff::Timestamp> {
    Some(lease.spec.as_ref()?.renew_time.as_ref()?.0)
}

// ----- the manifests -----

/// The objects of `examples/deploy/`, as the files spell them.
#[derive(Clone)]
struct Manifests {
    service_account: Value,
    role: Value,
    role_binding: Value,
    deployment: Value,
}

impl Manifests {
    fn load() -> Self {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/deploy");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|error| panic!("reading {}: {error}", dir.display()))
            .map(|entry| entry.expect("listing examples/deploy").path())
            .filter(|path| matches!(path.extension(), Some(ext) if ext == "yaml" || ext == "yml"))
            .collect();
        files.sort();
        let mut by_kind: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for file in &files {
            let text = std::fs::read_to_string(file)
                .unwrap_or_else(|error| panic!("reading {}: {error}", file.display()));
            let documents: Vec<Value> = serde_saphyr::from_multiple(&text)
                .unwrap_or_else(|error| panic!("parsing {}: {error}", file.display()));
            for document in documents {
                let kind = document["kind"]
                    .as_str()
                    .unwrap_or_else(|| panic!("an object without a kind in {}", file.display()));
                by_kind.entry(kind.to_owned()).or_default().push(document);
            }
        }
        let mut take = |kind: &str| {
            let mut objects = by_kind.remove(kind).unwrap_or_default();
            assert_eq!(
                objects.len(),
                1,
                "examples/deploy/ must hold exactly one {kind}"
            );
            objects.remove(0)
        };
        let manifests = Manifests {
            service_account: take("ServiceAccount"),
            role: take("Role"),
            role_binding: take("RoleBinding"),
            deployment: take("Deployment"),
        };
        assert!(
            by_kind.is_empty(),
            "objects in examples/deploy/ this test does not know: {:?}",
            by_kind.keys()
        );
        manifests
    }

    fn name(object: &Value) -> &str {
        object["metadata"]["name"]
            .as_str()
            .expect("every object has metadata.name")
    }

    /// A copy whose Role lacks `verb` on leases.
    fn without_verb(&self, verb: &str) -> Self {
        let mut copy = self.clone();
        let rules = copy.role["rules"]
            .as_array_mut()
            .expect("the Role has rules");
        for rule in rules
            .iter_mut()
            .filter(|rule| rule["resources"][0] == "leases")
        {
            if let Some(verbs) = rule["verbs"].as_array_mut() {
                verbs.retain(|v| v.as_str() != Some(verb));
            }
        }
        copy
    }

    /// A copy whose Role has no rule for events.
    fn without_events(&self) -> Self {
        let mut copy = self.clone();
        let rules = copy.role["rules"]
            .as_array_mut()
            .expect("the Role has rules");
        rules.retain(|rule| rule["resources"][0] != "events");
        copy
    }

    /// The Role is exactly the rules the runtime's refusals recommend, bound to the
    /// ServiceAccount in the RoleBinding's own namespace.
    fn check_rbac_consistency(&self) {
        let role: Role = serde_json::from_value(self.role.clone()).expect("role.yaml is a Role");
        // The runtime's rules, and the one `--pod-deletion-cost` (in the Deployment) needs.
        let recommended: Vec<PolicyRule> = RBAC_RULES
            .iter()
            .chain([&POD_RULE])
            .map(|rule| {
                serde_saphyr::from_str(&format!("{{{rule}}}"))
                    .expect("each rule is a YAML flow mapping")
            })
            .collect();
        assert_eq!(role.rules, Some(recommended));
        let binding: RoleBinding =
            serde_json::from_value(self.role_binding.clone()).expect("a RoleBinding");
        let role_ref = RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: Manifests::name(&self.role).into(),
        };
        assert_eq!(binding.role_ref, role_ref);
        let subject = Subject {
            kind: "ServiceAccount".into(),
            name: Manifests::name(&self.service_account).into(),
            ..Subject::default()
        };
        assert_eq!(binding.subjects, Some(vec![subject]));
    }
}

/// What the Deployment must say, checked on the object the API server returned.
fn check_deployment(deployment: &Deployment, namespace: &str, manifests: &Manifests) {
    assert_eq!(deployment.metadata.namespace.as_deref(), Some(namespace));
    let spec = &deployment.spec;
    assert_eq!(spec.replicas, Some(3));
    let pod = spec.template.spec.as_ref().expect("pod spec");
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some(Manifests::name(&manifests.service_account))
    );
    // Shutdown: the work stops within the hard-stop grace, then the release gets at most the
    // renew deadline; the kubelet must wait at least that long before SIGKILL.
    let config = ElectionConfig::default();
    let grace = pod
        .termination_grace_period_seconds
        .expect("a grace period");
    let needed = config.hard_stop_grace() + config.renew_deadline;
    assert!(
        Duration::from_secs(grace.try_into().expect("positive")) >= needed,
        "terminationGracePeriodSeconds {grace} is shorter than the {needed:?} shutdown may take"
    );
    let [container] = pod.containers.as_slice() else {
        panic!("one container: {:?}", pod.containers);
    };
    let args = container.args.clone().unwrap_or_default();
    let expected = [
        "--lease-lock-name",
        LEASE,
        "--health-port",
        "8080",
        "--pod-deletion-cost",
    ];
    assert_eq!(args, expected);
    let env: BTreeMap<_, _> = container
        .env
        .iter()
        .flatten()
        .map(|var| {
            let field = var
                .value_from
                .as_ref()
                .and_then(|from| from.field_ref.as_ref());
            (
                var.name.as_str(),
                field.map(|field| field.field_path.as_str()),
            )
        })
        .collect();
    assert_eq!(env.get("POD_NAME"), Some(&Some("metadata.name")));
    assert_eq!(env.get("POD_NAMESPACE"), Some(&Some("metadata.namespace")));
    let requests = container
        .resources
        .as_ref()
        .and_then(|resources| resources.requests.as_ref())
        .expect("resource requests");
    assert!(requests.contains_key("cpu") && requests.contains_key("memory"));
    let probe = container.liveness_probe.as_ref().expect("a liveness probe");
    let http = probe.http_get.as_ref().expect("an HTTP liveness probe");
    assert_eq!(http.path.as_deref(), Some("/healthz"));
    assert_eq!(http.port, IntOrString::Int(8080));
}

// ----- the API server -----

/// The manifests' RBAC objects applied in a fresh namespace, and a kubeconfig that authenticates
/// as their ServiceAccount.
struct Installed {
    namespace: String,
    /// `system:serviceaccount:<namespace>:<name>`.
    user: String,
    kubeconfig: PathBuf,
    _dir: TempDir,
}

async fn install(
    cluster: &ControlPlane,
    admin: &Client,
    manifests: &Manifests,
    prefix: &str,
) -> Installed {
    let namespace = cluster.namespace(&format!("deploy-{prefix}")).await;
    let objects = [
        ("serviceaccount.yaml", &manifests.service_account),
        ("role.yaml", &manifests.role),
        ("rolebinding.yaml", &manifests.role_binding),
    ];
    for (file, object) in objects {
        let applied = match object["kind"].as_str() {
            Some("ServiceAccount") => apply::<ServiceAccount>(admin, &namespace, object, false)
                .await
                .map(drop),
            Some("Role") => apply::<Role>(admin, &namespace, object, false)
                .await
                .map(drop),
            _ => apply::<RoleBinding>(admin, &namespace, object, false)
                .await
                .map(drop),
        };
        applied.unwrap_or_else(|error| panic!("the API server refused {file}: {error}"));
    }
    let account = Manifests::name(&manifests.service_account);
    let token = service_account_token(admin, &namespace, account).await;
    let dir = TempDir::new(&namespace);
    let user = format!("system:serviceaccount:{namespace}:{account}");
    let kubeconfig = write_kubeconfig(&dir, &user, &token);
    Installed {
        namespace,
        user,
        kubeconfig,
        _dir: dir,
    }
}

/// Applies `object` to `namespace` with server-side apply and strict field validation (a dry run
/// when `dry_run`), and returns what the API server made of it.
async fn apply<K>(
    client: &Client,
    namespace: &str,
    object: &Value,
    dry_run: bool,
) -> kube::Result<K>
where
    K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let mut object = object.clone();
    object["metadata"]["namespace"] = namespace.into();
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let mut params = PatchParams::apply("leader-deploy-test").validation_strict();
    if dry_run {
        params = params.dry_run();
    }
    api.patch(Manifests::name(&object), &params, &Patch::Apply(&object))
        .await
}

/// A token for the ServiceAccount from the TokenRequest API, valid for an hour.
async fn service_account_token(admin: &Client, namespace: &str, account: &str) -> String {
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let issued = accounts
        .create_token_request(account, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|error| panic!("requesting a token for {namespace}/{account}: {error}"));
    let status = issued.status.unwrap_or_default();
    status.token.expect("an issued token")
}

/// Whether the API server's authorizer lets `user` do `verb` on `resource` in `namespace`.
async fn allowed(
    admin: &Client,
    user: &str,
    namespace: &str,
    group: &str,
    resource: &str,
    verb: &str,
) -> bool {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            resource_attributes: Some(ResourceAttributes {
                group: Some(group.into()),
                resource: Some(resource.into()),
                namespace: Some(namespace.into()),
                verb: Some(verb.into()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let reviews: Api<SubjectAccessReview> = Api::all(admin.clone());
    let answer = reviews
        .create(&PostParams::default(), &review)
        .await
        .expect("creating a SubjectAccessReview");
    answer.status.expect("a review status").allowed
}

/// Waits until the authorizer grants `user` exactly `expected` of the lease verbs (the RBAC
/// authorizer learns of new Roles through its informers, a moment after they are created).
async fn wait_for_lease_grants(admin: &Client, user: &str, namespace: &str, expected: &[&str]) {
    let deadline = Instant::now() + 10 * SECOND;
    loop {
        let mut granted = Vec::new();
        for verb in RUNTIME_VERBS.into_iter().chain(OTHER_VERBS) {
            if allowed(
                admin,
                user,
                namespace,
                "coordination.k8s.io",
                "leases",
                verb,
            )
            .await
            {
                granted.push(verb);
            }
        }
        if granted == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{user} may {granted:?} leases in {namespace}, expected {expected:?}"
        );
        tokio::time::sleep(SECOND / 10).await;
    }
}

// ----- files -----

/// A directory of this test's own under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "leader-deploy-{label}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|error| panic!("creating {}: {error}", path.display()));
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes a kubeconfig that talks to the control plane as `user` with `token`.
fn write_kubeconfig(dir: &TempDir, user: &str, token: &str) -> PathBuf {
    let state_dir =
        std::env::var_os("LEADER_TEST_CONTROL_PLANE").expect("checked by control_plane");
    let info_path = Path::new(&state_dir).join("control-plane.json");
    let info: Value = serde_json::from_str(
        &std::fs::read_to_string(&info_path)
            .unwrap_or_else(|error| panic!("reading {}: {error}", info_path.display())),
    )
    .expect("control-plane.json is JSON");
    let field = |key: &str| {
        let value = info[key].as_str();
        value.unwrap_or_else(|| panic!("control-plane.json has no `{key}`"))
    };
    // Scalars quoted as JSON strings, which YAML reads the same way.
    let quote = |text: &str| Value::from(text).to_string();
    let kubeconfig = format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: control-plane\n  \
           cluster:\n    \
             server: {server}\n    \
             certificate-authority: {ca}\n\
         users:\n\
         - name: {user}\n  \
           user:\n    \
             token: {token}\n\
         contexts:\n\
         - name: service-account\n  \
           context:\n    \
             cluster: control-plane\n    \
             user: {user}\n\
         current-context: service-account\n",
        server = quote(field("server")),
        ca = quote(field("ca_file")),
        user = quote(user),
        token = quote(token),
    );
    let path = dir.0.join("kubeconfig");
    std::fs::write(&path, kubeconfig)
        .unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
    path
}

/// The `election` example with the fast timings, authenticating with `installed`'s
/// kubeconfig, logging the runtime's warnings (and nothing else) to stderr.
fn start_candidate(installed: &Installed) -> Process {
    let mut command = Command::new(example_binary("election"));
    command
        .arg("--kubeconfig")
        .arg(&installed.kubeconfig)
        .args(["--id", CANDIDATE, "--lease-lock-name", LEASE])
        .args(["--lease-lock-namespace", &installed.namespace])
        .args(FAST_TIMINGS)
        .env("RUST_LOG", "leader_runtime=warn")
        .env("NO_COLOR", "1");
    Process::start(command)
}
