//! The routes over real HTTP on loopback, with a real HTTP client (hyper's), on every server
//! the enabled features offer: the standalone server (feature `http`) and the axum and actix-web
//! adapters (features `axum`, `actix-web`), all answering from the same `Routes`. Then the
//! standalone server's limits: slow and oversized requests, malformed ones, many connections at
//! once. The in-memory store with short real timings (sockets and tokio's paused clock do not
//! mix).
#![cfg(any(feature = "http", feature = "axum", feature = "actix-web"))]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use leader_runtime::testing::{Fault, InMemoryLeaseStore};
use leader_runtime::{LEASE_RULE, Routes, Runtime};
use support::{LEASE, lead_for, runtime, within_5s};
use tokio::time::sleep;

/// A server of the routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    #[cfg(feature = "http")]
    Standalone,
    #[cfg(feature = "axum")]
    Axum,
    #[cfg(feature = "actix-web")]
    ActixWeb,
}

/// Every server the enabled features offer.
const SERVERS: &[Server] = &[
    #[cfg(feature = "http")]
    Server::Standalone,
    #[cfg(feature = "axum")]
    Server::Axum,
    #[cfg(feature = "actix-web")]
    Server::ActixWeb,
];

impl Server {
    /// Serves `routes` on a free loopback port; the adapters next to an application route `/`.
    async fn start(self, routes: Routes) -> SocketAddr {
        match self {
            #[cfg(feature = "http")]
            Server::Standalone => leader_runtime::HttpServer::new(routes)
                .serve(([127, 0, 0, 1], 0))
                .await
                .unwrap(),
            #[cfg(feature = "axum")]
            Server::Axum => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let app = axum::Router::new()
                    .route("/", axum::routing::get(|| async { "app" }))
                    .merge(leader_runtime::axum::router(routes));
                tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
                addr
            }
            #[cfg(feature = "actix-web")]
            Server::ActixWeb => {
                use actix_web::{App, web};
                let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                let server = actix_web::HttpServer::new(move || {
                    App::new()
                        .route("/", web::get().to(|| async { "app" }))
                        .service(leader_runtime::actix_web::service(routes.clone()))
                })
                .workers(1)
                .disable_signals()
                .listen(listener)
                .unwrap()
                .run();
                tokio::spawn(server);
                addr
            }
        }
    }

    /// Serves `runtime`'s default routes on every server.
    async fn start_all(runtime: &Runtime) -> Vec<(Server, SocketAddr)> {
        let mut started = Vec::new();
        for server in SERVERS {
            started.push((*server, server.start(Routes::new(runtime)).await));
        }
        started
    }
}

/// A response: status code, headers and body.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: hyper::HeaderMap,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().unwrap())
    }
}

