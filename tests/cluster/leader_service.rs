//! `RuntimeBuilder::leader_service` against the real API server: three replicas (addresses
//! 192.0.2.1-3:8080, a documentation range: the API server refuses loopback endpoints, and no
//! traffic is sent) on one lease keep the EndpointSlice of a selector-less Service pointing at the
//! leader. Each replica's work reads the slice first thing in its term, so the test sees what a
//! client of the Service would have met the moment the new leader started working:
//!
//! - the first leader's work finds the slice naming it (its IP, its identity and fencing token);
//! - after that leader shuts down gracefully, the next one's work finds its own endpoint only;
//! - after the next one crashes, the slice still names it (nobody else clears it), and the third
//!   one's work, once the lease expired, finds its own endpoint in its place;
//! - when the last one shuts down gracefully, it empties the slice (no other candidate is left).
//!
//! Each replica runs its runtime on a tokio runtime of its own, on a thread of its own, with its
//! own API client. The crash drops that tokio runtime without shutting the leader runtime down:
//! every task stops where it is, and the replica sends no request after (no release, no clear),
//! as after a SIGKILL.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, PostParams};
use leader::runtime::{
    ElectionConfig, Error, LEADER_SERVICE_HOLDER_ANNOTATION, LEADER_SERVICE_MANAGER, Runtime,
    leader_service_slice_name,
};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::support::{Identity, client_from_kubeconfig, control_plane};

const LEASE: &str = "writes";
const SERVICE: &str = "writes-leader";
const PORT: u16 = 8080;

/// What a replica's work saw of the slice first thing in its term.
#[derive(Debug)]
struct Seen {
    identity: String,
    fencing_token: i32,
    /// The slice's endpoint addresses.
    addresses: Vec<String>,
    /// The slice's holder annotation, parsed.
    holder: Option<Value>,
}

/// The slice's endpoint addresses and holder annotation.
fn read(slice: &EndpointSlice) -> (Vec<String>, Option<Value>) {
    let addresses = (slice.endpoints.iter().flatten())
        .flat_map(|endpoint| endpoint.addresses.clone())
        .collect();
    let holder = (slice.metadata.annotations.as_ref())
        .and_then(|annotations| annotations.get(LEADER_SERVICE_HOLDER_ANNOTATION))
        .map(|value| serde_json::from_str(value).unwrap());
    (addresses, holder)
}

enum Stop {
    /// `Runtime::shutdown`: the work stops, the slice is emptied, the lease released.
    Gracefully,
    /// Drop everything where it is.
    Crash,
}

