//! What client-go's lease lock puts on the Lease besides the record, done the same way by both
//! implementations on one Lease: leader-election Events (`kubectl get events` lists them in one
//! shape) and labels (set by each holder over the others', kept on renew).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use leader::runtime::{ElectionConfig, Runtime};

use crate::support::{
    Candidate, ControlPlane, FAST_TIMINGS, Identity, Implementation, control_plane,
};

const LEASE: &str = "shared";

const SECOND: Duration = Duration::from_secs(1);

/// The timings of [`FAST_TIMINGS`], for the runtime in this process.
fn fast() -> ElectionConfig {
    ElectionConfig {
        lease_duration: 4 * SECOND,
        renew_deadline: 3 * SECOND,
        retry_period: SECOND,
    }
}

/// This crate's runtime in the test process, as the replica `id`.
async fn rust_replica(
    cluster: &ControlPlane,
    namespace: &str,
    id: &str,
    labels: &[(&str, &str)],
) -> Runtime {
    Runtime::builder()
        .client(cluster.client(Identity::Admin).await)
        .identity(id)
        .namespace(namespace)
        .config(fast())
        .lease_labels(labels.iter().copied())
        .build()
        .await
        .expect("building the runtime")
}

/// Campaigns for the lease on `runtime` and holds it until the term ends.
fn campaign(runtime: &Runtime) -> tokio::task::JoinHandle<leader::Result<()>> {
    let election = runtime.election(LEASE).expect("a valid lease");
    tokio::spawn(async move {
        election
            .lead(|leadership| async move { leadership.token().cancelled().await })
            .await
    })
}

fn go_peer(cluster: &ControlPlane, namespace: &str, id: &str, options: &[&str]) -> Candidate {
    let leases = [LEASE.to_owned()];
    let options: Vec<&str> = FAST_TIMINGS.iter().chain(options).copied().collect();
    Candidate::start_as(
        Implementation::Go,
        cluster,
        id,
        namespace,
        &leases,
        &options,
    )
}