/// Sends a request with hyper's client and reads the whole answer.
async fn request(addr: SocketAddr, method: &str, path: &str, accept: Option<&str>) -> Response {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = client
        .request(request.body(Empty::new()).unwrap())
        .await
        .unwrap_or_else(|error| panic!("{method} {path} on {addr}: {error:?}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Response {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

async fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, None).await
}

/// GETs `path` until the answer satisfies `check`, and returns that answer.
async fn get_until(addr: SocketAddr, path: &str, check: impl Fn(&Response) -> bool) -> Response {
    loop {
        let response = get(addr, path).await;
        if check(&response) {
            return response;
        }
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn readiness_turns_ready_once_every_lease_has_been_observed() {
    within_5s(async {
        let store = InMemoryLeaseStore::new().connection();
        store.set_fault(Some(Fault::Unreachable));
        let runtime = runtime(&store, "a").await;
        let servers = Server::start_all(&runtime).await;
        for &(server, addr) in &servers {
            let ready = get(addr, "/readyz").await;
            assert_eq!(
                (ready.status, ready.body.as_str()),
                (200, "ok\n"),
                "{server:?}: no elections yet"
            );
        }

        // The API server is unreachable: the lease's state is unknown.
        runtime.election(LEASE).unwrap();
        for &(server, addr) in &servers {
            let not_ready = get(addr, "/readyz").await;
            assert_eq!(not_ready.status, 503, "{server:?}");
            assert_eq!(not_ready.body, "lease `test/job` not observed yet\n");
            let live = get(addr, "/healthz").await;
            assert_eq!(
                (live.status, live.body.as_str()),
                (200, "ok\n"),
                "{server:?}: an unreachable API server does not make the process unhealthy"
            );
        }

        store.set_fault(None);
        for &(server, addr) in &servers {
            let ready = get_until(addr, "/readyz", |response| response.status == 200).await;
            assert_eq!(ready.body, "ok\n");
            assert_eq!(
                ready.header("content-type"),
                Some("text/plain; charset=utf-8"),
                "{server:?}"
            );
            assert_eq!(
                ready.header("cache-control"),
                Some("no-store"),
                "{server:?}"
            );
            #[cfg(feature = "http")]
            if server == Server::Standalone {
                assert_eq!(ready.header("connection"), Some("close"));
            }
        }
        runtime.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn liveness_fails_with_the_rbac_message_while_the_api_server_refuses() {
    within_5s(async {
        let store = InMemoryLeaseStore::new().connection();
        let runtime = runtime(&store, "a").await;
        let servers = Server::start_all(&runtime).await;
        for &(_, addr) in &servers {
            assert_eq!(get(addr, "/healthz").await.status, 200);
        }

        store.set_fault(Some(Fault::Forbidden));
        let campaign = lead_for(&runtime, Duration::ZERO);
        for &(server, addr) in &servers {
            let unhealthy = get_until(addr, "/healthz", |response| response.status == 503).await;
            let lines: Vec<&str> = unhealthy.body.lines().collect();
            assert_eq!(
                lines.len(),
                1,
                "{server:?}: one line per failing election: {lines:?}"
            );
            assert!(
                lines[0].starts_with(
                    "election for lease `test/job` is unhealthy: forbidden: `in-memory` may not "
                ),
                "{}",
                lines[0]
            );
            assert!(lines[0].contains(LEASE_RULE), "{}", lines[0]);
            let not_ready = get(addr, "/readyz").await;
            assert_eq!(not_ready.status, 503);
            assert!(not_ready.body.contains("forbidden"), "{}", not_ready.body);
        }

        // Granted again: the next retry succeeds and the replica is healthy and leads.
        store.set_fault(None);
        for &(_, addr) in &servers {
            get_until(addr, "/healthz", |response| response.status == 200).await;
        }
        campaign.await.unwrap().unwrap();
        for &(_, addr) in &servers {
            assert_eq!(get(addr, "/readyz").await.status, 200);
        }
        runtime.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn unknown_paths_and_methods_are_refused_and_head_gets_no_body() {
    within_5s(async {
        let runtime = runtime(&InMemoryLeaseStore::new(), "a").await;
        for (server, addr) in Server::start_all(&runtime).await {
            let missing = get(addr, "/nothing-here").await;
            assert_eq!(missing.status, 404, "{server:?}");
            #[cfg(not(feature = "metrics"))]
            assert_eq!(get(addr, "/metrics").await.status, 404);
            #[cfg(feature = "http")]
            if server == Server::Standalone {
                assert_eq!(missing.body, "not found\n");
                continue;
            }
            // The adapters route their paths only; the application answers the others.
            assert_eq!(get(addr, "/").await.body, "app", "{server:?}");

            for method in ["POST", "DELETE", "BREW"] {
                let refused = request(addr, method, "/healthz", None).await;
                assert_eq!(refused.status, 405, "{server:?} {method}");
                assert_eq!(refused.header("allow"), Some("GET, HEAD"), "{server:?}");
                assert_eq!(refused.body, "method not allowed\n", "{server:?}");
            }

            let head = request(addr, "HEAD", "/healthz", None).await;
            assert_eq!(head.status, 200, "{server:?}");
            assert_eq!(head.header("content-length"), Some("3"), "{server:?}");
            assert_eq!(head.body, "", "{server:?}: HEAD gets no body");

            let query = get(addr, "/healthz?verbose").await;
            assert_eq!(query.status, 200, "{server:?}: the query string is ignored");
        }
        runtime.shutdown().await;
    })
    .await;
}

#[cfg(feature = "metrics")]
mod metrics {
    use super::support::NAMESPACE;
    use super::support::exposition::{Exposition, Format, LABELS, app_registry, with};
    use super::*;

    /// `/metrics` in `format`, checked for its content type and parsed.
    async fn scrape(addr: SocketAddr, format: Format) -> Exposition {
        let response = request(addr, "GET", "/metrics", Some(format.accept())).await;
        assert_eq!(response.status, 200, "{}", response.body);
        assert_eq!(response.header("content-type"), Some(format.content_type()));
        Exposition::parse(format, &response.body)
    }

    #[tokio::test]
    async fn metrics_show_terms_renews_and_losses_in_the_format_asked_for() {
        within_5s(async {
            let store = InMemoryLeaseStore::new();
            let runtime = runtime(&store, "a").await;
            let servers = Server::start_all(&runtime).await;
            let count = "leader_election_renew_duration_seconds_count";

            // A term long enough for renews (every 500 ms).
            let campaign = lead_for(&runtime, Duration::from_secs(10));
            let election = runtime.election(LEASE).unwrap();
            while election.metrics().renew_duration.count() < 1 {
                sleep(Duration::from_millis(20)).await;
            }
            for &(server, addr) in &servers {
                // curl and other clients that do not ask for OpenMetrics get 0.0.4 text.
                let plain = get(addr, "/metrics").await;
                assert_eq!(
                    plain.header("content-type"),
                    Some(Format::Text.content_type()),
                    "{server:?}"
                );
                for format in Format::ALL {
                    let metrics = scrape(addr, format).await;
                    let sample = |name: &str, labels: &[(&str, &str)]| metrics.sample(name, labels);
                    assert_eq!(
                        sample("leader_election_master_status", &[("name", "job")]),
                        1.0
                    );
                    let identity = with(("identity", "a"));
                    assert_eq!(sample("leader_election_is_leader", &identity), 1.0);
                    assert_eq!(sample("leader_election_transitions_total", &LABELS), 1.0);
                    assert!(sample(count, &LABELS) >= 1.0, "{server:?} {format:?}");
                    let sum = "leader_election_renew_duration_seconds_sum";
                    assert!(sample(sum, &LABELS) > 0.0);
                }
            }

            // Deleting the lease ends the term: a loss, by reason.
            store.delete(&leader_runtime::store::LeaseKey::new(NAMESPACE, LEASE));
            campaign.await.unwrap().unwrap();
            for &(_, addr) in &servers {
                let metrics = scrape(addr, Format::OpenMetrics).await;
                let master = [("name", "job")];
                assert_eq!(
                    metrics.sample("leader_election_master_status", &master),
                    0.0
                );
                let deleted = with(("reason", "deleted"));
                assert_eq!(metrics.sample("leader_election_lost_total", &deleted), 1.0);
                let deadline = with(("reason", "renew_deadline"));
                assert_eq!(metrics.sample("leader_election_lost_total", &deadline), 0.0);
            }

            // A second term, ended by stepping down: not a loss.
            lead_for(&runtime, Duration::ZERO).await.unwrap().unwrap();
            for &(_, addr) in &servers {
                let metrics = scrape(addr, Format::Text).await;
                let terms = metrics.sample("leader_election_transitions_total", &LABELS);
                assert_eq!(terms, 2.0);
                let lost: f64 = ["renew_deadline", "other_holder", "deleted"]
                    .iter()
                    .map(|reason| {
                        let labels = with(("reason", reason));
                        metrics.sample("leader_election_lost_total", &labels)
                    })
                    .sum();
                assert_eq!(lost, 1.0);
            }
            runtime.shutdown().await;
        })
        .await;
    }

    #[tokio::test]
    async fn every_server_serves_the_applications_registry() {
        within_5s(async {
            let runtime = runtime(&InMemoryLeaseStore::new(), "a").await;
            let mut registry = app_registry(7);
            runtime.register_metrics(&mut registry);
            let routes = Routes::new(&runtime).registry(registry);
            runtime.election(LEASE).unwrap();
            for server in SERVERS {
                let addr = server.start(routes.clone()).await;
                let metrics = scrape(addr, Format::OpenMetrics).await;
                assert_eq!(metrics.sample("requests_total", &[]), 7.0, "{server:?}");
                let master = [("name", LEASE)];
                assert_eq!(
                    metrics.sample("leader_election_master_status", &master),
                    0.0
                );
            }
            runtime.shutdown().await;
        })
        .await;
    }
}

/// The standalone server's own behaviour and limits.
#[cfg(feature = "http")]
mod standalone {
    use std::time::Instant;

    use leader_runtime::{Error, HEADER_READ_TIMEOUT, HttpServer, MAX_HEAD};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::time::timeout;

    use super::support::within;
    use super::*;

    /// Sends `bytes` as they are on a new connection and returns everything the server sends back
    /// until it closes the connection.
    async fn send_raw(addr: SocketAddr, bytes: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        String::from_utf8_lossy(&raw).into_owned()
    }

    /// The status code of a raw answer.
    fn status_of(raw: &str) -> u16 {
        assert!(raw.starts_with("HTTP/1.1 "), "not an HTTP answer: {raw:?}");
        raw[9..12].parse().unwrap()
    }

    #[tokio::test]
    async fn a_taken_port_is_a_listen_error() {
        within_5s(async {
            let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = taken.local_addr().unwrap();
            let runtime = runtime(&InMemoryLeaseStore::new(), "a").await;
            let error = runtime.serve_http(addr).await.unwrap_err();
            assert!(
                matches!(&error, Error::Listen { addr: at, .. } if *at == addr),
                "{error:?}"
            );
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("cannot serve the health endpoint on {addr}: ")),
                "{error}"
            );
            runtime.shutdown().await;
        })
        .await;
    }

    #[tokio::test]
    async fn the_server_stops_when_the_runtime_shuts_down() {
        within_5s(async {
            let runtime = runtime(&InMemoryLeaseStore::new(), "a").await;
            let addr = runtime.serve_http(([127, 0, 0, 1], 0)).await.unwrap();
            assert_eq!(get(addr, "/healthz").await.status, 200);
            runtime.shutdown().await;
            while TcpStream::connect(addr).await.is_ok() {
                sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }

    #[tokio::test]
    async fn a_malformed_request_gets_400() {
        within_5s(async {
            let runtime = runtime(&InMemoryLeaseStore::new(), "a").await;
            let addr = runtime.serve_http(([127, 0, 0, 1], 0)).await.unwrap();
            for garbage in [
                &b"hello\r\n\r\n"[..],
                b"GET /healthz\r\n\r\n",
                b"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n",
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
            ] {
                let raw = send_raw(addr, garbage).await;
                assert_eq!(status_of(&raw), 400, "{garbage:?}: {raw}");
            }
            runtime.shutdown().await;
        })
        .await;
    }

    #[tokio::test]
    async fn a_request_head_over_8_kib_gets_431_and_one_under_it_an_answer() {
        within_5s(async {
            let runtime = runtime(&InMemoryLeaseStore::new(), "a").await;
            let addr = runtime.serve_http(([127, 0, 0, 1], 0)).await.unwrap();
            let head = |filler: usize| {
                format!(
                    "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Filler: {}\r\n\r\n",
                    "a".repeat(filler)
                )
            };
            let fits = head(7 * 1024);
            assert!(fits.len() < MAX_HEAD);
            assert_eq!(status_of(&send_raw(addr, fits.as_bytes()).await), 200);
            let too_long = head(MAX_HEAD);
            let raw = send_raw(addr, too_long.as_bytes()).await;
            assert_eq!(status_of(&raw), 431, "{raw}");
            runtime.shutdown().await;
        })
        .await;
    }

    /// Opens a connection and sends a request head that never ends.
    async fn slow_client(addr: SocketAddr) -> TcpStream {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
            .await
            .unwrap();
        stream
    }

    /// Waits for the server to close `stream`, and returns what it sent before.
    async fn closed_by_server(mut stream: TcpStream) -> Vec<u8> {
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        raw
    }

    #[tokio::test]
    async fn a_slow_client_is_disconnected_after_the_header_timeout_while_probes_are_answered() {
        within(HEADER_READ_TIMEOUT + Duration::from_secs(5), async {
            let runtime = runtime(&InMemoryLeaseStore::new(), "a").await;
            let addr = runtime.serve_http(([127, 0, 0, 1], 0)).await.unwrap();
            let started = Instant::now();
            let slow = slow_client(addr).await;
            assert_eq!(
                get(addr, "/healthz").await.status,
                200,
                "answered meanwhile"
            );
            let raw = closed_by_server(slow).await;
            let after = started.elapsed();
            // hyper closes the connection without an answer on its header read timeout.
            assert_eq!(
                String::from_utf8_lossy(&raw),
                "",
                "no answer to a slow client"
            );
            assert!(
                after >= HEADER_READ_TIMEOUT - Duration::from_millis(100)
                    && after < HEADER_READ_TIMEOUT + Duration::from_secs(2),
                "closed after {after:?}"
            );
            runtime.shutdown().await;
        })
        .await;
    }

    #[tokio::test]
    async fn probes_are_answered_while_500_connections_hang() {
        within(HEADER_READ_TIMEOUT + Duration::from_secs(10), async {
            let runtime = runtime(&InMemoryLeaseStore::new(), "a").await;
            let addr = runtime.serve_http(([127, 0, 0, 1], 0)).await.unwrap();
            let mut hanging = Vec::new();
            for _ in 0..500 {
                hanging.push(slow_client(addr).await);
            }
            for _ in 0..10 {
                let started = Instant::now();
                assert_eq!(get(addr, "/healthz").await.status, 200);
                assert_eq!(get(addr, "/readyz").await.status, 200);
                assert!(
                    started.elapsed() < Duration::from_secs(1),
                    "two probes took {:?}",
                    started.elapsed()
                );
            }
            // Each hanging connection is closed by the server after its header timeout.
            for stream in hanging {
                assert!(closed_by_server(stream).await.is_empty());
            }
            assert_eq!(get(addr, "/healthz").await.status, 200);
            runtime.shutdown().await;
        })
        .await;
    }

    #[tokio::test]
    async fn connections_over_the_cap_wait_until_a_slot_frees() {
        within_5s(async {
            let runtime = runtime(&InMemoryLeaseStore::new(), "a").await;
            let addr = HttpServer::new(&runtime)
                .max_connections(4)
                .serve(([127, 0, 0, 1], 0))
                .await
                .unwrap();
            let mut hanging = Vec::new();
            for _ in 0..4 {
                hanging.push(slow_client(addr).await);
            }
            let probe = tokio::spawn(get(addr, "/healthz"));
            sleep(Duration::from_millis(500)).await;
            assert!(!probe.is_finished(), "a fifth connection was served");
            // The client gives up on one: its slot goes to the waiting probe.
            drop(hanging.pop());
            let answered = timeout(Duration::from_secs(1), probe).await;
            let response = answered.expect("the probe got the freed slot").unwrap();
            assert_eq!(response.status, 200);
            runtime.shutdown().await;
        })
        .await;
    }
}
