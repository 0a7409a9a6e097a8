//! The health and metrics endpoint over real HTTP, on loopback, with the in-memory store and
//! short real timings (sockets and tokio's paused clock do not mix).
#![cfg(feature = "http")]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use leader_runtime::testing::{Fault, InMemoryLeaseStore};
use leader_runtime::{ElectionConfig, Error, LEASE_RULE, Runtime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout};

const NAMESPACE: &str = "test";
const LEASE: &str = "job";

/// Short timings, so that renews come every half second.
fn fast() -> ElectionConfig {
    ElectionConfig::default()
        .with_lease_duration(Duration::from_secs(3))
        .with_renew_deadline(Duration::from_secs(2))
        .with_retry_period(Duration::from_millis(500))
}

async fn runtime(store: &InMemoryLeaseStore, identity: &str) -> Runtime {
    Runtime::builder()
        .store(store.clone())
        .identity(identity)
        .namespace(NAMESPACE)
        .config(fast())
        .build()
        .await
        .unwrap()
}

async fn serve(runtime: &Runtime) -> SocketAddr {
    let addr = runtime.serve_http(([127, 0, 0, 1], 0)).await.unwrap();
    assert_ne!(addr.port(), 0);
    addr
}

/// Fails the test if `test` takes more than 5 s.
async fn within_5s<T>(test: impl Future<Output = T>) -> T {
    timeout(Duration::from_secs(5), test)
        .await
        .expect("the test took more than 5 s")
}

/// A response: status code, headers (lowercase names) and body.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Sends `request` as it is and reads the answer until the server closes the connection.
async fn send(addr: SocketAddr, request: &str) -> Response {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line[9..12].parse().unwrap();
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(": ").expect("a header");
            (name.to_ascii_lowercase(), value.to_owned())
        })
        .collect();
    Response {
        status,
        headers,
        body: body.to_owned(),
    }
}

