//! The seed scenario with the attributes: a periodic job that runs on one replica only.
//!
//! Run three instances against a cluster (or the local control plane from
//! `make control-plane`), each in its own terminal:
//!
//! ```text
//! cargo run --example periodic -- --kubeconfig ~/.kube/config --id instance-1 \
//!     --lease-lock-name my-leader-election-lock --lease-lock-namespace default
//! ```
//!
//! (then `--id instance-2` and `--id instance-3`). One prints `instance-1: leading
//! my-leader-election-lock` and then `instance-1: working (fencing token 0)` every 3 seconds; the
//! others print `instance-2: new leader of my-leader-election-lock: instance-1`. Ctrl+C on the
//! leader releases the lease and another instance takes over at once; `kill -9` on it makes the
//! others wait until the lease expires (15 s). `kubectl get lease my-leader-election-lock` shows
//! the holder.
//!
//! All flags are optional, and take every form Go's `flag` package does (`--id=instance-1`,
//! `--id instance-1`, `-id instance-1`, `-id=instance-1`); `--help` lists them. Without
//! `--kubeconfig` the usual configuration is used (in-cluster, then `$KUBECONFIG`), without `--id`
//! `$LEADER_IDENTITY`, else the pod name or hostname plus a random suffix. `LEADER_NAMESPACE` and
//! `LEADER_STANDALONE=1` work as with `#[leader_main]`. `--lease-duration`, `--renew-deadline` and
//! `--retry-period` (`15s`, `500ms`) set the timings.
//!
//! `--health-port 8080` serves `/healthz` (liveness) and `/readyz` (readiness) on that port with
//! the standalone server (feature `http`), and `/metrics` for Prometheus with feature `metrics`,
//! as the image for `examples/deploy/` is built:
//!
//! ```text
//! cargo run --example periodic --features http,metrics -- --id instance-1 --health-port 8080
//! curl localhost:8080/healthz        # ok
//! curl localhost:8080/metrics        # leader_election_is_leader{...} 1
//! ```
//!
//! A program with an HTTP server of its own mounts the same routes on it instead: see
//! `examples/axum.rs` and `examples/actix_web.rs`.

use clap::Parser;
use leader::runtime::Runtime;
use leader::{Leadership, leader_main, leader_only};

#[path = "support/flags.rs"]
mod flags;
#[path = "support/report.rs"]
mod report;

/// The lease named in the attribute; `--lease-lock-name` renames it at run time.
const LEASE: &str = "my-leader-election-lock";

/// A periodic job on one replica: every 3 seconds, the replica that leads the lease prints that
/// it works.
#[derive(Parser, Debug)]
struct Options {
    #[command(flatten)]
    client_go: flags::ClientGoFlags,
    /// Name of the lease
    #[arg(long, value_name = "NAME", default_value = LEASE)]
    lease_lock_name: String,
    /// Serve /healthz and /readyz (and /metrics with feature `metrics`) on this port, on every
    /// interface (needs feature `http`)
    #[arg(long, value_name = "PORT")]
    health_port: Option<u16>,
    /// While leading, mark this pod (POD_NAME in POD_NAMESPACE, from the downward API) as the
    /// last of its ReplicaSet to remove, for one handover per rolling update (needs `patch` on
    /// pods)
    #[arg(long)]
    pod_deletion_cost: bool,
}

#[leader_only(lease = "my-leader-election-lock", every = "3s")]
async fn work(leadership: Leadership) {
    println!(
        "{}: working (fencing token {})",
        leadership.identity(),
        leadership.fencing_token()
    );
}

#[leader_main(runtime = runtime_from_flags)]
async fn main() -> leader::Result<()> {
    let runtime = leader::installed_runtime().expect("started by #[leader_main]");
    tokio::spawn(report::leadership(
        runtime.election(LEASE)?,
        runtime.identity().to_owned(),
    ));
    work().await
}

/// Builds the runtime from client-go's example flags, over the `LEADER_*` environment variables
/// that `#[leader_main]` documents (a flag wins over its variable).
async fn runtime_from_flags() -> leader::Result<Runtime> {
    let options: Options = flags::parse();
    let builder = Runtime::builder().apply_env();
    let builder = options.client_go.apply(builder).await;
    let mut builder = builder.rename_lease(LEASE, options.lease_lock_name);
    if options.pod_deletion_cost {
        let from_env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let (Some(namespace), Some(pod)) = (from_env("POD_NAMESPACE"), from_env("POD_NAME")) else {
            let message =
                "--pod-deletion-cost needs POD_NAME and POD_NAMESPACE (the downward API)\n";
            clap::Error::raw(clap::error::ErrorKind::MissingRequiredArgument, message).exit()
        };
        builder = builder.pod_deletion_cost(namespace, pod);
    }
    let runtime = builder.build().await?;
    if let Some(port) = options.health_port {
        serve_health(&runtime, port).await?;
    }
    Ok(runtime)
}

/// Serves the health endpoint (and the metrics, with feature `metrics`) on every interface,
/// until the runtime shuts down.
#[cfg(feature = "http")]
async fn serve_health(runtime: &Runtime, port: u16) -> leader::Result<()> {
    let addr = runtime.serve_http(([0, 0, 0, 0], port)).await?;
    println!(
        "{}: health endpoint on http://{addr}/healthz",
        runtime.identity()
    );
    Ok(())
}

#[cfg(not(feature = "http"))]
async fn serve_health(_: &Runtime, _: u16) -> leader::Result<()> {
    let message = "--health-port needs the standalone server: build with `--features http` \
                   (and `metrics`)\n";
    clap::Error::raw(clap::error::ErrorKind::ArgumentConflict, message).exit()
}
