//! Probes and metrics on the application's own actix-web server: one port, one registry.
//!
//! ```text
//! LEADER_STANDALONE=1 cargo run --example actix_web --features actix-web,metrics
//! curl localhost:8080/               # hello (the application's own route)
//! curl localhost:8080/healthz        # ok
//! curl localhost:8080/readyz         # ok
//! curl localhost:8080/metrics        # hello_requests_total 1, leader_election_is_leader{...} 1, ...
//! ```
//!
//! It prints `actix-example: report` every 3 seconds while it leads the `report` lease; in a
//! cluster (without `LEADER_STANDALONE`) run two and only one prints. `PORT=N` listens on
//! another port; Ctrl+C stops it.

use actix_web::{App, HttpServer, web};
use leader::runtime::Routes;
use leader::{CancellationToken, leader_main, leader_only};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

#[leader_only(lease = "report", every = "3s")]
async fn report(_token: CancellationToken) {
    println!("actix-example: report");
}

#[leader_main(identity = "actix-example")]
async fn main() -> leader::Result<()> {
    let runtime = leader::installed_runtime().expect("started by #[leader_main]");

    // The application's registry, with its own metrics and the elections'.
    let mut registry = Registry::default();
    let requests = Counter::<u64>::default();
    registry.register("hello_requests", "Requests to /", requests.clone());
    runtime.register_metrics(&mut registry);

    let routes = Routes::new(runtime).registry(registry);
    let port: u16 = std::env::var("PORT").map_or(8080, |port| port.parse().expect("PORT: a port"));
    let server = HttpServer::new(move || {
        let requests = requests.clone();
        App::new()
            .route(
                "/",
                web::get().to(move || {
                    requests.inc();
                    async { "hello\n" }
                }),
            )
            .service(leader::runtime::actix_web::service(routes.clone()))
    })
    // `#[leader_main]` handles SIGTERM and Ctrl+C: it releases the lease, then exits.
    .disable_signals()
    .bind(("0.0.0.0", port))
    .unwrap_or_else(|error| panic!("cannot listen on port {port}: {error}"))
    .run();
    println!("actix-example: serving on http://localhost:{port}/");
    tokio::spawn(server);
    report().await
}
