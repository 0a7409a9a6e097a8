//! The one place that decides what `/healthz`, `/readyz` and `/metrics` answer. The standalone
//! server and the axum and actix-web adapters only map [`Routes::respond`] onto their types.

use std::time::Duration;

use crate::{DEFAULT_HEALTH_TOLERANCE, Runtime, Verdict};

/// The routes, with the methods they accept.
#[cfg(feature = "metrics")]
const PATHS: &[&str] = &["/healthz", "/readyz", "/metrics"];
#[cfg(not(feature = "metrics"))]
const PATHS: &[&str] = &["/healthz", "/readyz"];

/// What [`Routes::respond`] accepts; others get `405` with this as `Allow`.
const ALLOW: &str = "GET, HEAD";

const TEXT: &str = "text/plain; charset=utf-8";

/// The `Content-Type` of the OpenMetrics text format, served to scrapers that ask for it.
#[cfg(feature = "metrics")]
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The health and metrics routes of a [`Runtime`], independent of any HTTP server:
///
/// | route | answer |
/// | --- | --- |
/// | `GET /healthz` | [`Runtime::liveness`] with the [tolerance](Self::tolerance): `200 ok`, or `503` with one line per failing election (a stuck leader, or RBAC refusing the runtime) |
/// | `GET /readyz` | [`Runtime::readiness`]: `200 ok` once every election has seen its lease (or leads it) and none is refused by RBAC; `503` with the reasons before |
/// | `GET /metrics` | with feature `metrics`: the registry (`Routes::registry`), in OpenMetrics text when the `Accept` header asks for `application/openmetrics-text` (as Prometheus does), else in the Prometheus text format 0.0.4 |
///
/// `HEAD` is answered like `GET` (the server drops the body), other methods get `405` with
/// `Allow: GET, HEAD`, other paths `404`. Every answer has `Cache-Control: no-store`. Elections
/// created later are included.
///
/// The same routes are served by `HttpServer` (feature `http`), by
/// `axum::router` (feature `axum`) and by `actix_web::service` (feature `actix-web`). For another
/// server, map [`respond`](Self::respond) onto it:
///
/// ```
/// use leader_runtime::{Routes, Runtime, testing::InMemoryLeaseStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> leader_runtime::Result<()> {
/// let runtime = Runtime::builder().store(InMemoryLeaseStore::new()).build().await?;
/// let routes = Routes::new(&runtime);
/// let reply = routes.respond("GET", "/healthz", None);
/// assert_eq!((reply.status, reply.body.as_str()), (200, "ok\n"));
/// assert_eq!(reply.header("content-type"), Some("text/plain; charset=utf-8"));
/// assert_eq!(routes.respond("POST", "/healthz", None).header("allow"), Some("GET, HEAD"));
/// # runtime.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use]
pub struct Routes {
    runtime: Runtime,
    tolerance: Duration,
    #[cfg(feature = "metrics")]
    registry: std::sync::Arc<prometheus_client::registry::Registry>,
}

impl Routes {
    /// The routes of `runtime`'s elections, with [`DEFAULT_HEALTH_TOLERANCE`] and (feature
    /// `metrics`) a registry holding the runtime's metrics alone.
    pub fn new(runtime: &Runtime) -> Self {
        Routes {
            runtime: runtime.clone(),
            tolerance: DEFAULT_HEALTH_TOLERANCE,
            #[cfg(feature = "metrics")]
            registry: {
                let mut registry = prometheus_client::registry::Registry::default();
                runtime.register_metrics(&mut registry);
                std::sync::Arc::new(registry)
            },
        }
    }

    /// The tolerance `/healthz` passes to [`Runtime::liveness`]: how long past the lease duration
    /// a replica that believes it leads may go without renewing before it counts as stuck
    /// (client-go's `maxTolerableExpiredLease`).
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Serves `registry` at `/metrics` instead of the runtime's metrics alone: the application's
    /// registry, into which it has called [`Runtime::register_metrics`], so that one scrape gets
    /// everything.
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn registry(
        mut self,
        registry: impl Into<std::sync::Arc<prometheus_client::registry::Registry>>,
    ) -> Self {
        self.registry = registry.into();
        self
    }

