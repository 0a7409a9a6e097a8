//! `examples/controller.rs` as users run it: three replicas of a leader-gated kube-rs
//! `Controller` over the ConfigMaps of a namespace, checked through the objects themselves. A
//! watch the test keeps on the ConfigMaps records every version of every object in
//! resourceVersion order, with the annotations the controller writes (`leader.example/...`):
//! who wrote, with which fencing token, and the object's write count.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::{Client, ResourceExt};

use crate::support::{Candidate, ControlPlane, FAST_TIMINGS, Identity, control_plane};

const LEASE: &str = "configmap-controller";
const SECOND: Duration = Duration::from_secs(1);
/// The lease duration in [`FAST_TIMINGS`].
const LEASE_DURATION: Duration = Duration::from_secs(4);

/// The label the example's default selector picks.
const SELECTED: (&str, &str) = ("leader.example/reconcile", "true");
const RECONCILED_BY: &str = "leader.example/reconciled-by";
const FENCING_TOKEN: &str = "leader.example/fencing-token";
const WRITES: &str = "leader.example/writes";

/// One version of one ConfigMap, as the test's watch saw it.
#[derive(Clone, Debug)]
struct Version {
    /// When the watch event arrived.
    seen_at: Instant,
    resource_version: u64,
    name: String,
    annotations: BTreeMap<String, String>,
}

impl Version {
    fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str)
    }

    fn reconciled_by(&self) -> Option<&str> {
        self.annotation(RECONCILED_BY)
    }

    fn fencing_token(&self) -> i32 {
        let token = self
            .annotation(FENCING_TOKEN)
            .expect("written by the controller");
        token.parse().expect("a number")
    }

    fn writes(&self) -> u64 {
        self.annotation(WRITES)
            .map_or(0, |n| n.parse().expect("a number"))
    }
}

/// Every version of every ConfigMap of a namespace, from a watch started before any exists.
struct History {
    versions: Arc<Mutex<Vec<Version>>>,
    watch: tokio::task::JoinHandle<()>,
}

impl History {
    async fn record(configmaps: Api<ConfigMap>) -> History {
        let list = configmaps
            .list_metadata(&ListParams::default())
            .await
            .unwrap();
        let mut since = list
            .metadata
            .resource_version
            .expect("a list has a resourceVersion");
        let versions = Arc::new(Mutex::new(Vec::new()));
        let recorded = versions.clone();
        let watch = tokio::spawn(async move {
            // A watch ends after a server-side timeout; the next one resumes where it ended.
            loop {
                let mut events = configmaps
                    .watch(&WatchParams::default(), &since)
                    .await
                    .expect("watching the ConfigMaps")
                    .boxed();
                while let Some(event) = events.try_next().await.expect("the ConfigMaps' watch") {
                    let object = match event {
                        WatchEvent::Added(object)
                        | WatchEvent::Modified(object)
                        | WatchEvent::Deleted(object) => object,
                        WatchEvent::Bookmark(bookmark) => {
                            since = bookmark.metadata.resource_version;
                            continue;
                        }
                        WatchEvent::Error(status) => panic!("the ConfigMaps' watch: {status:?}"),
                    };
                    since = object.resource_version().expect("a resourceVersion");
                    recorded.lock().unwrap().push(Version {
                        seen_at: Instant::now(),
                        resource_version: since.parse().expect("an etcd revision"),
                        name: object.name_any(),
                        annotations: object.annotations().clone(),
                    });
                }
            }
        });
        History { versions, watch }
    }

    fn versions(&self) -> Vec<Version> {
        self.versions.lock().unwrap().clone()
    }

    /// The versions of `name` in which the controller wrote, in resourceVersion order: those
    /// whose write count differs from the version before.
    fn writes(&self, name: &str) -> Vec<Version> {
        let mut writes: Vec<Version> = Vec::new();
        let mut count = 0;
        for version in self.versions().into_iter().filter(|v| v.name == name) {
            if version.writes() != count {
                count = version.writes();
                writes.push(version);
            }
        }
        writes
    }

