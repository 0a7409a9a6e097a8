//! The routes for an application's actix-web server (feature `actix-web`).

use actix_web::dev::HttpServiceFactory;
use actix_web::http::StatusCode;
use actix_web::http::header::ACCEPT;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::Routes;

/// The [`Routes`] (`/healthz`, `/readyz`, and with feature `metrics` `/metrics`) as an actix-web
/// service, to add to the application's `App` with [`App::service`](actix_web::App::service).
/// Pass a [`Routes`], or a `&Runtime` for its default routes. Only those paths are routed, so
/// the application's own default service still answers the others.
///
/// ```
/// use actix_web::{App, HttpServer};
/// use leader_runtime::{Routes, Runtime, testing::InMemoryLeaseStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> leader_runtime::Result<()> {
/// let runtime = Runtime::builder().store(InMemoryLeaseStore::new()).build().await?;
/// let routes = Routes::new(&runtime);
/// let server = HttpServer::new(move || {
///     App::new().service(leader_runtime::actix_web::service(routes.clone()))
/// });
/// // server.bind(("0.0.0.0", 8080))?.run().await
/// # drop(server);
/// # runtime.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "actix-web")))]
pub fn service(routes: impl Into<Routes>) -> impl HttpServiceFactory {
    let routes = routes.into();
    let resources: Vec<_> = routes
        .paths()
        .iter()
        .map(|path| {
            let routes = routes.clone();
            web::resource(*path)
                .to(move |request: HttpRequest| std::future::ready(respond(&routes, &request)))
        })
        .collect();
    resources
}

/// The answer to `request`, as actix-web's response.
fn respond(routes: &Routes, request: &HttpRequest) -> HttpResponse {
    let accept = request.headers().get(ACCEPT);
    let accept = accept.and_then(|value| value.to_str().ok());
    let reply = routes.respond(request.method().as_str(), request.path(), accept);
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    for header in reply.headers {
        response.insert_header(header);
    }
    response.body(reply.body)
}