async fn wait_for_holder(leases: &Api<Lease>, holder: &str) -> Lease {
    let deadline = tokio::time::Instant::now() + 20 * SECOND;
    loop {
        if let Some(lease) = leases.get_opt(LEASE).await.expect("reading the lease") {
            let current = lease
                .spec
                .as_ref()
                .and_then(|spec| spec.holder_identity.clone());
            if current.as_deref() == Some(holder) {
                return lease;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{holder} did not lead within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn both_implementations_record_their_leadership_as_events_on_the_lease_in_one_shape() {
    let cluster = control_plane();
    let namespace = cluster.namespace("events").await;
    let leases: Api<Lease> = Api::namespaced(cluster.client(Identity::Admin).await, &namespace);

    // go-1 leads, hands over to rust-1 on SIGTERM, which hands over to go-2 on shutdown.
    let mut go_1 = go_peer(&cluster, &namespace, "go-1", &[]);
    wait_for_holder(&leases, "go-1").await;
    let rust = rust_replica(&cluster, &namespace, "rust-1", &[]).await;
    let term = campaign(&rust);
    go_1.signal("TERM");
    go_1.read_to_end(10 * SECOND).await;
    wait_for_holder(&leases, "rust-1").await;
    let mut go_2 = go_peer(&cluster, &namespace, "go-2", &[]);
    tokio::time::sleep(SECOND).await;
    rust.shutdown().await;
    assert!(term.await.unwrap().is_ok());
    wait_for_holder(&leases, "go-2").await;
    go_2.signal("TERM");
    go_2.read_to_end(10 * SECOND).await;

    let expected = [
        "go-1 became leader",
        "go-1 stopped leading",
        "rust-1 became leader",
        "rust-1 stopped leading",
        "go-2 became leader",
        "go-2 stopped leading",
    ];
    let selector = format!("involvedObject.name={LEASE}");
    let list = |output: &str| -> Vec<serde_json::Value> {
        let list: serde_json::Value = serde_json::from_str(output).expect("kubectl prints JSON");
        list["items"].as_array().cloned().unwrap_or_default()
    };
    let get = [
        "get",
        "events",
        "-n",
        &namespace,
        "--field-selector",
        &selector,
    ];
    let deadline = tokio::time::Instant::now() + 10 * SECOND;
    let events = loop {
        let events = list(&cluster.kubectl(Identity::Admin, &[&get[..], &["-o", "json"]].concat()));
        if events.len() >= expected.len() || tokio::time::Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "kubectl get events:\n{}",
        cluster.kubectl(Identity::Admin, &get)
    );
    // Every event has client-go's shape: Normal, LeaderElection, regarding Lease/shared. Ours
    // are events.k8s.io/v1 Events (with an eventTime), client-go's core/v1 Events (with a
    // lastTimestamp): kubectl lists both alike.
    let mut messages = Vec::new();
    for event in &events {
        let field = |path: &[&str]| {
            let value = path.iter().fold(event, |value, key| &value[*key]);
            value.as_str().unwrap_or_default().to_owned()
        };
        assert_eq!(
            [
                field(&["type"]),
                field(&["reason"]),
                field(&["involvedObject", "kind"]),
                field(&["involvedObject", "name"])
            ],
            ["Normal", "LeaderElection", "Lease", LEASE],
            "{event:#}"
        );
        let time = [field(&["eventTime"]), field(&["lastTimestamp"])].concat();
        messages.push((time, field(&["message"])));
    }
    messages.sort();
    let messages: Vec<&str> = messages
        .iter()
        .map(|(_, message)| message.as_str())
        .collect();
    for message in expected {
        assert!(
            messages.contains(&message),
            "{message:?} missing from {messages:?}"
        );
    }
}

#[tokio::test]
async fn each_holder_sets_its_labels_over_the_others_and_keeps_them_while_it_leads() {
    let cluster = control_plane();
    let namespace = cluster.namespace("labels").await;
    let leases: Api<Lease> = Api::namespaced(cluster.client(Identity::Admin).await, &namespace);
    let labels = |lease: &Lease| lease.metadata.labels.clone().unwrap_or_default();
    let ours = [("tier", "rust"), ("owner", "rust")];

    let rust = rust_replica(&cluster, &namespace, "rust-1", &ours).await;
    let term = campaign(&rust);
    wait_for_holder(&leases, "rust-1").await;
    tokio::time::sleep(3 * SECOND).await; // a few renews
    let held = labels(&leases.get(LEASE).await.unwrap());
    assert_eq!(
        held,
        BTreeMap::from(ours.map(|(k, v)| (k.to_owned(), v.to_owned())))
    );

    // A client-go leader in between sets its own over ours, and keeps ours it does not set.
    let mut go = go_peer(
        &cluster,
        &namespace,
        "go-1",
        &["--lease-labels", "owner=go,impl=client-go"],
    );
    tokio::time::sleep(SECOND).await;
    rust.shutdown().await;
    assert!(term.await.unwrap().is_ok());
    let taken = wait_for_holder(&leases, "go-1").await;
    tokio::time::sleep(2 * SECOND).await;
    let under_go = labels(&leases.get(LEASE).await.unwrap());
    assert_eq!(under_go["owner"], "go", "{taken:?}");
    assert_eq!(
        (under_go["impl"].as_str(), under_go["tier"].as_str()),
        ("client-go", "rust")
    );

    // Back to ours: our labels again, the others kept.
    let rust = rust_replica(&cluster, &namespace, "rust-2", &ours).await;
    let term = campaign(&rust);
    go.signal("TERM");
    go.read_to_end(10 * SECOND).await;
    wait_for_holder(&leases, "rust-2").await;
    let back = labels(&leases.get(LEASE).await.unwrap());
    assert_eq!(
        (back["owner"].as_str(), back["tier"].as_str()),
        ("rust", "rust")
    );
    assert_eq!(back["impl"], "client-go");
    rust.shutdown().await;
    assert!(term.await.unwrap().is_ok());
}
