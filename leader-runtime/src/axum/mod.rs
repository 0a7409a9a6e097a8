//! The library in an application's axum server (feature `axum`): the probe and metrics routes
//! ([`router`]), and a guard for requests that only the leader may handle ([`LeaderOnly`]).

mod leader_only;

pub use self::leader_only::{
    FORWARDED_BY_HEADER, LEADER_ADDRESS_HEADER, LEADER_IDENTITY_HEADER, LeaderOnly, OnFollower,
    leader_only,
};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::any;

use crate::Routes;
use crate::routes::respond_http;

/// The [`Routes`] (`/healthz`, `/readyz`, and with feature `metrics` `/metrics`) as an axum
/// [`Router`], to [`merge`](Router::merge) into the application's (or to
/// [`nest`](Router::nest) under a prefix). Pass a [`Routes`], or a `&Runtime` for its default
/// routes. The router routes only those paths, so the application's own fallback still
/// answers the others.
///
/// ```
/// use leader_runtime::{Routes, Runtime, testing::InMemoryLeaseStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> leader_runtime::Result<()> {
/// let runtime = Runtime::builder().store(InMemoryLeaseStore::new()).build().await?;
/// let app: axum::Router = axum::Router::new()
///     .route("/", axum::routing::get(|| async { "hello" }))
///     .merge(leader_runtime::axum::router(Routes::new(&runtime)));
/// // axum::serve(listener, app).await
/// # drop(app);
/// # runtime.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub fn router<S>(routes: impl Into<Routes>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let routes = routes.into();
    routes.paths().iter().fold(Router::new(), |router, path| {
        let routes = routes.clone();
        let handler = move |request: Request| {
            let response: Response = respond_http::<_, Body>(&routes, &request);
            std::future::ready(response)
        };
        router.route(path, any(handler))
    })
}
