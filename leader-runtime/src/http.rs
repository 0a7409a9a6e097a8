//! The standalone server (feature `http`): the [`Routes`] on hyper 1, for programs without an
//! HTTP server of their own.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::routes::respond_http;
use crate::{Error, Result, Routes, Runtime};

/// A client must have sent its whole request head by then, or the connection is closed (without
/// an answer: that is what hyper does on its header read timeout).
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest request head (request line and headers) accepted; longer ones get `431`. Probes
/// and scrapes send a few hundred bytes.
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub const MAX_HEAD: usize = 8 * 1024;

/// How long one connection may last in all, head and answer: a client that does not read its
/// answer cannot hold a connection slot longer.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(10);

/// The default of [`HttpServer::max_connections`].
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// The standalone HTTP server of a [`Runtime`]'s [`Routes`] (`/healthz`, `/readyz`, and with
/// feature `metrics` `/metrics`), on hyper's HTTP/1.1 server.
///
/// One request per connection (answers carry `Connection: close`), as the kubelet's probes and a
/// Prometheus scrape need. Limits:
///
/// - a request head not complete within [`HEADER_READ_TIMEOUT`] (5 s): the connection is closed
///   without an answer (hyper's header read timeout sends none);
/// - a request head over [`MAX_HEAD`] (8 KiB): `431 Request Header Fields Too Large`;
/// - a malformed request line or header: `400 Bad Request` (from hyper's parser);
/// - at most [`max_connections`](Self::max_connections) connections at once; further ones wait
///   in the listen backlog until one closes. A connection lasts at most 10 s in all.
///
/// The server stops accepting connections when the runtime starts shutting down.
///
/// ```
/// use std::time::Duration;
/// use leader_runtime::{HttpServer, Routes, Runtime, testing::InMemoryLeaseStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> leader_runtime::Result<()> {
/// let runtime = Runtime::builder().store(InMemoryLeaseStore::new()).build().await?;
/// // In a pod: `runtime.serve_http(([0, 0, 0, 0], 8080)).await?`, with the defaults.
/// let routes = Routes::new(&runtime).tolerance(Duration::from_secs(30));
/// let addr = HttpServer::new(routes).serve(([127, 0, 0, 1], 0)).await?;
/// assert_ne!(addr.port(), 0);
/// runtime.shutdown().await; // stops the server too
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub struct HttpServer {
    routes: Routes,
    max_connections: usize,
}

impl HttpServer {
    /// A server for `routes`: a [`Routes`], or a `&Runtime` for its default routes.
    pub fn new(routes: impl Into<Routes>) -> Self {
        HttpServer {
            routes: routes.into(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }

    /// How many connections are served at once (at least one); default
    /// [`DEFAULT_MAX_CONNECTIONS`]. Connections beyond it wait in the listen backlog.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
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
        info!(addr = %local, routes = ?self.routes.paths(), "serving health endpoint");
        let shutdown = self.routes.runtime().shutdown_token();
        let slots = Arc::new(Semaphore::new(self.max_connections));
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_header_size(MAX_HEAD)
            .keep_alive(false);
        let routes = self.routes;
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = shutdown.cancelled() => break,
                    accepted = accept(&listener, &slots) => accepted,
                };
                let (stream, slot) = accepted;
                let routes = routes.clone();
                let service = service_fn(move |request| {
                    let response = respond_http::<_, Full<Bytes>>(&routes, &request);
                    std::future::ready(Ok::<_, Infallible>(response))
                });
                let connection = http.serve_connection(TokioIo::new(stream), service);
                tokio::spawn(async move {
                    if let Ok(Err(error)) =
                        tokio::time::timeout(CONNECTION_LIFETIME, connection).await
                    {
                        debug!(%error, "health endpoint connection failed");
                    }
                    drop(slot);
                });
            }
            debug!(addr = %local, "health endpoint stopped");
        });
        Ok(local)
    }
}

/// The next connection, once there is a free slot for it.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> (tokio::net::TcpStream, tokio::sync::OwnedSemaphorePermit) {
    let slot = Arc::clone(slots)
        .acquire_owned()
        .await
        .expect("the semaphore is never closed");
    loop {
        match listener.accept().await {
            Ok((stream, _)) => return (stream, slot),
            Err(error) => {
                // Out of file descriptors, say: let some connections close first.
                warn!(%error, "health endpoint cannot accept connections");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

impl Runtime {
    /// Serves `/healthz`, `/readyz` (and with feature `metrics`, `/metrics`) for this runtime's
    /// elections on `addr` until the runtime shuts down, with the default [`Routes`]; see
    /// [`HttpServer`] for its limits and settings. Returns the address it listens on.
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
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub async fn serve_http(&self, addr: impl Into<SocketAddr>) -> Result<SocketAddr> {
        HttpServer::new(self).serve(addr).await
    }
}
