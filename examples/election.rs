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
//! `500ms`. `--work-interval 500ms` makes the leader do a unit of work (print `working on ...`)
//! every interval, checking `Leadership::is_leading()` before each one; `--timestamps` starts
//! every line with the machine's monotonic clock (`[<seconds>.<nanoseconds>] `), as the fault
//! campaign (`tests/cluster/faults.rs`) reads them.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};
use leader::runtime::{Election, ElectionConfig, Runtime};

struct Options {
    kubeconfig: Option<PathBuf>,
    id: Option<String>,
    leases: Vec<String>,
    namespace: Option<String>,
    config: ElectionConfig,
    work_interval: Option<Duration>,
    timestamps: bool,
}

/// Set from `--timestamps` before anything is printed.
static TIMESTAMPS: AtomicBool = AtomicBool::new(false);

/// Prints one line of output, after the monotonic clock under `--timestamps`.
macro_rules! say {
    ($($arg:tt)*) => {
        print_line(format_args!($($arg)*))
    };
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
    TIMESTAMPS.store(options.timestamps, Ordering::Relaxed);

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
        tokio::spawn(lead_forever(
            election,
            runtime.identity().to_owned(),
            options.work_interval,
        ));
    }

    leader::runtime::shutdown_signal().await;
    say!("{}: shutting down", runtime.identity());
    runtime.shutdown().await;
    say!("{}: released", runtime.identity());
    Ok(())
}

/// Leads whenever possible, working until the leadership token fires.
async fn lead_forever(election: Election, me: String, work_interval: Option<Duration>) {
    let lease = election.key().name.clone();
    loop {
        let result = election
            .lead({
                let (me, lease) = (me.clone(), lease.clone());
                move |leadership| async move {
                    let token = leadership.fencing_token();
                    say!("{me}: leading {lease} (fencing token {token})");
                    if let Some(every) = work_interval {
                        // `is_leading()` reads the clock: a process resumed after a pause
                        // longer than its renew deadline stops here, before another unit.
                        while leadership.is_leading() {
                            say!("{me}: working on {lease} (fencing token {token})");
                            tokio::select! {
                                () = leadership.token().cancelled() => {}
                                () = tokio::time::sleep(every) => {}
                            }
                        }
                    }
                    leadership.token().cancelled().await;
                    say!("{me}: stopped leading {lease}");
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
                    say!("{me}: new leader of {}: {holder}", election.key().name);
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
        work_interval: None,
        timestamps: false,
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
            "--work-interval" => options.work_interval = Some(parse_duration(&value()?)?),
            "--timestamps" => options.timestamps = true,
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

fn print_line(line: std::fmt::Arguments<'_>) {
    match TIMESTAMPS
        .load(Ordering::Relaxed)
        .then(monotonic_now)
        .flatten()
    {
        Some((seconds, nanoseconds)) => println!("[{seconds}.{nanoseconds:09}] {line}"),
        None => println!("{line}"),
    }
}

/// The machine's monotonic clock (`CLOCK_MONOTONIC`, which `Instant` reads on Linux) as seconds
/// and nanoseconds, the clock the Go peer stamps its lines with too. `std` has no accessor for
/// the raw reading and this workspace forbids `unsafe`, so it comes from `Instant`'s `Debug`
/// form, `Instant { tv_sec: 12, tv_nsec: 345 }`; `None` if that form ever changes.
fn monotonic_now() -> Option<(u64, u32)> {
    let text = format!("{:?}", Instant::now());
    let field = |name: &str| {
        let start = text.find(name)? + name.len();
        let digits: String = text[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse::<u64>().ok()
    };
    let nanoseconds = u32::try_from(field("tv_nsec: ")?).ok()?;
    Some((field("tv_sec: ")?, nanoseconds))
}