    /// Waits up to `limit` for a write to `name` by `by` (any writer if `None`).
    async fn wait_for_write(&self, name: &str, by: Option<&str>, limit: Duration) -> Version {
        let deadline = Instant::now() + limit;
        loop {
            let found = self
                .writes(name)
                .into_iter()
                .find(|write| by.is_none_or(|by| write.reconciled_by() == Some(by)));
            if let Some(write) = found {
                return write;
            }
            assert!(!self.watch.is_finished(), "the ConfigMaps' watch ended");
            assert!(
                Instant::now() < deadline,
                "no write to {name} by {by:?} within {limit:?}; its writes: {:#?}",
                self.writes(name)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Checks every object's history: in resourceVersion order, each write of the controller
    /// counts one more than the write before (it was based on the latest version), and none
    /// carries a lower fencing token than a write before it. Returns how many writes there were.
    fn assert_fenced(&self) -> usize {
        let versions = self.versions();
        for pair in versions.windows(2) {
            assert!(
                pair[0].resource_version < pair[1].resource_version,
                "the watch delivered versions out of resourceVersion order: {pair:#?}"
            );
        }
        let mut by_object: BTreeMap<&str, Vec<&Version>> = BTreeMap::new();
        for version in &versions {
            by_object.entry(&version.name).or_default().push(version);
        }
        let mut total = 0;
        for (name, versions) in by_object {
            let (mut count, mut highest) = (0, None::<&Version>);
            for version in versions {
                if version.writes() == count {
                    continue; // not a write of the controller (the test's own, say)
                }
                assert_eq!(
                    version.writes(),
                    count + 1,
                    "{name}: a write not based on the latest version landed: {version:#?}"
                );
                count = version.writes();
                total += 1;
                if let Some(highest) = highest {
                    assert!(
                        version.fencing_token() >= highest.fencing_token(),
                        "{name}: a write of an earlier leader landed after a later leader's:\n\
                         {version:#?}\nafter\n{highest:#?}"
                    );
                }
                highest = Some(version);
            }
        }
        total
    }
}

impl Drop for History {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

/// A namespace with the test's watch on its ConfigMaps.
struct Setup {
    cluster: ControlPlane,
    namespace: String,
    client: Client,
    configmaps: Api<ConfigMap>,
    history: History,
}

impl Setup {
    async fn new(prefix: &str) -> Setup {
        let cluster = control_plane();
        let namespace = cluster.namespace(prefix).await;
        let client = cluster.client(Identity::Admin).await;
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
        let history = History::record(configmaps.clone()).await;
        Setup {
            cluster,
            namespace,
            client,
            configmaps,
            history,
        }
    }

    fn replica(&self, id: &str, timings: &[&str]) -> Candidate {
        Candidate::start_example(
            "controller",
            &self.cluster,
            id,
            &self.namespace,
            LEASE,
            timings,
        )
    }

    /// Creates a ConfigMap named `name` with one key; `selected` puts the label the controller
    /// selects on it.
    async fn create(&self, name: &str, selected: bool) {
        let labels = selected.then(|| BTreeMap::from([(SELECTED.0.into(), SELECTED.1.into())]));
        let configmap = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels,
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([("color".into(), "blue".into())])),
            ..ConfigMap::default()
        };
        self.configmaps
            .create(&PostParams::default(), &configmap)
            .await
            .unwrap_or_else(|error| panic!("creating {name}: {error}"));
    }

    async fn holder(&self) -> Option<String> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), &self.namespace);
        let lease = leases.get_opt(LEASE).await.unwrap()?;
        lease
            .spec?
            .holder_identity
            .filter(|holder| !holder.is_empty())
    }

    /// Waits up to `limit` for a holder other than `not`, and returns it.
    async fn next_holder(&self, not: Option<&str>, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(holder) = self.holder().await.filter(|h| Some(h.as_str()) != not) {
                return holder;
            }
            assert!(
                Instant::now() < deadline,
                "no holder but {not:?} within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Three replicas; returns them and the index of the leader, once it has written `seed` (which
/// this creates).
async fn three_replicas(setup: &Setup, timings: &[&str], seed: &str) -> (Vec<Candidate>, usize) {
    let fleet: Vec<Candidate> = (1..=3)
        .map(|i| setup.replica(&format!("instance-{i}"), timings))
        .collect();
    setup.create(seed, true).await;
    let leader_id = setup.next_holder(None, 20 * SECOND).await;
    setup
        .history
        .wait_for_write(seed, Some(&leader_id), 20 * SECOND)
        .await;
    let leader = fleet
        .iter()
        .position(|c| c.id == leader_id)
        .expect("a replica leads");
    (fleet, leader)
}

#[tokio::test]
async fn only_the_leader_reconciles_and_only_the_selected_configmaps() {
    let setup = Setup::new("controller-one").await;
    let (mut fleet, leader) = three_replicas(&setup, &FAST_TIMINGS, "seed").await;
    let leader_id = fleet[leader].id.clone();
    for i in 0..5 {
        setup.create(&format!("selected-{i}"), true).await;
    }
    setup.create("not-selected", false).await;
    for i in 0..5 {
        let name = format!("selected-{i}");
        setup
            .history
            .wait_for_write(&name, Some(&leader_id), 10 * SECOND)
            .await;
    }
    // Some renews (1 s) and a reconcile of the edit below, by followers too if they reconciled.
    let data = serde_json::json!({ "data": { "size": "large" } });
    setup
        .configmaps
        .patch("selected-0", &PatchParams::default(), &Patch::Merge(&data))
        .await
        .unwrap();
    tokio::time::sleep(3 * SECOND).await;

    assert_eq!(setup.holder().await.as_deref(), Some(leader_id.as_str()));
    let edited = setup.history.writes("selected-0");
    let last = edited.last().expect("written");
    assert_eq!(
        last.annotation("leader.example/data-keys"),
        Some("color,size"),
        "{edited:#?}"
    );
    for version in setup.history.versions() {
        if version.name == "not-selected" {
            assert!(version.annotations.is_empty(), "{version:#?}");
        } else if let Some(by) = version.reconciled_by() {
            assert_eq!(by, leader_id, "a follower wrote: {version:#?}");
        }
    }
    assert_eq!(
        setup.history.assert_fenced(),
        7,
        "the seed, 5 objects, 1 edit"
    );
    for (i, replica) in fleet.iter_mut().enumerate() {
        let reconciled = replica.printed(": reconciled ");
        assert_eq!(
            reconciled,
            i == leader,
            "{}: {:#?}",
            replica.id,
            replica.seen
        );
        let started = replica.printed(": controller started (fencing token");
        assert_eq!(started, i == leader, "{}: {:#?}", replica.id, replica.seen);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigterm_the_next_leader_reconciles_an_object_created_during_the_handover_within_2_s()
{
    let setup = Setup::new("controller-term").await;
    // Production timings (15 s lease): only the release explains a handover within 2 s.
    let (mut fleet, leader) = three_replicas(&setup, &[], "seed").await;
    let mut stopping = fleet.remove(leader);
    let stopped_at = Instant::now();
    stopping.signal("TERM");
    setup.create("during-handover", true).await;
    let write = setup
        .history
        .wait_for_write("during-handover", None, 10 * SECOND)
        .await;
    let took = write.seen_at - stopped_at;
    eprintln!(
        "controller: after SIGTERM, {:?} reconciled a new object {took:?} later",
        write.reconciled_by()
    );
    assert_ne!(
        write.reconciled_by(),
        Some(stopping.id.as_str()),
        "{write:#?}"
    );
    assert!(took < 2 * SECOND, "took {took:?}");
    // The old leader stopped its controller and exited cleanly; the new one restamped the seed.
    stopping.read_to_end(10 * SECOND).await;
    assert!(stopping.wait(), "exit status 0 after SIGTERM");
    assert!(
        stopping.printed(": controller stopped"),
        "{:#?}",
        stopping.seen
    );
    let next = write.reconciled_by().expect("stamped").to_owned();
    let seed = setup
        .history
        .wait_for_write("seed", Some(&next), 5 * SECOND)
        .await;
    assert!(seed.fencing_token() > setup.history.writes("seed")[0].fencing_token());
    setup.history.assert_fenced();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkill_the_next_leader_reconciles_within_the_lease_duration_and_2_s() {
    let setup = Setup::new("controller-kill").await;
    let (mut fleet, leader) = three_replicas(&setup, &FAST_TIMINGS, "seed").await;
    let mut killed = fleet.remove(leader);
    let killed_at = Instant::now();
    killed.signal("KILL");
    assert!(!killed.wait(), "killed");
    setup.create("during-handover", true).await;
    let write = setup
        .history
        .wait_for_write("during-handover", None, 20 * SECOND)
        .await;
    let took = write.seen_at - killed_at;
    eprintln!(
        "controller: after SIGKILL, {:?} reconciled a new object {took:?} later",
        write.reconciled_by()
    );
    assert_ne!(
        write.reconciled_by(),
        Some(killed.id.as_str()),
        "{write:#?}"
    );
    assert!(took <= LEASE_DURATION + 2 * SECOND, "took {took:?}");
    setup.history.assert_fenced();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_ten_handovers_no_write_of_an_earlier_leader_lands_after_a_later_leaders() {
    let setup = Arc::new(Setup::new("controller-fencing").await);
    let (mut fleet, _) = three_replicas(&setup, &FAST_TIMINGS, "seed").await;
    // Work for the controllers all along: a new object or a new key every 250 ms.
    let churn = tokio::spawn({
        let setup = setup.clone();
        async move {
            for i in 0.. {
                if i % 2 == 0 {
                    setup.create(&format!("churn-{i}"), true).await;
                } else {
                    let data = serde_json::json!({ "data": { format!("key-{i}"): "x" } });
                    let name = format!("churn-{}", i - 1);
                    let patch = Patch::Merge(&data);
                    setup
                        .configmaps
                        .patch(&name, &PatchParams::default(), &patch)
                        .await
                        .unwrap();
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    });
    let mut started = fleet.len();
    let mut leader_id = setup.next_holder(None, 10 * SECOND).await;
    let mut tokens = Vec::new();
    for handover in 0..10 {
        // The leader has written in this term: a churn object created from now on.
        let probe = format!("probe-{handover}");
        setup.create(&probe, true).await;
        let write = setup
            .history
            .wait_for_write(&probe, Some(&leader_id), 10 * SECOND)
            .await;
        tokens.push(write.fencing_token());
        let leader = fleet
            .iter()
            .position(|c| c.id == leader_id)
            .expect("a replica leads");
        let mut stopping = fleet.remove(leader);
        let signal = if handover % 2 == 0 { "TERM" } else { "KILL" };
        stopping.signal(signal);
        let next = setup
            .next_holder(Some(&leader_id), LEASE_DURATION + 10 * SECOND)
            .await;
        assert_eq!(
            stopping.wait(),
            signal == "TERM",
            "{} after SIG{signal}",
            stopping.id
        );
        started += 1;
        fleet.push(setup.replica(&format!("instance-{started}"), &FAST_TIMINGS));
        leader_id = next;
    }
    churn.abort();
    tokio::time::sleep(SECOND).await; // the last writes reach the watch
    assert!(
        tokens.windows(2).all(|pair| pair[0] < pair[1]),
        "fencing tokens {tokens:?}"
    );
    let writes = setup.history.assert_fenced();
    eprintln!(
        "controller: {writes} writes over 10 handovers (fencing tokens {tokens:?}), none out of order"
    );
    assert!(writes > 100, "only {writes} writes");
}
