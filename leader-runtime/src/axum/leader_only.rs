//! A guard for requests that only the leader may handle: a write to a single-writer store, say.
//! On the leader the request goes through, with the term's [`Leadership`]; on a follower it is
//! redirected, refused or forwarded to the leader, as the application chooses.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, Uri, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::{Election, Leader, Route};

#[cfg(doc)]
use crate::Leadership;

/// Response header naming the leader's identity, on answers from a follower.
pub const LEADER_IDENTITY_HEADER: &str = "leader-identity";
/// Response header with the leader's address (`host:port`), on answers from a follower.
pub const LEADER_ADDRESS_HEADER: &str = "leader-address";
/// Request header a follower adds when it forwards a request, with its identity. A replica that
/// receives a forwarded request and does not lead answers `503` instead of forwarding it again.
pub const FORWARDED_BY_HEADER: &str = "leader-forwarded-by";

/// Headers that belong to one connection, not to the request, and are not forwarded.
const HOP_BY_HOP: [header::HeaderName; 7] = [
    header::CONNECTION,
    header::HOST,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// What a follower does with a request that only the leader may handle. In every case, while
/// nobody can handle it (a handover: see [`Route::Handover`]), the answer is `503 Service
/// Unavailable` with `Retry-After`, and the request was not handled anywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnFollower {
    /// `307 Temporary Redirect` to the same path and query at the leader's address: clients
    /// that follow redirects resend it there with its method and body.
    Redirect,
    /// `503 Service Unavailable` with `Retry-After`, and the leader in the
    /// [`LEADER_IDENTITY_HEADER`] and [`LEADER_ADDRESS_HEADER`] headers, for clients that pick
    /// the replica themselves.
    Refuse,
    /// Sends the request to the leader over plain HTTP/1.1 and its answer back. When the
    /// leader cannot be reached (no connection), `503` with `Retry-After`: it was not handled.
    /// When the connection broke after the request was sent, `502 Bad Gateway`: the leader may
    /// or may not have handled it, as after any lost answer.
    Forward,
}

/// The state of the [`leader_only`] middleware: which election decides, and what followers do.
///
/// ```
/// use axum::routing::{get, post};
/// use axum::{Extension, Router};
/// use leader_runtime::axum::{LeaderOnly, OnFollower, leader_only};
/// use leader_runtime::{Leadership, Runtime, testing::InMemoryLeaseStore};
///
/// async fn write(Extension(leadership): Extension<Leadership>, body: String) -> String {
///     // Only the leader gets here; pass the fencing token to what you write to.
///     format!("applied {body:?} with fencing token {}\n", leadership.fencing_token())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> leader_runtime::Result<()> {
/// let runtime = Runtime::builder()
///     .store(InMemoryLeaseStore::new())
///     .address("10.1.2.3:8080") // in a pod: .address_from_pod_ip(8080)
///     .build()
///     .await?;
/// let election = runtime.election("writes")?;
/// let guard = LeaderOnly::new(&election, OnFollower::Redirect);
/// let app: Router = Router::new()
///     .route("/write", post(write))
///     .route_layer(axum::middleware::from_fn_with_state(guard, leader_only))
///     .route("/read", get(|| async { "any replica answers reads\n" }));
/// // Campaign for as long as the program runs: requests are handled while this replica leads.
/// tokio::spawn(async move { election.lead(|leadership| leadership.cancelled()).await });
/// // axum::serve(listener, app).await
/// # drop(app);
/// # runtime.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct LeaderOnly {
    election: Election,
    on_follower: OnFollower,
    scheme: &'static str,
    retry_after: HeaderValue,
    client: Option<Client<HttpConnector, Body>>,
}

