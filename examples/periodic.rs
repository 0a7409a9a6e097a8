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
//! All flags are optional: without `--kubeconfig` the usual configuration is used (in-cluster,
//! then `$KUBECONFIG`), without `--id` `$LEADER_IDENTITY`, else the pod name or hostname plus a
//! random suffix. `LEADER_NAMESPACE` and `LEADER_STANDALONE=1` work as with `#[leader_main]`.
//! `--lease-duration`, `--renew-deadline` and `--retry-period` (`15s`, `500ms`) set the timings.
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

use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use leader::runtime::{ElectionConfig, Runtime};
use leader::{Leadership, leader_main, leader_only};

/// The lease named in the attribute; `--lease-lock-name` renames it at run time.
const LEASE: &str = "my-leader-election-lock";

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
    tokio::spawn(report_leadership(
        runtime.election(LEASE)?,
        runtime.identity().to_owned(),
    ));
    work().await
}

/// Prints when this replica starts and stops leading, and every new leader it sees, as
/// client-go's OnStartedLeading, OnStoppedLeading and OnNewLeader callbacks do.
async fn report_leadership(election: leader::runtime::Election, me: String) {
    let lease = election.key().name.clone();
    let mut status = election.status();
    let (mut holder, mut leading) = (None, false);
    loop {
        let now = status.borrow_and_update().clone();
        if now.is_leader != leading {
            leading = now.is_leader;
            if leading {
                println!(
                    "{me}: leading {lease} (fencing token {})",
                    now.fencing_token.unwrap_or_default()
                );
            } else {
                println!("{me}: stopped leading {lease}");
            }
        }
        if now.holder != holder {
            holder = now.holder;
            if let Some(holder) = holder.as_deref().filter(|holder| *holder != me) {
                println!("{me}: new leader of {lease}: {holder}");
            }
        }
        if status.changed().await.is_err() {
            return;
        }
    }
}

/// Builds the runtime from client-go's example flags, over the `LEADER_*` environment variables
/// that `#[leader_main]` documents (a flag wins over its variable).
async fn runtime_from_flags() -> leader::Result<Runtime> {
    let mut builder = Runtime::builder().apply_env();
    let mut config = ElectionConfig::default();
    let mut health_port = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--kubeconfig" => builder = builder.client(client_from(&value).await),
            "--id" => builder = builder.identity(value),
            "--lease-lock-name" => builder = builder.rename_lease(LEASE, value),
            "--lease-lock-namespace" => builder = builder.namespace(value),
            "--lease-duration" => config.lease_duration = duration(&value),
            "--renew-deadline" => config.renew_deadline = duration(&value),
            "--retry-period" => config.retry_period = duration(&value),
            "--health-port" => health_port = Some(port(&value)),
            other => usage(&format!("unknown option {other}")),
        }
    }
    let runtime = builder.config(config).build().await?;
    if let Some(port) = health_port {
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
    usage("--health-port needs the standalone server: build with `--features http` (and `metrics`)")
}

fn port(text: &str) -> u16 {
    text.parse()
        .unwrap_or_else(|_| usage(&format!("bad port `{text}`: write a number up to 65535")))
}

async fn client_from(path: &str) -> kube::Client {
    let loaded = async {
        let kubeconfig = Kubeconfig::read_from(path)?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        Ok::<_, Box<dyn std::error::Error>>(kube::Client::try_from(config)?)
    };
    loaded
        .await
        .unwrap_or_else(|error| usage(&format!("--kubeconfig {path}: {error}")))
}

fn duration(text: &str) -> Duration {
    let parsed = match text.strip_suffix("ms") {
        Some(ms) => ms.parse().map(Duration::from_millis),
        None => text.trim_end_matches('s').parse().map(Duration::from_secs),
    };
    parsed.unwrap_or_else(|_| usage(&format!("bad duration `{text}`: write `15s` or `500ms`")))
}

fn usage(problem: &str) -> ! {
    eprintln!("error: {problem}\nsee the header of examples/periodic.rs for the options");
    std::process::exit(2)
}