    /// The runtime whose elections the routes report on.
    #[cfg(feature = "http")]
    pub(crate) fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The paths answered: `/healthz`, `/readyz`, and with feature `metrics` `/metrics`.
    pub fn paths(&self) -> &'static [&'static str] {
        PATHS
    }

    /// The answer to a request with `method` for `path` (a query string is ignored); `accept` is
    /// the request's `Accept` header, which chooses the format of `/metrics`.
    pub fn respond(&self, method: &str, path: &str, accept: Option<&str>) -> Reply {
        #[cfg(not(feature = "metrics"))]
        let _ = accept; // only `/metrics` looks at it
        if !matches!(method, "GET" | "HEAD") {
            let mut reply = Reply::text(405, "method not allowed\n");
            reply.headers.push(("allow", ALLOW));
            return reply;
        }
        let path = path.split_once('?').map_or(path, |(path, _)| path);
        match path {
            "/healthz" => Reply::verdict(&self.runtime.liveness(self.tolerance)),
            "/readyz" => Reply::verdict(&self.runtime.readiness()),
            #[cfg(feature = "metrics")]
            "/metrics" => self.metrics(accept),
            _ => Reply::text(404, "not found\n"),
        }
    }

    /// `/metrics`: the registry in the format the scraper asks for.
    #[cfg(feature = "metrics")]
    fn metrics(&self, accept: Option<&str>) -> Reply {
        use prometheus_client::encoding::{prometheus_text, text};
        let mut body = String::new();
        let (encoded, content_type) = if accept.is_some_and(accepts_openmetrics) {
            (text::encode(&mut body, &self.registry), OPENMETRICS)
        } else {
            let encoded = prometheus_text::encode(&mut body, &self.registry);
            (encoded, prometheus_text::CONTENT_TYPE)
        };
        match encoded {
            Ok(()) => Reply::new(200, content_type, body),
            Err(_) => Reply::text(
                500,
                "a metric of the registry failed to encode itself; check the collectors \
                 registered in it\n",
            ),
        }
    }
}

impl From<&Runtime> for Routes {
    fn from(runtime: &Runtime) -> Self {
        Routes::new(runtime)
    }
}

/// The answer to `request` as an `http` response, for the servers built on the `http` crate
/// (hyper, axum).
#[cfg(any(feature = "http", feature = "axum"))]
pub(crate) fn respond_http<Req, Body: From<String>>(
    routes: &Routes,
    request: &http::Request<Req>,
) -> http::Response<Body> {
    let accept = request.headers().get(http::header::ACCEPT);
    let accept = accept.and_then(|value| value.to_str().ok());
    let reply = routes.respond(request.method().as_str(), request.uri().path(), accept);
    let mut response = http::Response::new(Body::from(reply.body));
    *response.status_mut() =
        http::StatusCode::from_u16(reply.status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in reply.headers {
        let value = http::HeaderValue::from_static(value);
        response.headers_mut().insert(name, value);
    }
    response
}

/// Whether an `Accept` header lists the OpenMetrics text format with a non-zero quality.
#[cfg(feature = "metrics")]
fn accepts_openmetrics(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media_type = parts.next().unwrap_or_default();
        let refused = parts.any(|parameter| {
            parameter
                .strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        media_type.eq_ignore_ascii_case("application/openmetrics-text") && !refused
    })
}

/// An answer of [`Routes::respond`], for the server to send.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The headers, with lowercase names: `content-type`, `cache-control`, and `allow` on `405`.
    pub headers: Vec<(&'static str, &'static str)>,
    /// The body (also to be left out when answering `HEAD`).
    pub body: String,
}

impl Reply {
    fn new(status: u16, content_type: &'static str, body: String) -> Self {
        Reply {
            status,
            headers: vec![
                ("content-type", content_type),
                ("cache-control", "no-store"),
            ],
            body,
        }
    }

    fn text(status: u16, body: &str) -> Self {
        Reply::new(status, TEXT, body.to_owned())
    }

    /// `200 ok` for a healthy verdict, else `503` with its reasons, one per line.
    fn verdict(verdict: &Verdict) -> Self {
        let status = if verdict.is_healthy() { 200 } else { 503 };
        Reply::new(status, TEXT, format!("{verdict}\n"))
    }

    /// The value of header `name` (lowercase), if the reply has it.
    pub fn header(&self, name: &str) -> Option<&'static str> {
        let mut headers = self.headers.iter();
        headers
            .find(|(key, _)| *key == name)
            .map(|(_, value)| *value)
    }
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use super::accepts_openmetrics;

    #[test]
    fn openmetrics_is_chosen_when_the_accept_header_lists_it_with_a_positive_quality() {
        let prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,\
                          text/plain;version=0.0.4;q=0.4,*/*;q=0.1";
        assert!(accepts_openmetrics(prometheus));
        assert!(accepts_openmetrics("Application/OpenMetrics-Text"));
        assert!(!accepts_openmetrics("application/openmetrics-text; q=0"));
        assert!(!accepts_openmetrics("text/plain"));
        assert!(!accepts_openmetrics("*/*"));
    }
}
