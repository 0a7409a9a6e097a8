//! A small HTTP endpoint for probes and scrapes (feature `http`): liveness and readiness from the
//! elections' status, and with feature `metrics` their counters for Prometheus.
//!
//! Plain HTTP/1.1 on tokio's `TcpListener`, one request per connection: enough for the kubelet's
//! probes and a Prometheus scrape, and no dependency beyond tokio.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use crate::{Election, Error, Result, Runtime};

/// How long past the lease duration a leader may go without renewing before `/healthz` fails:
/// 20 s, as Kubernetes' own components give client-go's `NewLeaderHealthzAdaptor`.
pub const DEFAULT_HEALTH_TOLERANCE: Duration = Duration::from_secs(20);

/// A request that has not arrived in full by then is answered with 408 and closed.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Requests with a longer head than this are refused: probes and scrapes send a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;

/// The health (and with feature `metrics`, metrics) endpoint of a [`Runtime`]:
///
/// | route | answer |
/// | --- | --- |
/// | `GET /healthz` | liveness: `200 ok`, or `503` with one line per failed [`Election::health_check`](crate::Election::health_check) (a stuck leader, or RBAC refusing the runtime) |
/// | `GET /readyz` | readiness: `200 ok` once every election has seen its lease (or leads it) and none is refused by RBAC; `503` with the reasons before |
/// | `GET /metrics` | with feature `metrics`: `metrics::render` of every election |
///
/// Other paths get `404`, other methods `405`. Elections created after the server started are
/// included. The server stops accepting connections when the runtime starts shutting down.
///
/// ```
/// use std::time::Duration;
/// use leader_runtime::{HttpServer, Runtime, testing::InMemoryLeaseStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> leader_runtime::Result<()> {
/// let runtime = Runtime::builder().store(InMemoryLeaseStore::new()).build().await?;
/// // In a pod: `runtime.serve_http(([0, 0, 0, 0], 8080)).await?`, with the defaults.
/// let addr = HttpServer::new(&runtime)
///     .tolerance(Duration::from_secs(30))
///     .serve(([127, 0, 0, 1], 0))
///     .await?;
/// assert_ne!(addr.port(), 0);
/// runtime.shutdown().await; // stops the server too
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use]
pub struct HttpServer {
    runtime: Runtime,
    tolerance: Duration,
}

impl HttpServer {
    /// A server for `runtime`'s elections, with [`DEFAULT_HEALTH_TOLERANCE`].
    pub fn new(runtime: &Runtime) -> Self {
        HttpServer {
            runtime: runtime.clone(),
            tolerance: DEFAULT_HEALTH_TOLERANCE,
        }
    }