impl LeaderOnly {
    /// Lets requests through while this replica leads `election`, and does `on_follower` on a
    /// follower. Something must keep the replica campaigning: a [`Election::lead`] call
    /// waiting or running (see the example above).
    pub fn new(election: &Election, on_follower: OnFollower) -> Self {
        let client = (on_follower == OnFollower::Forward)
            .then(|| Client::builder(TokioExecutor::new()).build_http());
        let retry_after = election.config().retry_period;
        LeaderOnly {
            election: election.clone(),
            on_follower,
            scheme: "http",
            retry_after: seconds(retry_after),
            client,
        }
    }

    /// The `Retry-After` of `503` answers, in whole seconds (rounded up, at least 1). Default:
    /// the election's retry period, within which a released lease has a new holder.
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = seconds(after);
        self
    }

    /// Redirects to `https://` instead of `http://`, for replicas that serve TLS themselves.
    /// ([`OnFollower::Forward`] speaks plain HTTP: it is for traffic inside the cluster.)
    pub fn https_redirects(mut self) -> Self {
        self.scheme = "https";
        self
    }

    /// The answer for a request this guard let through whose handler then finds the term over
    /// ([`Leadership::is_leading`](crate::Leadership::is_leading) is false: the term ended in
    /// between). It is the guard's own answer during a handover: `503` with `Retry-After`, and
    /// the request was applied nowhere. Give the guard to the handler as state to answer with it.
    pub fn term_ended(&self) -> Response {
        let why = format!(
            "this replica stopped leading `{}` before applying the request",
            self.election.key()
        );
        self.unavailable(None, &why)
    }

    /// The answer when nobody can handle the request now.
    fn unavailable(&self, leader: Option<&Leader>, why: &str) -> Response {
        let retry = self.retry_after.to_str().unwrap_or("1");
        let text = format!("{why}; retry in {retry} s\n");
        let mut response = (StatusCode::SERVICE_UNAVAILABLE, text).into_response();
        let headers = response.headers_mut();
        headers.insert(header::RETRY_AFTER, self.retry_after.clone());
        if let Some(leader) = leader {
            leader_headers(headers, leader);
        }
        response
    }

    /// A follower's answer: per [`OnFollower`].
    async fn follow(&self, request: Request, leader: Leader, address: String) -> Response {
        let lease = self.election.key();
        if request.headers().contains_key(FORWARDED_BY_HEADER) {
            let why = format!(
                "this replica was sent this request as the leader of `{lease}`, but it does not \
                 lead it (the lease is changing hands)"
            );
            return self.unavailable(Some(&leader), &why);
        }
        match self.on_follower {
            OnFollower::Redirect => {
                let target = target(self.scheme, &address, request.uri());
                let Ok(location) = HeaderValue::try_from(target.to_string()) else {
                    return self.unavailable(Some(&leader), "the leader's address is not usable");
                };
                let text = format!("`{lease}` is led by {} at {address}\n", leader.identity);
                let mut response = (StatusCode::TEMPORARY_REDIRECT, text).into_response();
                let headers = response.headers_mut();
                headers.insert(header::LOCATION, location);
                leader_headers(headers, &leader);
                response
            }
            OnFollower::Refuse => {
                let why = format!(
                    "this replica does not lead `{lease}`: send this request to {} at {address}",
                    leader.identity
                );
                self.unavailable(Some(&leader), &why)
            }
            OnFollower::Forward => self.forward(request, &leader, &address).await,
        }
    }

    /// Sends `request` to the leader at `address` and its answer back.
    async fn forward(&self, request: Request, leader: &Leader, address: &str) -> Response {
        let Some(client) = &self.client else {
            return self.unavailable(Some(leader), "forwarding is not set up");
        };
        let (mut parts, body) = request.into_parts();
        parts.uri = target("http", address, &parts.uri);
        parts.version = http::Version::HTTP_11;
        for name in HOP_BY_HOP {
            parts.headers.remove(name);
        }
        if let Ok(identity) = HeaderValue::from_str(self.election.shared.identity.as_str()) {
            parts.headers.insert(FORWARDED_BY_HEADER, identity);
        }
        match client.request(Request::from_parts(parts, body)).await {
            Ok(response) => response.map(Body::new),
            Err(error) if error.is_connect() => {
                let why = format!("cannot reach the leader {} at {address}", leader.identity);
                self.unavailable(Some(leader), &why)
            }
            Err(error) => {
                let text = format!(
                    "the leader {} at {address} did not answer ({error}); it may or may not have \
                     handled the request\n",
                    leader.identity
                );
                let mut response = (StatusCode::BAD_GATEWAY, text).into_response();
                leader_headers(response.headers_mut(), leader);
                response
            }
        }
    }
}

