//! A service with several replicas whose writes must happen on one of them: the leader. Every
//! replica answers requests (a Service spreads them); `POST /write` is guarded by
//! [`LeaderOnly`]: the leader applies the write with its fencing token, a follower redirects it
//! to the leader (`307`, the default), refuses it naming the leader (`503`,
//! `--on-follower=refuse`) or forwards it there (`--on-follower=forward`). During a handover a
//! follower answers `503` with `Retry-After`, and the write was not applied anywhere.
//!
//! Run three instances against a cluster (or the local control plane from
//! `make control-plane`), each in its own terminal:
//!
//! ```text
//! cargo run --example writes --features axum -- --kubeconfig=$HOME/.kube/config \
//!     --id=instance-1 --listen=127.0.0.1:8081 --lease-lock-namespace=default
//! ```
//!
//! (then `--id=instance-2 --listen=127.0.0.1:8082` and `--id=instance-3
//! --listen=127.0.0.1:8083`), and write to any of them; curl's `-L` follows the redirect to the
//! leader:
//!
//! ```text
//! curl -L --data 'order 17' localhost:8082/write   # instance-1 applied `order 17` (fencing token 0)
//! curl localhost:8083/leader                       # instance-1 at 127.0.0.1:8081 (fencing token 0)
//! ```
//!
//! The leader prints `instance-1: applied order 17 (fencing token 0) at <unix µs>`. Ctrl+C on
//! it releases the lease once the writes under way are done; another instance leads at once, and
//! the followers send writes there. `kill -9` on it leaves the others answering `503` until the
//! lease expires (15 s).
//!
//! Each replica publishes the address it serves on in the Lease (`--address`, default the
//! listening address, or `$POD_IP` and the port in a pod), which is how the followers know
//! where the leader is. With `--leader-service writes-leader` (feature `leader-service`, in a
//! pod) the leader also keeps that selector-less Service's endpoint pointing at itself, for
//! clients that cannot follow a redirect (`examples/deploy/writes/writes.yaml` has both). The apply here is a line on stdout; a real service writes to its store
//! and passes the fencing token along, so that the store refuses a write from an older leader
//! (see `examples/controller.rs`). What is and is not guaranteed: README, "Sending writes to the
//! leader".
//!
//! Flags take every form Go's `flag` package does; `--help` lists them. `--lease-duration`,
//! `--renew-deadline` and `--retry-period` (`15s`, `500ms`) set the timings.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use clap::{Parser, ValueEnum};
use leader::runtime::axum::{LeaderOnly, OnFollower, leader_only};
use leader::runtime::{Election, Routes, Runtime};
use leader::{Leadership, leader_main, leader_only};

#[path = "support/flags.rs"]
mod flags;
#[path = "support/report.rs"]
mod report;

/// The lease named in the attribute; `--lease-lock-name` renames it at run time.
const LEASE: &str = "writes";

/// A single-writer service on every replica, writes applied by the leader only.
#[derive(Parser, Debug)]
struct Options {
    #[command(flatten)]
    client_go: flags::ClientGoFlags,
    /// Name of the lease
    #[arg(long, value_name = "NAME", default_value = LEASE)]
    lease_lock_name: String,
    /// Where to serve `/write`, `/leader`, `/healthz` and `/readyz`
    #[arg(long, value_name = "IP:PORT", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// The address the other replicas reach this one at, published while it leads [default:
    /// `$POD_IP` and the port of --listen in a pod, else --listen's address and port]
    #[arg(long, value_name = "HOST:PORT")]
    address: Option<String>,
    /// What a follower does with a write
    #[arg(long, value_enum, default_value = "redirect")]
    on_follower: Answer,
    /// Keep this selector-less Service's endpoint on the leader, for clients that cannot follow
    /// redirects (needs feature `leader-service`, and an address with an IP: a pod IP)
    #[arg(long, value_name = "SERVICE")]
    leader_service: Option<String>,
}

/// What a follower does with a write (`--on-follower`).
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Answer {
    /// `307` to the leader
    Redirect,
    /// `503` naming the leader
    Refuse,
    /// Forward it to the leader
    Forward,
}