async fn get(addr: SocketAddr, path: &str) -> Response {
    send(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\n\r\n"),
    )
    .await
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

/// Starts work on the lease that runs until its token fires or `hold` has passed.
fn lead_for(
    runtime: &Runtime,
    hold: Duration,
) -> tokio::task::JoinHandle<leader_runtime::Result<()>> {
    let election = runtime.election(LEASE).unwrap();
    tokio::spawn(async move {
        election
            .lead(move |leadership| async move {
                tokio::select! {
                    () = leadership.token().cancelled() => {}
                    () = sleep(hold) => {}
                }
            })
            .await
    })
}

#[tokio::test]
async fn readiness_turns_ready_once_every_lease_has_been_observed() {
    within_5s(async {
        let store = InMemoryLeaseStore::new().connection();
        store.set_fault(Some(Fault::Unreachable));
        let runtime = runtime(&store, "a").await;
        let addr = serve(&runtime).await;
        let ready = get(addr, "/readyz").await;
        assert_eq!(
            (ready.status, ready.body.as_str()),
            (200, "ok\n"),
            "no elections yet"
        );

        // The API server is unreachable: the lease's state is unknown.
        runtime.election(LEASE).unwrap();
        let not_ready = get(addr, "/readyz").await;
        assert_eq!(not_ready.status, 503);
        assert_eq!(not_ready.body, "lease `test/job` not observed yet\n");
        let live = get(addr, "/healthz").await;
        assert_eq!(
            (live.status, live.body.as_str()),
            (200, "ok\n"),
            "an unreachable API server does not make the process unhealthy"
        );

        store.set_fault(None);
        let ready = get_until(addr, "/readyz", |response| response.status == 200).await;
        assert_eq!(ready.body, "ok\n");
        assert_eq!(
            ready.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(ready.header("connection"), Some("close"));
        runtime.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn liveness_fails_with_the_rbac_message_while_the_api_server_refuses() {
    within_5s(async {
        let store = InMemoryLeaseStore::new().connection();
        let runtime = runtime(&store, "a").await;
        let addr = serve(&runtime).await;
        assert_eq!(get(addr, "/healthz").await.status, 200);

        store.set_fault(Some(Fault::Forbidden));
        let campaign = lead_for(&runtime, Duration::ZERO);
        let unhealthy = get_until(addr, "/healthz", |response| response.status == 503).await;
        let lines: Vec<&str> = unhealthy.body.lines().collect();
        assert_eq!(lines.len(), 1, "one line per failing election: {lines:?}");
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

        #[cfg(feature = "metrics")]
        {
            let metrics = get(addr, "/metrics").await.body;
            let forbidden = sample(
                &metrics,
                &format!("leader_election_errors_total{{{LABELS},kind=\"forbidden\"}}"),
            );
            assert!(forbidden >= 1.0, "{metrics}");
        }

        // Granted again: the next retry succeeds and the replica is healthy and leads.
        store.set_fault(None);
        get_until(addr, "/healthz", |response| response.status == 200).await;
        campaign.await.unwrap().unwrap();
        assert_eq!(get(addr, "/readyz").await.status, 200);
        runtime.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn unknown_paths_methods_and_garbage_are_refused() {
    within_5s(async {
        let runtime = runtime(&InMemoryLeaseStore::new(), "a").await;
        let addr = serve(&runtime).await;
        let missing = get(addr, "/nothing-here").await;
        assert_eq!(
            (missing.status, missing.body.as_str()),
            (404, "not found\n")
        );
        #[cfg(not(feature = "metrics"))]
        assert_eq!(get(addr, "/metrics").await.status, 404);

        let post = send(addr, "POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
        assert_eq!(post.status, 405);
        assert_eq!(post.header("allow"), Some("GET, HEAD"));

        let head = send(addr, "HEAD /healthz HTTP/1.1\r\n\r\n").await;
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-length"), Some("3"));
        assert_eq!(head.body, "", "HEAD gets no body");

        let query = get(addr, "/healthz?verbose").await;
        assert_eq!(query.status, 200, "the query string is ignored");

        assert_eq!(send(addr, "hello\r\n\r\n").await.status, 400);
        runtime.shutdown().await;
    })
    .await;
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
        let addr = serve(&runtime).await;
        assert_eq!(get(addr, "/healthz").await.status, 200);
        runtime.shutdown().await;
        while TcpStream::connect(addr).await.is_ok() {
            sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// The `namespace` and `lease` labels of the test lease.
#[cfg(feature = "metrics")]
const LABELS: &str = "namespace=\"test\",lease=\"job\"";

/// The value of the sample `series` (name and labels, exactly as rendered) in `metrics`.
#[cfg(feature = "metrics")]
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample `{series}` in\n{metrics}"))
        .parse()
        .unwrap()
}

#[cfg(feature = "metrics")]
#[tokio::test]
async fn metrics_show_terms_renews_and_losses() {
    within_5s(async {
        let store = InMemoryLeaseStore::new();
        let runtime = runtime(&store, "a").await;
        let addr = serve(&runtime).await;
        let count = format!("leader_election_renew_duration_seconds_count{{{LABELS}}}");

        // A term long enough for renews (every 500 ms).
        let campaign = lead_for(&runtime, Duration::from_secs(10));
        let scraped = get_until(addr, "/metrics", |response| {
            response.body.contains(&format!("{count} ")) && sample(&response.body, &count) >= 1.0
        })
        .await;
        assert_eq!(
            scraped.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        let metrics = scraped.body;
        assert_eq!(
            sample(&metrics, "leader_election_master_status{name=\"job\"}"),
            1.0
        );
        assert_eq!(
            sample(
                &metrics,
                &format!("leader_election_is_leader{{{LABELS},identity=\"a\"}}")
            ),
            1.0
        );
        assert_eq!(
            sample(
                &metrics,
                &format!("leader_election_transitions_total{{{LABELS}}}")
            ),
            1.0
        );
        let renews = sample(&metrics, &count);
        assert_eq!(
            sample(
                &metrics,
                &format!("leader_election_renew_duration_seconds_bucket{{{LABELS},le=\"+Inf\"}}")
            ),
            renews
        );
        assert!(
            sample(
                &metrics,
                &format!("leader_election_renew_duration_seconds_sum{{{LABELS}}}")
            ) > 0.0
        );
        assert!(metrics.contains("# TYPE leader_election_renew_duration_seconds histogram\n"));

        // Deleting the lease ends the term: a loss, by reason.
        store.delete(&leader_runtime::store::LeaseKey::new(NAMESPACE, LEASE));
        campaign.await.unwrap().unwrap();
        let metrics = get(addr, "/metrics").await.body;
        assert_eq!(
            sample(&metrics, "leader_election_master_status{name=\"job\"}"),
            0.0
        );
        assert_eq!(
            sample(
                &metrics,
                &format!("leader_election_lost_total{{{LABELS},reason=\"deleted\"}}")
            ),
            1.0
        );
        assert_eq!(
            sample(
                &metrics,
                &format!("leader_election_lost_total{{{LABELS},reason=\"renew_deadline\"}}")
            ),
            0.0
        );

        // A second term, ended by stepping down: not a loss.
        lead_for(&runtime, Duration::ZERO).await.unwrap().unwrap();
        let metrics = get(addr, "/metrics").await.body;
        assert_eq!(
            sample(
                &metrics,
                &format!("leader_election_transitions_total{{{LABELS}}}")
            ),
            2.0
        );
        let lost: f64 = ["renew_deadline", "other_holder", "deleted"]
            .iter()
            .map(|reason| {
                sample(
                    &metrics,
                    &format!("leader_election_lost_total{{{LABELS},reason=\"{reason}\"}}"),
                )
            })
            .sum();
        assert_eq!(lost, 1.0);
        runtime.shutdown().await;
    })
    .await;
}

#[cfg(feature = "metrics")]
#[tokio::test]
async fn metrics_escape_odd_identities() {
    within_5s(async {
        let runtime = runtime(&InMemoryLeaseStore::new(), "quote\" backslash\\ newline\nend").await;
        let addr = serve(&runtime).await;
        runtime.election(LEASE).unwrap();
        let metrics = get(addr, "/metrics").await.body;
        assert!(
            metrics.contains(&format!(
                "leader_election_is_leader{{{LABELS},identity=\"quote\\\" backslash\\\\ newline\\nend\"}} 0\n"
            )),
            "{metrics}"
        );
        // Every line is a comment or one sample: the newline did not split a series.
        for line in metrics.lines().filter(|line| !line.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            value.parse::<f64>().unwrap_or_else(|_| panic!("bad line `{line}`"));
        }
        runtime.shutdown().await;
    })
    .await;
}