/// The axum middleware of [`LeaderOnly`]: on the leader, the request goes to the handler with
/// the term's [`Leadership`] in its extensions (extract it with `Extension<Leadership>`); on a
/// follower, [`OnFollower`] decides. The lease is not released before the handler has returned
/// (up to the hard-stop grace), so a write under way when the term ends finishes before another
/// replica leads; stop early when the leadership's token fires.
///
/// Mount it with `axum::middleware::from_fn_with_state(guard, leader_only)` on the routes it
/// guards (`route_layer`), as in [`LeaderOnly`]'s example. It is a tower layer, so it also
/// wraps any tower service of axum requests.
pub async fn leader_only(
    State(guard): State<LeaderOnly>,
    mut request: Request,
    next: Next,
) -> Response {
    match guard.election.route() {
        Route::Here(leadership) => {
            request.extensions_mut().insert(leadership);
            next.run(request).await
        }
        Route::Leader { leader, address } => guard.follow(request, leader, address).await,
        Route::Handover(leader) => {
            let lease = guard.election.key();
            let why = match &leader {
                None => format!("nobody leads `{lease}` now"),
                Some(leader) if leader.is_self => {
                    format!("this replica's term on `{lease}` is changing")
                }
                Some(leader) if leader.address.is_none() => format!(
                    "`{lease}` is led by {}, which published no address",
                    leader.identity
                ),
                Some(leader) => format!(
                    "`{lease}` is changing hands (its holder {} has not renewed for a lease \
                     duration)",
                    leader.identity
                ),
            };
            guard.unavailable(leader.as_ref(), &why)
        }
    }
}

/// `scheme://address` with the path and query of `uri`.
fn target(scheme: &str, address: &str, uri: &Uri) -> Uri {
    let path = uri.path_and_query().map_or("/", |path| path.as_str());
    // Only an origin-form target (`/path?query`) carries over; `*` or an authority does not.
    let path = if path.starts_with('/') { path } else { "/" };
    format!("{scheme}://{address}{path}")
        .parse()
        .unwrap_or_else(|_| Uri::from_static("/"))
}

/// The leader's identity and address headers (those that make valid header values).
fn leader_headers(headers: &mut http::HeaderMap, leader: &Leader) {
    if let Ok(identity) = HeaderValue::from_str(&leader.identity) {
        headers.insert(LEADER_IDENTITY_HEADER, identity);
    }
    if let Some(Ok(address)) = leader.address.as_deref().map(HeaderValue::from_str) {
        headers.insert(LEADER_ADDRESS_HEADER, address);
    }
}

/// `after` in whole seconds, rounded up, at least 1, as a header value.
fn seconds(after: Duration) -> HeaderValue {
    let whole = after.as_secs() + u64::from(after.subsec_nanos() > 0);
    HeaderValue::from(whole.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        assert_eq!(seconds(Duration::ZERO), "1");
        assert_eq!(seconds(Duration::from_millis(1500)), "2");
        assert_eq!(seconds(Duration::from_secs(2)), "2");
    }

    #[test]
    fn targets_keep_path_and_query() {
        let uri: Uri = "/write?id=7".parse().unwrap();
        assert_eq!(
            target("http", "10.1.2.3:8080", &uri),
            "http://10.1.2.3:8080/write?id=7"
        );
        assert_eq!(
            target("https", "[fd00::7]:443", &Uri::from_static("*")),
            "https://[fd00::7]:443/"
        );
    }
}