    /// The tolerance `/healthz` passes to [`Election::health_check`](crate::Election::health_check):
    /// how long past the lease duration a replica that believes it leads may go without renewing
    /// before it counts as stuck (client-go's `maxTolerableExpiredLease`).
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Listens on `addr` and serves in a background task until the runtime shuts down. Returns
    /// the address it listens on, which tells the port chosen for port 0.
    ///
    /// # Errors
    /// [`Error::Listen`] if the address cannot be bound (in use, or not allowed).
    pub async fn serve(self, addr: impl Into<SocketAddr>) -> Result<SocketAddr> {
        let addr = addr.into();
        let listen_error = |source| Error::Listen { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(listen_error)?;
        let local = listener.local_addr().map_err(listen_error)?;
        info!(addr = %local, "serving /healthz, /readyz{}", METRICS_ROUTE_NOTE);
        let shutdown = self.runtime.shutdown_token();
        let server = Arc::new(self);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            tokio::spawn(Arc::clone(&server).connection(stream));
                        }
                        Err(error) => {
                            // Out of file descriptors, say: let some connections close first.
                            warn!(%error, "health endpoint cannot accept connections");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    },
                }
            }
            debug!(addr = %local, "health endpoint stopped");
        });
        Ok(local)
    }

    /// Reads one request, answers it and closes the connection.
    async fn connection(self: Arc<Self>, mut stream: TcpStream) {
        let response = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
            Err(_) => Response::text(408, "request timeout\n"),
            Ok(Err(_)) => return,
            Ok(Ok(None)) => Response::text(400, "bad request\n"),
            Ok(Ok(Some(head))) => self.respond(&head),
        };
        let _ = tokio::time::timeout(READ_TIMEOUT, response.write_to(&mut stream)).await;
    }

    /// The response to a request whose head (request line and headers) is `head`.
    fn respond(&self, head: &str) -> Response {
        let mut words = head.lines().next().unwrap_or_default().split(' ');
        let (Some(method), Some(target), Some(version)) =
            (words.next(), words.next(), words.next())
        else {
            return Response::text(400, "bad request\n");
        };
        if !version.starts_with("HTTP/1.") {
            return Response::text(400, "bad request\n");
        }
        let head_only = match method {
            "GET" => false,
            "HEAD" => true,
            _ => return Response::text(405, "method not allowed\n").header("Allow", "GET, HEAD"),
        };
        let path = target.split_once('?').map_or(target, |(path, _)| path);
        let mut response = match path {
            "/healthz" => self.liveness(),
            "/readyz" => self.readiness(),
            #[cfg(feature = "metrics")]
            "/metrics" => Response {
                content_type: crate::metrics::CONTENT_TYPE,
                ..Response::text(200, crate::metrics::render(&self.runtime.elections()))
            },
            _ => Response::text(404, "not found\n"),
        };
        response.head_only = head_only;
        response
    }

    /// The runtime's elections, ordered by namespace and name so that answers are stable.
    fn elections(&self) -> Vec<Election> {
        let mut elections = self.runtime.elections();
        elections.sort_by(|a, b| a.key().cmp(b.key()));
        elections
    }

    /// `/healthz`: every election's health check, as client-go's `HealthzAdaptor` checks its one.
    fn liveness(&self) -> Response {
        let failures: Vec<String> = self
            .elections()
            .iter()
            .filter_map(|election| election.health_check(self.tolerance).err())
            .map(|error| error.to_string())
            .collect();
        Response::verdict(failures)
    }

    /// `/readyz`: every election has seen its lease, and RBAC lets it take part.
    fn readiness(&self) -> Response {
        let reasons: Vec<String> = self
            .elections()
            .iter()
            .filter_map(|election| {
                let status = election.status().borrow().clone();
                let lease = election.key();
                if status.permission_denied {
                    let message = status.last_error.unwrap_or_default();
                    Some(format!(
                        "election for lease `{lease}` is refused: {message}"
                    ))
                } else if status.observed_change.is_none() && !status.is_leader {
                    Some(format!("lease `{lease}` not observed yet"))
                } else {
                    None
                }
            })
            .collect();
        Response::verdict(reasons)
    }
}

#[cfg(feature = "metrics")]
const METRICS_ROUTE_NOTE: &str = " and /metrics";
#[cfg(not(feature = "metrics"))]
const METRICS_ROUTE_NOTE: &str = "";

impl Runtime {
    /// Serves `/healthz`, `/readyz` (and with feature `metrics`, `/metrics`) for this runtime's
    /// elections on `addr` until the runtime shuts down, with the default tolerance; see
    /// [`HttpServer`] for the routes and for other settings. Returns the address it listens on.
    ///
    /// ```
    /// # use leader_runtime::{Runtime, testing::InMemoryLeaseStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> leader_runtime::Result<()> {
    /// let runtime = Runtime::builder().store(InMemoryLeaseStore::new()).build().await?;
    /// let addr = runtime.serve_http(([127, 0, 0, 1], 0)).await?;
    /// println!("probe http://{addr}/healthz");
    /// # runtime.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::Listen`] if the address cannot be bound (in use, or not allowed).
    pub async fn serve_http(&self, addr: impl Into<SocketAddr>) -> Result<SocketAddr> {
        HttpServer::new(self).serve(addr).await
    }
}

/// Reads up to the end of the request head. `Ok(None)`: the head is too long, not UTF-8, or the
/// client closed the connection before sending it in full.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0; 1024];
    loop {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&chunk[..read]);
        if let Some(end) = find(&head, b"\r\n\r\n").or_else(|| find(&head, b"\n\n")) {
            head.truncate(end);
            return Ok(String::from_utf8(head).ok());
        }
        if head.len() > MAX_HEAD {
            return Ok(None);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// An answer, always sent with `Connection: close`.
struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
    /// One more header.
    extra: Option<(&'static str, String)>,
    /// Answering `HEAD`: the headers as for `GET`, without the body.
    head_only: bool,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Self {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            extra: None,
            head_only: false,
        }
    }

    /// `200 ok` without problems, else `503` with one problem per line.
    fn verdict(problems: Vec<String>) -> Self {
        if problems.is_empty() {
            return Response::text(200, "ok\n");
        }
        let mut body = problems.join("\n");
        body.push('\n');
        Response::text(503, body)
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.extra = Some((name, value.to_owned()));
        self
    }

    async fn write_to(&self, stream: &mut TcpStream) -> std::io::Result<()> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            503 => "Service Unavailable",
            _ => "",
        };
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        if let Some((name, value)) = &self.extra {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await?;
        if !self.head_only {
            stream.write_all(self.body.as_bytes()).await?;
        }
        stream.shutdown().await
    }
}
