//! Leader election with the runtime alone, no attributes: client-go's leader-election example,
//! in Rust.
//!
//! Run three instances against a cluster (or `make control-plane`), each in its own terminal:
//!
//! ```text
//! cargo run --example election -- --kubeconfig=$HOME/.kube/config --id=instance-1 \
//!     --lease-lock-name=my-leader-election-lock --lease-lock-namespace=default
//! ```
//!
//! (then `--id instance-2` and `--id instance-3`). One prints `instance-1: leading
//! my-leader-election-lock (fencing token 0)`; the others print `instance-2: new leader of
//! my-leader-election-lock: instance-1`. Ctrl+C on the leader releases the lease and another
//! instance leads at once; `kill -9` makes them wait until the lease expires (15 s).
//! `kubectl get lease my-leader-election-lock -o yaml` shows the holder.
//!
//! Flags take every form Go's `flag` package does (`--id=instance-1`, `--id instance-1`,
//! `-id instance-1`, `-id=instance-1`); `--help` lists them. `--lease-lock-name` may be a
//! comma-separated list to run one election per name in one runtime, and `--count 1000` runs
//! elections on `NAME-0` ... `NAME-999` for one `--lease-lock-name NAME`; `--lease-duration`,
//! `--renew-deadline` and `--retry-period` take `15s` or `500ms`. `--work-interval 500ms` makes
//! the leader do a unit of work (print `working on ...`) every interval, checking
//! `Leadership::is_leading()` before each one; `--timestamps` starts every line with the
//! machine's monotonic clock (`[<seconds>.<nanoseconds>] `), as the fault campaign
//! (`tests/cluster/faults.rs`) reads them.
//!
//! `--report-interval 1s` prints the process's own view every interval, for the soak
//! (`tests/cluster/soak.rs`), which cannot see it from outside: `instance-1: report: tasks 305,
//! leading 33 of 100, request errors 2 (0 leading), watch errors 0, live ok, ready ok`. *tasks*
//! is tokio's count of alive tasks in this process (`RuntimeMetrics::num_alive_tasks`), *leading*
//! how many of its elections lead, *request errors* how many hold a failed request not yet
//! cleared by a success (`LeaseStatus::last_error`; in brackets, how many of those lead), *watch
//! errors* how many are fed by a failed list or watch (`watch_error`), and *live* and *ready* the
//! verdicts of `Runtime::liveness` (20 s tolerance) and `Runtime::readiness`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use leader::runtime::{Election, Runtime};

#[path = "support/flags.rs"]
mod flags;

/// Leader election with client-go's example flags: one election per lease name, printing who
/// leads.
#[derive(Parser, Debug)]
struct Options {
    #[command(flatten)]
    client_go: flags::ClientGoFlags,
    /// Name of the lease; a comma-separated list runs one election per name in one runtime
    #[arg(
        long,
        value_name = "NAME[,NAME...]",
        value_delimiter = ',',
        default_value = "my-leader-election-lock"
    )]
    lease_lock_name: Vec<String>,
    /// Run N elections, on the leases NAME-0 ... NAME-(N-1) for the one --lease-lock-name NAME
    /// (as `benches/go-electors` takes it), instead of listing thousands of names
    #[arg(long, value_name = "N")]
    count: Option<usize>,
    /// While leading, print `working on ...` every interval, checking that the term goes on
    /// before each one (e.g. 500ms)
    #[arg(long, value_name = "DURATION", value_parser = flags::duration)]
    work_interval: Option<Duration>,
    /// Start every line with the machine's monotonic clock, `[<seconds>.<nanoseconds>] `
    #[arg(long)]
    timestamps: bool,
    /// Every interval, print a `report:` line: alive tokio tasks, elections leading, elections
    /// with a request or watch error, liveness and readiness (e.g. 1s)
    #[arg(long, value_name = "DURATION", value_parser = flags::duration)]
    report_interval: Option<Duration>,
}

impl Options {
    /// The leases to run elections on: `--lease-lock-name`'s, or `--count` of them. Exits with
    /// status 2, as for any other flag mistake, if `--count` comes with a list of names.
    fn lease_names(&self) -> Vec<String> {
        match (self.count, self.lease_lock_name.as_slice()) {
            (None, names) => names.to_vec(),
            (Some(count), [prefix]) => (0..count).map(|i| format!("{prefix}-{i}")).collect(),
            (Some(_), _) => {
                let message = "--count takes a single --lease-lock-name: the prefix of the names\n";
                clap::Error::raw(clap::error::ErrorKind::ArgumentConflict, message).exit()
            }
        }
    }
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
    // By default: warnings, and what the runtime says about the API server's reachability and
    // its elections. Not kube-client's own log, which has a line for every failed request (the
    // runtime says the same once per problem, then every 30 s, and when it ends).
    let default_filter = "warn,leader_runtime=info,kube_client=off";
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .init();
    let options: Options = flags::parse();
    TIMESTAMPS.store(options.timestamps, Ordering::Relaxed);
    let lease_names = options.lease_names();

    let runtime = options
        .client_go
        .apply(Runtime::builder())
        .await
        .build()
        .await?;

    for name in &lease_names {
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

    let signal = leader::runtime::shutdown_signal();
    match options.report_interval {
        Some(every) => {
            tokio::select! {
                _ = signal => {}
                () = report_forever(&runtime, every) => {}
            }
        }
        None => {
            signal.await;
        }
    }
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

/// Prints every change of leader, as client-go's `OnNewLeader` callback does. It follows
/// `leader_changes()`, which changes with the holder (not with every renew, as `status()` does).
async fn report_new_leaders(election: Election, me: String) {
    let mut leaders = election.leader_changes();
    let mut last = None;
    loop {
        let holder = leaders
            .borrow_and_update()
            .as_ref()
            .map(|leader| leader.identity.clone());
        if holder != last {
            match &holder {
                Some(holder) if *holder != me => {
                    say!("{me}: new leader of {}: {holder}", election.key().name);
                }
                _ => {}
            }
            last = holder;
        }
        if leaders.changed().await.is_err() {
            return;
        }
    }
}

/// Prints a `report:` line every `every` (see the header), until the future is dropped. It runs
/// in `main`'s own task, so it adds no task to the count it reports.
async fn report_forever(runtime: &Runtime, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ok = |verdict: leader::runtime::Verdict| {
        if verdict.is_healthy() {
            "ok"
        } else {
            "failing"
        }
    };
    loop {
        ticks.tick().await;
        let tasks = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        let elections = runtime.elections();
        let (mut leading, mut request_errors, mut leader_errors, mut watch_errors) = (0, 0, 0, 0);
        for election in &elections {
            let status = election.status().borrow().clone();
            let failed = status.last_error.is_some();
            leading += usize::from(status.is_leader);
            request_errors += usize::from(failed);
            leader_errors += usize::from(failed && status.is_leader);
            watch_errors += usize::from(status.watch_error.is_some());
        }
        say!(
            "{}: report: tasks {tasks}, leading {leading} of {}, request errors {request_errors} \
             ({leader_errors} leading), watch errors {watch_errors}, live {}, ready {}",
            runtime.identity(),
            elections.len(),
            ok(runtime.liveness(leader::runtime::DEFAULT_HEALTH_TOLERANCE)),
            ok(runtime.readiness()),
        );
    }
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
