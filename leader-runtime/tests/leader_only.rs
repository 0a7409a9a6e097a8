//! The axum guard for leader-only requests ([`LeaderOnly`]) over real HTTP on loopback, with a
//! real HTTP client (hyper's): two replicas over one in-memory store, each an axum server whose
//! `/redirect`, `/refuse` and `/forward` routes are guarded in the three ways a follower can
//! answer. The in-memory store with short real timings (sockets and tokio's paused clock do not
//! mix).
#![cfg(feature = "axum")]

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use axum::{Extension, Router};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use leader_runtime::axum::{
    FORWARDED_BY_HEADER, LEADER_ADDRESS_HEADER, LEADER_IDENTITY_HEADER, LeaderOnly, OnFollower,
    leader_only,
};
use leader_runtime::testing::InMemoryLeaseStore;
use leader_runtime::{Leadership, Route, Runtime};
use support::{LEASE, NAMESPACE, fast, within_5s};
use tokio::time::{Instant, sleep};

/// What a replica's handlers applied: (body, fencing token).
type Applied = Arc<Mutex<Vec<(String, i32)>>>;

/// One replica: its runtime, campaigning for [`LEASE`], and its server.
struct Replica {
    runtime: Runtime,
    address: SocketAddr,
    applied: Applied,
}

/// Handles a write as leader: answers who applied it with which fencing token, after `delay`
/// (from the `delay-ms` header) so that a test can keep a write under way.
async fn write(
    Extension(leadership): Extension<Leadership>,
    Extension(applied): Extension<Applied>,
    headers: http::HeaderMap,
    body: String,
) -> String {
    let delay = headers
        .get("delay-ms")
        .and_then(|value| value.to_str().ok()?.parse().ok())
        .unwrap_or(0);
    sleep(Duration::from_millis(delay)).await;
    let token = leadership.fencing_token();
    applied.lock().unwrap().push((body.clone(), token));
    format!(
        "{} applied {body} with fencing token {token}",
        leadership.identity()
    )
}

async fn replica(store: &InMemoryLeaseStore, identity: &str) -> Replica {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let runtime = Runtime::builder()
        .store(store.connection())
        .identity(identity)
        .namespace(NAMESPACE)
        .config(fast())
        .address(address.to_string())
        .build()
        .await
        .unwrap();
    let election = runtime.election(LEASE).unwrap();
    let applied = Arc::new(Mutex::new(Vec::new()));
    let guarded = |on_follower| {
        post(write).route_layer(axum::middleware::from_fn_with_state(
            LeaderOnly::new(&election, on_follower),
            leader_only,
        ))
    };
    let app = Router::new()
        .route("/redirect", guarded(OnFollower::Redirect))
        .route("/refuse", guarded(OnFollower::Refuse))
        .route("/forward", guarded(OnFollower::Forward))
        .layer(Extension(Arc::clone(&applied)));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let campaign = election.clone();
    tokio::spawn(async move {
        loop {
            let term = campaign.lead(|leadership| leadership.cancelled()).await;
            if term.is_err() {
                return;
            }
        }
    });
    Replica {
        runtime,
        address,
        applied,
    }
}

/// A response's status, headers and body.
struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: impl http::header::AsHeaderName) -> &str {
        self.headers
            .get(name)
            .map_or("", |value| value.to_str().unwrap())
    }
}

