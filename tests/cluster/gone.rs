//! 410 Gone from the real API server. A follower's watches resume from the last resourceVersion
//! they saw; once etcd has compacted past it and kube-apiserver has restarted (a fresh watch
//! cache), the server answers 410 and the store must list again. This test forces exactly that
//! on a private control plane (its own kube-apiserver and etcd, restarted without disturbing the
//! other tests), for a lease followed through its own watch and for leases followed through the
//! namespace's watch, and checks that no lease loses track: the leader keeps every term, the
//! follower sees every lease again, and takes each over the moment it is released.

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, ObjectMeta, PostParams, WatchEvent, WatchParams};
use leader::runtime::{Election, ElectionConfig, LeaseStatus, Runtime};
use tokio::sync::watch;

use crate::support::{Identity, PrivatePlane, Server, control_plane};

const SECOND: Duration = Duration::from_secs(1);

/// Timings under which the leader keeps its terms through a kube-apiserver restart (about 12 s),
/// and under which a follower that polled instead of watching would take a retry period (10 s)
/// to notice a release.
fn timings() -> ElectionConfig {
    ElectionConfig {
        lease_duration: 60 * SECOND,
        renew_deadline: 40 * SECOND,
        retry_period: 10 * SECOND,
    }
}

/// A replica with its own client to the private control plane.
async fn replica(plane: &PrivatePlane, identity: &str) -> Runtime {
    Runtime::builder()
        .client(plane.plane.client(Identity::Admin).await)
        .identity(identity)
        .config(timings())
        .build()
        .await
        .unwrap()
}

/// Campaigns for `election` until the runtime shuts down, leading until each term ends.
fn campaign(election: Election) {
    tokio::spawn(async move {
        while election
            .lead(|leadership| async move { leadership.cancelled().await })
            .await
            .is_ok()
        {}
    });
}

/// Waits until the status of `election` shows what `wanted` accepts.
async fn status_where(
    election: &Election,
    what: &str,
    limit: Duration,
    wanted: impl FnMut(&LeaseStatus) -> bool,
) -> LeaseStatus {
    let mut status: watch::Receiver<LeaseStatus> = election.status();
    let seen = tokio::time::timeout(limit, status.wait_for(wanted))
        .await
        .map(|seen| seen.map(|seen| seen.clone()));
    match seen {
        Ok(Ok(seen)) => seen,
        _ => panic!(
            "{}: no {what} within {limit:?}; status {:?}",
            election.key().name,
            *status.borrow()
        ),
    }
}

/// Compacts etcd's history up to `revision` through its HTTP gateway, as kube-apiserver does
/// every few minutes.
async fn compact_etcd(etcd: &str, revision: &str) {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<hyper::body::Bytes>>();
    let body = serde_json::json!({ "revision": revision, "physical": true }).to_string();
    let request = hyper::Request::post(format!("{etcd}/v3/kv/compaction"))
        .header("content-type", "application/json")
        .body(Full::from(body))
        .expect("a request");
    let response = client.request(request).await.expect("etcd answers");
    let status = response.status();
    let body = response.into_body().collect().await.expect("the body");
    assert!(
        status.is_success(),
        "etcd compaction: {status} {}",
        String::from_utf8_lossy(&body.to_bytes())
    );
}

/// Whether a watch of `leases` from `resource_version` is refused with 410 Gone.
async fn watch_is_gone(leases: &Api<Lease>, resource_version: &str) -> bool {
    match leases
        .watch(&WatchParams::default(), resource_version)
        .await
    {
        Err(kube::Error::Api(status)) => status.code == 410,
        Err(error) => panic!("watching from {resource_version}: {error}"),
        Ok(stream) => {
            let mut stream = stream.boxed();
            match tokio::time::timeout(5 * SECOND, stream.next()).await {
                Ok(Some(Ok(WatchEvent::Error(status)))) => status.code == 410,
                Ok(Some(Err(kube::Error::Api(status)))) => status.code == 410,
                other => panic!("watching from {resource_version}: {other:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_410_gone_a_follower_keeps_track_of_every_lease_and_takes_over_at_once() {
    let private = PrivatePlane::start_beside(&control_plane()).await;
    let plane = &private.plane;
    // One lease alone in its namespace (its own watch) and 20 in another (the namespace watch).
    let alone = plane.namespace("gone-alone").await;
    let crowded = plane.namespace("gone-crowded").await;
    let mut keys = vec![(alone.clone(), "alone".to_owned())];
    keys.extend((0..20).map(|i| (crowded.clone(), format!("lease-{i}"))));

    let leader = replica(&private, "leader").await;
    let follower = replica(&private, "follower").await;
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for (namespace, name) in &keys {
        let election = leader.election_with(namespace, name, timings()).unwrap();
        campaign(election.clone());
        let term = status_where(&election, "leadership", 20 * SECOND, |s| s.is_leader).await;
        ours.push((election, term.fencing_token));
        let election = follower.election_with(namespace, name, timings()).unwrap();
        campaign(election.clone());
        theirs.push(election);
    }
    for election in &theirs {
        let holder = |s: &LeaseStatus| s.holder.as_deref() == Some("leader");
        status_where(election, "the leader seen", 20 * SECOND, holder).await;
    }

    // What the follower's watches have seen is now history: etcd compacts past it.
    let client = plane.client(Identity::Admin).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &crowded);
    let list = leases.list(&ListParams::default()).await.unwrap();
    let seen = list.metadata.resource_version.expect("a list's version");
    let configmaps: Api<ConfigMap> = Api::namespaced(client, &crowded);
    let marker = ConfigMap {
        metadata: ObjectMeta {
            name: Some("after-the-follower-looked".into()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    };
    let marker = configmaps
        .create(&PostParams::default(), &marker)
        .await
        .unwrap();
    let now = marker.metadata.resource_version.expect("a version");
    compact_etcd(plane.info()["etcd"].as_str().expect("etcd's URL"), &now).await;
    // A restart drops every watch; each resumes from the version it saw last, now compacted.
    private.restart(Server::ApiServer).await;
    let leases: Api<Lease> = Api::namespaced(plane.client(Identity::Admin).await, &crowded);
    assert!(
        watch_is_gone(&leases, &seen).await,
        "the server did not answer 410 Gone for a watch from {seen}"
    );

    // The follower's feeds are back (the store listed again) and show the leader everywhere.
    for election in &theirs {
        let back =
            |s: &LeaseStatus| s.watch_error.is_none() && s.holder.as_deref() == Some("leader");
        status_where(election, "the feed back", 60 * SECOND, back).await;
    }
    // The leader kept every term: still leading, with the fencing token it started with.
    for (election, token) in &ours {
        let status = election.status().borrow().clone();
        assert!(status.is_leader, "{}: lost its term", election.key().name);
        assert_eq!(status.fencing_token, *token, "{}", election.key().name);
        assert_eq!(status.last_error, None, "{}", election.key().name);
    }

    // The leader releases everything; the follower learns it from its watches, not by polling
    // (that would take a retry period, 10 s) nor from expiry (60 s).
    let released = Instant::now();
    leader.shutdown().await;
    for election in &theirs {
        status_where(election, "takeover", 5 * SECOND, |s| s.is_leader).await;
    }
    let took = released.elapsed();
    eprintln!(
        "gone: the follower led all {} leases {took:?} after the release",
        theirs.len()
    );
    follower.shutdown().await;
}