/// The command line, parsed once (by `runtime_from_flags`, before `main`'s body runs).
fn options() -> &'static Options {
    static OPTIONS: std::sync::OnceLock<Options> = std::sync::OnceLock::new();
    OPTIONS.get_or_init(flags::parse)
}

#[leader_main(runtime = runtime_from_flags)]
async fn main() -> leader::Result<()> {
    let runtime = leader::installed_runtime().expect("started by #[leader_main]");
    let me = runtime.identity().to_owned();
    let election = runtime.election(LEASE)?;
    tokio::spawn(report::leadership(election.clone(), me.clone()));

    let on_follower = match options().on_follower {
        Answer::Redirect => OnFollower::Redirect,
        Answer::Refuse => OnFollower::Refuse,
        Answer::Forward => OnFollower::Forward,
    };
    let guard = LeaderOnly::new(&election, on_follower);
    let app = Router::new()
        .route(
            "/write",
            post(write)
                .with_state(guard.clone())
                .route_layer(axum::middleware::from_fn_with_state(guard, leader_only)),
        )
        .route("/leader", get(leader).with_state(election))
        .merge(leader::runtime::axum::router(Routes::new(runtime)));
    let listen = options().listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .unwrap_or_else(|error| panic!("{me}: cannot listen on {listen}: {error}"));
    let serving = listener.local_addr().expect("a bound socket");
    println!("{me}: serving on http://{serving}");
    // On shutdown the server stops taking connections and finishes the requests under way, so
    // that a write applied before the lease was released is also answered.
    let stopping = runtime.shutdown_token().cancelled_owned();
    let server = axum::serve(listener, app).with_graceful_shutdown(stopping);
    let server = tokio::spawn(async move { server.await });

    loop {
        // Campaign; the guard lets writes through while this replica leads.
        match hold().await {
            Err(error @ leader::Error::ShutDown { .. }) => {
                let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
                return Err(error);
            }
            Err(error) => eprintln!("{me}: {error}"),
            Ok(()) => {}
        }
    }
}

/// Holds one term of leadership, until it ends: writes are handled meanwhile.
#[leader_only(lease = "writes")]
async fn hold(leadership: Leadership) {
    leadership.cancelled().await;
}

/// Applies a write, on the leader only (the guard sees to that), within its term.
async fn write(
    State(guard): State<LeaderOnly>,
    Extension(leadership): Extension<Leadership>,
    body: String,
) -> Response {
    let me = leadership.identity();
    let token = leadership.fencing_token();
    // The term may have ended since the guard let the request in (`is_leading` reads the
    // clock): then nothing is applied, and the answer is the guard's during a handover.
    if !leadership.is_leading() {
        return guard.term_ended();
    }
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_micros());
    println!("{me}: applied {body} (fencing token {token}) at {micros}");
    let text = format!("{me} applied {body} (fencing token {token})\n");
    (StatusCode::OK, text).into_response()
}

/// Who leads, where, with which fencing token.
async fn leader(State(election): State<Election>) -> String {
    match election.leader() {
        Some(leader) => {
            let address = leader.address.as_deref().unwrap_or("an unknown address");
            format!(
                "{} at {address} (fencing token {})\n",
                leader.identity, leader.fencing_token
            )
        }
        None => "nobody leads\n".to_owned(),
    }
}

/// Builds the runtime from the flags, over the `LEADER_*` environment variables (a flag wins
/// over its variable), with the address this replica publishes.
async fn runtime_from_flags() -> leader::Result<Runtime> {
    let options = options();
    let builder = options
        .client_go
        .apply(Runtime::builder().apply_env())
        .await
        .rename_lease(LEASE, &options.lease_lock_name);
    let builder = match &options.address {
        Some(address) => builder.address(address),
        None if std::env::var_os(leader::runtime::ENV_POD_IP).is_some() => {
            builder.address_from_pod_ip(options.listen.port())
        }
        None => builder.address(options.listen.to_string()),
    };
    let builder = match &options.leader_service {
        None => builder,
        #[cfg(feature = "leader-service")]
        Some(service) => builder.leader_service(LEASE, service),
        #[cfg(not(feature = "leader-service"))]
        Some(_) => {
            let message =
                "--leader-service needs the example built with feature `leader-service`\n";
            clap::Error::raw(clap::error::ErrorKind::ArgumentConflict, message).exit()
        }
    };
    builder.build().await
}