async fn post_to(address: SocketAddr, path: &str, body: &str, headers: &[(&str, &str)]) -> Answer {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = http::Request::post(format!("http://{address}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

async fn wait_until_leading(replica: &Replica) {
    let election = replica.runtime.election(LEASE).unwrap();
    while !matches!(election.route(), Route::Here(_)) {
        sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `replica` sees `leader` lead, with its address.
async fn wait_until_seen(replica: &Replica, leader: &Replica) {
    let election = replica.runtime.election(LEASE).unwrap();
    let address = leader.address.to_string();
    while !matches!(election.route(), Route::Leader { address: ref seen, .. } if *seen == address) {
        sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_handles_writes_and_a_follower_redirects_refuses_or_forwards() {
    let store = InMemoryLeaseStore::new();
    let a = replica(&store, "a").await;
    within_5s(wait_until_leading(&a)).await;
    let b = replica(&store, "b").await;
    within_5s(wait_until_seen(&b, &a)).await;

    let here = post_to(a.address, "/redirect", "w1", &[]).await;
    assert_eq!(
        (here.status, here.body.as_str()),
        (200, "a applied w1 with fencing token 0")
    );

    let redirected = post_to(b.address, "/redirect?id=2", "w2", &[]).await;
    assert_eq!(redirected.status, 307, "{}", redirected.body);
    let location = format!("http://{}/redirect?id=2", a.address);
    assert_eq!(redirected.header(http::header::LOCATION), location);
    assert_eq!(redirected.header(LEADER_IDENTITY_HEADER), "a");

    let refused = post_to(b.address, "/refuse", "w3", &[]).await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.header(http::header::RETRY_AFTER), "1");
    assert_eq!(refused.header(LEADER_ADDRESS_HEADER), a.address.to_string());
    assert!(
        refused.body.contains("send this request to a at"),
        "{}",
        refused.body
    );

    let forwarded = post_to(b.address, "/forward", "w4", &[]).await;
    assert_eq!(
        (forwarded.status, forwarded.body.as_str()),
        (200, "a applied w4 with fencing token 0")
    );
    // A forwarded request is never forwarded again: a replica that is sent one as leader and
    // does not lead says so.
    let looped = post_to(b.address, "/forward", "w5", &[(FORWARDED_BY_HEADER, "c")]).await;
    assert_eq!(looped.status, 503, "{}", looped.body);

    assert!(
        b.applied.lock().unwrap().is_empty(),
        "the follower applied nothing"
    );
    let applied = a.applied.lock().unwrap().clone();
    assert_eq!(applied, [("w1".into(), 0), ("w4".into(), 0)]);
}

/// The end of a term waits for a write under way on the leader: the next replica leads only
/// after the handler returned, and then answers with a higher fencing token; meanwhile the
/// follower says a handover is going on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_under_way_holds_the_release_and_the_next_leader_has_a_higher_token() {
    let store = InMemoryLeaseStore::new();
    let a = replica(&store, "a").await;
    within_5s(wait_until_leading(&a)).await;
    let b = replica(&store, "b").await;
    within_5s(wait_until_seen(&b, &a)).await;

    let slow = tokio::spawn(post_to(
        a.address,
        "/refuse",
        "slow",
        &[("delay-ms", "400")],
    ));
    sleep(Duration::from_millis(100)).await;
    let stopping = Instant::now();
    let shutdown = {
        let runtime = a.runtime.clone();
        tokio::spawn(async move { runtime.shutdown().await })
    };
    // The term is over at once (no new request goes through on `a`), but the lease is held
    // until the slow write is done.
    sleep(Duration::from_millis(50)).await;
    let during = post_to(b.address, "/refuse", "during", &[]).await;
    assert_eq!(during.status, 503, "{}", during.body);
    within_5s(wait_until_leading(&b)).await;
    let led_after = stopping.elapsed();
    let slow = slow.await.unwrap();
    assert_eq!(
        (slow.status, slow.body.as_str()),
        (200, "a applied slow with fencing token 0")
    );
    assert!(
        led_after >= Duration::from_millis(250),
        "b led {led_after:?} after the stop"
    );
    shutdown.await.unwrap();

    let next = post_to(b.address, "/refuse", "next", &[]).await;
    assert_eq!(
        (next.status, next.body.as_str()),
        (200, "b applied next with fencing token 1")
    );
    b.runtime.shutdown().await;
}

/// Nobody leads: a replica that does not campaign and sees no holder answers 503 with
/// `Retry-After`, whichever way it was told to answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_leader_every_follower_answer_is_503_with_retry_after() {
    let store = InMemoryLeaseStore::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let runtime = support::runtime(&store, "lonely").await;
    let election = runtime.election(LEASE).unwrap();
    let app = Router::new().route(
        "/",
        post(|| async { "applied" }).route_layer(axum::middleware::from_fn_with_state(
            LeaderOnly::new(&election, OnFollower::Redirect)
                .retry_after(Duration::from_millis(2500)),
            leader_only,
        )),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let answer = post_to(address, "/", "w", &[]).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.header(http::header::RETRY_AFTER), "3");
    assert!(answer.body.contains("nobody leads"), "{}", answer.body);
    runtime.shutdown().await;
}

/// A handler that finds its term over after the guard let the request in answers as the guard
/// does during a handover: `503`, `Retry-After`, nothing applied.
#[tokio::test]
async fn a_term_ended_under_a_handler_is_answered_as_a_handover() {
    let store = InMemoryLeaseStore::new();
    let runtime = support::runtime(&store, "late").await;
    let election = runtime.election(LEASE).unwrap();
    let guard =
        LeaderOnly::new(&election, OnFollower::Refuse).retry_after(Duration::from_millis(2500));
    let answer = guard.term_ended();
    assert_eq!(answer.status(), 503);
    assert_eq!(answer.headers()[http::header::RETRY_AFTER], "3");
    let body = axum::body::to_bytes(answer.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(body.contains("stopped leading"), "{body}");
    assert!(body.contains("retry in 3 s"), "{body}");
    runtime.shutdown().await;
}

/// A holder that published this replica's own address is an earlier process of it (a container
/// restarted in its pod keeps the pod's IP): this replica does not send requests to itself, it
/// says a handover is going on; another replica sends them there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_does_not_redirect_to_its_own_address() {
    let store = InMemoryLeaseStore::new();
    let address = "10.1.2.3:8080";
    let key = leader_runtime::store::LeaseKey::new(NAMESPACE, LEASE);
    let annotation =
        format!(r#"{{"holderIdentity":"web-1_old","leaseTransitions":3,"address":"{address}"}}"#);
    let mut lease = k8s_openapi::api::coordination::v1::Lease::default();
    lease.metadata.annotations = Some(
        [(
            leader_runtime::HOLDER_ADDRESS_ANNOTATION.to_owned(),
            annotation,
        )]
        .into(),
    );
    lease.spec = Some(k8s_openapi::api::coordination::v1::LeaseSpec {
        holder_identity: Some("web-1_old".into()),
        lease_transitions: Some(3),
        lease_duration_seconds: Some(3),
        ..Default::default()
    });
    store.put(&key, lease);
    let replica = |identity: &'static str, address: &'static str| {
        Runtime::builder()
            .store(store.connection())
            .identity(identity)
            .namespace(NAMESPACE)
            .config(fast())
            .address(address)
            .build()
    };
    let restarted = replica("web-1_new", address).await.unwrap();
    let other = replica("web-2", "10.1.2.4:8080").await.unwrap();
    let (restarted, other) = (
        restarted.election(LEASE).unwrap(),
        other.election(LEASE).unwrap(),
    );
    within_5s(async {
        while restarted.leader().is_none() || other.leader().is_none() {
            sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        matches!(restarted.route(), Route::Handover(Some(ref leader)) if leader.identity == "web-1_old"),
        "{:?}",
        restarted.route()
    );
    assert!(
        matches!(other.route(), Route::Leader { ref address, .. } if address == "10.1.2.3:8080"),
        "{:?}",
        other.route()
    );
}