struct Replica {
    identity: String,
    ip: String,
    stop: Option<oneshot::Sender<Stop>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Replica {
    fn start(
        kubeconfig: PathBuf,
        namespace: &str,
        identity: &str,
        ip: &str,
        seen: mpsc::UnboundedSender<Seen>,
    ) -> Self {
        let (stop, stopped) = oneshot::channel();
        let (namespace, name, address) = (
            namespace.to_owned(),
            identity.to_owned(),
            format!("{ip}:{PORT}"),
        );
        let thread = std::thread::spawn(move || {
            let tokio = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            tokio.block_on(async move {
                let client = client_from_kubeconfig(&kubeconfig).await;
                let timings = ElectionConfig::default()
                    .with_lease_duration(Duration::from_secs(4))
                    .with_renew_deadline(Duration::from_secs(3))
                    .with_retry_period(Duration::from_secs(1));
                let runtime = Runtime::builder()
                    .client(client.clone())
                    .identity(&name)
                    .namespace(&namespace)
                    .config(timings)
                    .address(address)
                    .leader_service(LEASE, SERVICE)
                    .build()
                    .await
                    .unwrap();
                let election = runtime.election(LEASE).unwrap();
                let slices: Api<EndpointSlice> = Api::namespaced(client, &namespace);
                let leading = async {
                    // Until the end: a work that panicked (say, the slice was missing) is
                    // reported by the test's wait for the next leader.
                    loop {
                        let (slices, seen) = (slices.clone(), seen.clone());
                        let led = election
                            .lead(move |leadership| async move {
                                let slice = slices.get(&leader_service_slice_name(SERVICE)).await;
                                let (addresses, holder) = read(&slice.unwrap());
                                let _ = seen.send(Seen {
                                    identity: leadership.identity().to_owned(),
                                    fencing_token: leadership.fencing_token(),
                                    addresses,
                                    holder,
                                });
                                leadership.cancelled().await;
                            })
                            .await;
                        if let Err(Error::ShutDown { .. }) = led {
                            return;
                        }
                    }
                };
                tokio::select! {
                    stop = stopped => match stop.unwrap() {
                        Stop::Gracefully => runtime.shutdown().await,
                        // Return at once: the tasks of this tokio runtime run no more, and
                        // dropping it below drops them where they are.
                        Stop::Crash => {}
                    },
                    () = leading => panic!("{name}: the runtime shut down by itself"),
                }
            });
            drop(tokio);
        });
        Replica {
            identity: identity.to_owned(),
            ip: ip.to_owned(),
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn stop(&mut self, how: Stop) {
        let _ = self.stop.take().unwrap().send(how);
        self.thread.take().unwrap().join().unwrap();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(Stop::Crash);
        }
    }
}

/// The next leader's first look at the slice; checks that it names that leader alone.
async fn next_leader(seen: &mut mpsc::UnboundedReceiver<Seen>, replicas: &[Replica]) -> Seen {
    let next = tokio::time::timeout(Duration::from_secs(30), seen.recv())
        .await
        .expect("a replica leads within 30 s")
        .unwrap();
    let leader = (replicas.iter())
        .find(|replica| replica.identity == next.identity)
        .unwrap();
    assert_eq!(
        next.addresses,
        [leader.ip.as_str()],
        "{}'s work started with the slice not pointing at it alone: {next:?}",
        next.identity
    );
    assert_eq!(
        next.holder,
        Some(json!({"holderIdentity": next.identity, "leaseTransitions": next.fencing_token})),
        "{next:?}"
    );
    next
}

fn index(replicas: &[Replica], identity: &str) -> usize {
    (replicas.iter())
        .position(|replica| replica.identity == identity)
        .unwrap()
}

#[tokio::test]
async fn the_service_points_at_each_new_leader_before_its_work_starts() {
    let cluster = control_plane();
    let namespace = cluster.namespace("leader-service").await;
    let client = cluster.client(Identity::Admin).await;
    // The user's selector-less Service, on the port the replicas serve.
    let service: Service = serde_json::from_value(json!({
        "metadata": { "name": SERVICE },
        "spec": { "ports": [{ "port": PORT, "protocol": "TCP" }] },
    }))
    .unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    services
        .create(&PostParams::default(), &service)
        .await
        .unwrap();
    let slices: Api<EndpointSlice> = Api::namespaced(client, &namespace);
    let slice_name = leader_service_slice_name(SERVICE);

    let (report, mut seen) = mpsc::unbounded_channel();
    let kubeconfig = cluster.kubeconfig(Identity::Admin);
    let mut replicas: Vec<Replica> = ["a", "b", "c"]
        .into_iter()
        .zip(["192.0.2.1", "192.0.2.2", "192.0.2.3"])
        .map(|(identity, ip)| {
            Replica::start(kubeconfig.clone(), &namespace, identity, ip, report.clone())
        })
        .collect();

    let first = next_leader(&mut seen, &replicas).await;
    let slice = slices.get(&slice_name).await.unwrap();
    let labels = slice.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["kubernetes.io/service-name"], SERVICE);
    assert_eq!(
        labels["endpointslice.kubernetes.io/managed-by"],
        LEADER_SERVICE_MANAGER
    );
    assert_eq!(slice.address_type, "IPv4");
    let ports = slice.ports.unwrap();
    assert_eq!(
        (ports.len(), ports[0].port, ports[0].protocol.as_deref()),
        (1, Some(i32::from(PORT)), Some("TCP"))
    );

    // Graceful: the next leader's work finds its own endpoint in place of the first's.
    let mut gone = replicas.remove(index(&replicas, &first.identity));
    gone.stop(Stop::Gracefully);
    let second = next_leader(&mut seen, &replicas).await;
    assert_ne!(second.identity, first.identity);
    assert!(second.fencing_token > first.fencing_token);

    // A crash: nobody clears the slice, which names the crashed leader until the lease expires
    // and the third replica replaces its endpoint with its own before its work starts.
    let mut crashed = replicas.remove(index(&replicas, &second.identity));
    crashed.stop(Stop::Crash);
    let (addresses, _) = read(&slices.get(&slice_name).await.unwrap());
    assert_eq!(addresses, [crashed.ip.as_str()], "right after the crash");
    let third = next_leader(&mut seen, &replicas).await;
    assert!(third.fencing_token > second.fencing_token);

    // The last one leaves gracefully with no one to take over: it empties the slice, which
    // still says whose term it was.
    let mut last = replicas.pop().unwrap();
    last.stop(Stop::Gracefully);
    let (addresses, holder) = read(&slices.get(&slice_name).await.unwrap());
    assert!(
        addresses.is_empty(),
        "after the last leader left: {addresses:?}"
    );
    assert_eq!(
        holder,
        Some(json!({"holderIdentity": third.identity, "leaseTransitions": third.fencing_token}))
    );
}

#[tokio::test]
async fn without_rights_on_endpointslices_the_election_goes_on_unharmed() {
    let cluster = control_plane();
    let namespace = cluster.namespace("leader-service-rbac").await;
    let admin = cluster.client(Identity::Admin).await;
    // Rights on leases and events only, as RBAC_RULES lists them; none on endpointslices.
    let role: Role = serde_json::from_value(json!({
        "metadata": { "name": "leader" },
        "rules": [
            { "apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
              "verbs": ["get", "list", "watch", "create", "update"] },
            { "apiGroups": ["events.k8s.io"], "resources": ["events"],
              "verbs": ["create", "patch"] },
        ],
    }))
    .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": { "name": "leader" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "leader" },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                       "name": "leader-test-unprivileged" }],
    }))
    .unwrap();
    let params = PostParams::default();
    let roles: Api<Role> = Api::namespaced(admin.clone(), &namespace);
    roles.create(&params, &role).await.unwrap();
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), &namespace);
    bindings.create(&params, &binding).await.unwrap();

    let runtime = Runtime::builder()
        .client(cluster.client(Identity::Unprivileged).await)
        .identity("refused")
        .namespace(&namespace)
        .address(format!("192.0.2.9:{PORT}"))
        .leader_service(LEASE, SERVICE)
        .build()
        .await
        .unwrap();
    let election = runtime.election(LEASE).unwrap();
    let led = tokio::time::timeout(
        Duration::from_secs(10),
        election.lead(|leadership| async move { leadership.fencing_token() }),
    )
    .await;
    assert!(
        matches!(led, Ok(Ok(_))),
        "the work ran despite the refusal: {led:?}"
    );
    let slices: Api<EndpointSlice> = Api::namespaced(admin, &namespace);
    let slice = slices
        .get_opt(&leader_service_slice_name(SERVICE))
        .await
        .unwrap();
    assert!(slice.is_none(), "{slice:?}");
    runtime.shutdown().await;
}
