//! Leader election with the runtime alone, no attributes: client-go's leader-election example,
//! in Rust.
//!
//! Run three instances against a cluster (or `make control-plane`), each in its own terminal:
//!
//! ```text
//! cargo run --example election -- --kubeconfig ~/.kube/config --id instance-1 \
//!     --lease-lock-name my-leader-election-lock --lease-lock-namespace default
//! ```
//!
//! (then `--id instance-2` and `--id instance-3`). One prints `instance-1: leading
//! my-leader-election-lock (fencing token 0)`; the others print `instance-2: new leader of
//! my-leader-election-lock: instance-1`. Ctrl+C on the leader releases the lease and another
//! instance leads at once; `kill -9` makes them wait until the lease expires (15 s).
//! `kubectl get lease my-leader-election-lock -o yaml` shows the holder.
//!
//! Options: `--lease-lock-name` may be a comma-separated list to run one election per name in
//! one runtime; `--lease-duration`, `--renew-deadline` and `--retry-period` take `15s` or
//! `500ms`.

use std::path::PathBuf;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use leader::runtime::{Election, ElectionConfig, Runtime};

struct Options {
    kubeconfig: Option<PathBuf>,
    id: Option<String>,
    leases: Vec<String>,
    namespace: Option<String>,
    config: ElectionConfig,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let options = parse_options()?;

    let mut builder = Runtime::builder().config(options.config);
    if let Some(path) = &options.kubeconfig {
        let kubeconfig = Kubeconfig::read_from(path)?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        builder = builder.client(kube::Client::try_from(config)?);
    }
    if let Some(id) = options.id {
        builder = builder.identity(id);
    }
    if let Some(namespace) = options.namespace {
        builder = builder.namespace(namespace);
    }
    let runtime = builder.build().await?;

    for name in &options.leases {
        let election = runtime.election(name)?;
        tokio::spawn(report_new_leaders(
            election.clone(),
            runtime.identity().to_owned(),
        ));
        tokio::spawn(lead_forever(election, runtime.identity().to_owned()));
    }

    leader::runtime::shutdown_signal().await;
    println!("{}: shutting down", runtime.identity());
    runtime.shutdown().await;
    println!("{}: released", runtime.identity());
    Ok(())
}

/// Leads whenever possible, working until the leadership token fires.
async fn lead_forever(election: Election, me: String) {
    let lease = election.key().name.clone();
    loop {
        let result = election
            .lead(|leadership| {
                let (me, lease) = (me.clone(), lease.clone());
                async move {
                    println!(
                        "{me}: leading {lease} (fencing token {})",
                        leadership.fencing_token()
                    );
                    leadership.token().cancelled().await;
                    println!("{me}: stopped leading {lease}");
                }
            })
            .await;
        if let Err(error) = result {
            if matches!(error, leader::runtime::Error::ShutDown { .. }) {
                return;
            }
            eprintln!("{me}: {error}");
        }
    }
}

/// Prints every change of leader, as client-go's `OnNewLeader` callback does.
async fn report_new_leaders(election: Election, me: String) {
    let mut status = election.status();
    let mut last = None;
    loop {
        let holder = status.borrow_and_update().holder.clone();
        if holder != last {
            match &holder {
                Some(holder) if *holder != me => {
                    println!("{me}: new leader of {}: {holder}", election.key().name);
                }
                _ => {}
            }
            last = holder;
        }
        if status.changed().await.is_err() {
            return;
        }
    }
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        kubeconfig: None,
        id: None,
        leases: vec!["my-leader-election-lock".into()],
        namespace: None,
        config: ElectionConfig::default(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--kubeconfig" => options.kubeconfig = Some(value()?.into()),
            "--id" => options.id = Some(value()?),
            "--lease-lock-name" => {
                options.leases = value()?.split(',').map(str::to_owned).collect()
            }
            "--lease-lock-namespace" => options.namespace = Some(value()?),
            "--lease-duration" => options.config.lease_duration = parse_duration(&value()?)?,
            "--renew-deadline" => options.config.renew_deadline = parse_duration(&value()?)?,
            "--retry-period" => options.config.retry_period = parse_duration(&value()?)?,
            other => {
                return Err(format!(
                    "unknown option {other}; see the header of examples/election.rs"
                ));
            }
        }
    }
    Ok(options)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let parsed = if let Some(ms) = text.strip_suffix("ms") {
        ms.parse().map(Duration::from_millis)
    } else if let Some(s) = text.strip_suffix('s') {
        s.parse().map(Duration::from_secs)
    } else {
        return Err(format!("duration `{text}` needs a unit: `15s` or `500ms`"));
    };
    parsed.map_err(|error| format!("duration `{text}`: {error}"))
}
