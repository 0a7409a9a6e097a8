//! The soak: three processes of `examples/election.rs` contend for the same 100 Leases while a
//! fault forces a handover every few seconds, in whole fault cycles for `LEADER_SOAK_MINUTES`
//! (default 1, the short run `make test` does; `make soak` runs 30), at least three cycles.
//! Checked at the end, failing loudly otherwise: no two leaderships of a lease overlap, the
//! long-lived processes' RSS, open file descriptors and tokio tasks stay flat after warm-up, and
//! nothing is left unrecovered.
//!
//! The processes: `long-1` and `long-2` live for the whole soak and reach kube-apiserver through
//! a toxiproxy proxy each; the third is restarted after every signal, a new process with a new
//! identity each time (`short-1`, `short-2`, ...), so that its leases really go to the others.
//! A cycle of faults: a toxiproxy cut of the long-lived process that leads the most leases (held
//! until every lease is led by another process, then 1 s more), SIGTERM of the restarted
//! process, another cut, SIGKILL of the restarted process; each signalled process is replaced at
//! once. A restarted process starts as a follower and leads only what a cut hands it, which is
//! why a cut comes before each signal. After every fault, the soak waits until every lease is
//! led again (that time is the fault's recovery), then 2 s.
//!
//! Every process runs with the fast test timings, `--timestamps` and `--report-interval 1s`:
//! once a second it prints tokio's count of alive tasks, how many leases it leads, how many of
//! its elections hold an error, and its liveness and readiness (see the example's header). RSS
//! (`VmRSS`) and open file descriptors come from `/proc/<pid>`, sampled once a second.
//!
//! Checks:
//! - **Exclusive leadership**: the leadership intervals of each lease over every process (the
//!   checker of `leadership.rs`, as the fault campaign uses it) do not overlap and their fencing
//!   tokens go up; every takeover the API server committed came after a release or a full lease
//!   duration after the last renew (`lease_history::check_takeovers`).
//! - **Flat resources** (`resources.rs` says what is judged and why): for `long-1` and
//!   `long-2`, RSS, file descriptors other than sockets, and alive tasks other than the
//!   per-term and per-connection ones within 5 % between the first window after warm-up and
//!   the last; the sockets (the HTTP connection pool, which swings with every takeover) with a
//!   last window's peak no more than 5 % above the peak before it, in windows of 90 s or more
//!   (`make soak`'s; the one-minute run's are too short, see `resources.rs`, and shows the
//!   peaks). The restarted processes are not judged: each lives for two faults, less than the
//!   warm-up; their peaks are reported.
//! - **Nothing unrecovered**: every fault recovered (every lease led again within 30 s); after
//!   the last one, every process still runs, is live and ready with every watch back and no
//!   leader holding a failed request, the processes' leases add up to 100 with one leader each,
//!   the API server's last record of each lease names that leader and was renewed within the
//!   lease duration, and every process exits with status 0 on SIGTERM.
//!
//! The report (`report.rs`: Markdown, with an SVG plot beside it drawn by `plot.rs`) goes to
//! `LEADER_SOAK_REPORT` (`make soak`: `docs/soak.md`), else to `target/soak/soak.md`; the raw
//! samples always to `target/soak/samples.csv`, and each process's standard error to
//! `target/soak/logs/<id>.log`. They are written before the checks fail the test.

mod report;
mod resources;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kube::api::Api;

use crate::leadership::{
    Transcript, check_fencing_tokens, leadership_intervals, line_time, overlapping_pairs, report,
    stamped,
};
use crate::lease_history::{LeaseHistory, Renewals, check_takeovers};
use crate::support::{
    Candidate, ControlPlane, FAST_TIMINGS, Identity, Implementation, RemoveOnDrop, control_plane,
};
use crate::toxiproxy::{self, Toxiproxy};

use report::Summary;
use resources::{Series, Windows};

const SECOND: Duration = Duration::from_secs(1);
const MILLISECOND: Duration = Duration::from_millis(1);
/// Leases, all contended by every process.
const LEASES: usize = 100;
/// The lease duration of [`FAST_TIMINGS`].
const LEASE_DURATION: Duration = Duration::from_secs(4);
/// `--report-interval` of every process.
const REPORT_INTERVAL: &str = "1s";
/// How often RSS and file descriptors are read from `/proc`.
const SAMPLE_EVERY: Duration = SECOND;
/// The pause between one fault's recovery and the next fault.
const PAUSE: Duration = Duration::from_secs(2);
/// How long every lease may go without a leader after a fault.
const RECOVERY_LIMIT: Duration = Duration::from_secs(30);
/// Fault cycles a soak runs at least: a warm-up and two windows to compare.
const MIN_CYCLES: usize = 3;
/// What the lines of `examples/election.rs` that the soak reads contain.
const LEADING: &str = ": leading ";
const STOPPED: &str = ": stopped leading ";
const REPORT: &str = ": report: ";

// ---------------------------------------------------------------------------------------------
// Settings.

/// How the soak runs, from the environment.
struct Settings {
    /// Faults run in whole cycles until this has passed (`LEADER_SOAK_MINUTES`).
    duration: Duration,
    /// The Markdown report; the plot goes beside it with the extension `svg`.
    report: PathBuf,
    /// Who ran it, for the report's header.
    run_by: &'static str,
}

/// `LEADER_SOAK_MINUTES` (default 1, at least 1) and `LEADER_SOAK_REPORT` (default
/// `target/soak/soak.md`).
fn settings() -> Settings {
    let minutes = match std::env::var("LEADER_SOAK_MINUTES") {
        Ok(text) => text
            .parse::<f64>()
            .ok()
            .filter(|&minutes| minutes >= 1.0)
            .unwrap_or_else(|| panic!("LEADER_SOAK_MINUTES={text:?} is not a number >= 1")),
        Err(_) => 1.0,
    };
    let (report, run_by) = match std::env::var_os("LEADER_SOAK_REPORT") {
        Some(path) => (PathBuf::from(path), "`make soak`"),
        None => (
            target_dir().join("soak").join("soak.md"),
            "the short soak of `make test`",
        ),
    };
    Settings {
        duration: Duration::from_secs_f64(minutes * 60.0),
        report,
        run_by,
    }
}

/// `target/` of this build: the test binary is `target/<profile>/deps/<test>`.
fn target_dir() -> PathBuf {
    let test_binary = std::env::current_exe().expect("locating the test binary");
    test_binary
        .ancestors()
        .nth(3)
        .expect("target/<profile>/deps/<test>")
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// The processes.

/// What a fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    /// toxiproxy cuts the connection of the long-lived process that leads the most leases.
    Cut,
    /// SIGTERM to the restarted process, which releases its leases; then a new one.
    Term,
    /// SIGKILL to the restarted process, whose leases expire; then a new one.
    Kill,
}

impl Fault {
    /// The faults in turn.
    const CYCLE: [Fault; 4] = [Fault::Cut, Fault::Term, Fault::Cut, Fault::Kill];

    /// The row title in the report.
    fn title(self) -> &'static str {
        match self {
            Fault::Cut => "toxiproxy cut of the long-lived leader of most leases",
            Fault::Term => "SIGTERM of the restarted process, then a new one",
            Fault::Kill => "SIGKILL of the restarted process, then a new one",
        }
    }

    /// The short name in messages and the plot's legend.
    fn name(self) -> &'static str {
        match self {
            Fault::Cut => "cut",
            Fault::Term => "SIGTERM",
            Fault::Kill => "SIGKILL",
        }
    }
}

/// One fault as injected.
struct Injected {
    fault: Fault,
    target: String,
    at: Instant,
    /// Leases the target led when it was hit.
    led: usize,
    /// From the fault until every lease was led again; `None` if that did not happen in time.
    recovered: Option<Duration>,
}

/// One line of `--report-interval`.
#[derive(Clone, Debug)]
struct Report {
    at: Instant,
    tasks: usize,
    leading: usize,
    elections: usize,
    /// Elections holding a failed request not yet cleared by a success.
    request_errors: usize,
    /// Of those, the ones that lead.
    leader_errors: usize,
    watch_errors: usize,
    live: bool,
    ready: bool,
}

/// One reading of `/proc/<pid>`.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    rss_kib: u64,
    fds: usize,
    /// Of `fds`, the sockets.
    sockets: usize,
}

/// A candidate process and what the soak learnt about it.
struct Replica {
    candidate: Candidate,
    /// The long-lived processes' toxiproxy proxy; `None` for a restarted one.
    proxy: Option<String>,
    started: Instant,
    /// When it was seen to have exited, and whether with status 0.
    exited: Option<(Instant, bool)>,
    killed_at: Option<Instant>,
    /// Lines of `candidate.seen` already looked at.
    read: usize,
    /// The leases whose last leadership line says it leads them.
    leading: BTreeSet<String>,
    reports: Vec<Report>,
    samples: Vec<Sample>,
    /// Output the soak could not read.
    garbled: Vec<String>,
}

impl Replica {
    /// Its identity, the lease holder's name.
    fn id(&self) -> &str {
        &self.candidate.id
    }

    /// `long-1` or `long-2`, not a restarted one.
    fn is_long_lived(&self) -> bool {
        self.proxy.is_some()
    }

    /// Whether it has not been seen to exit.
    fn running(&self) -> bool {
        self.exited.is_none()
    }

    /// Takes in what it printed since the last call.
    fn update(&mut self) {
        self.candidate.drain();
        for (read_at, line) in &self.candidate.seen[self.read..] {
            let (at, text) = line_time(*read_at, line);
            if let Some(lease) = leading_lease(text) {
                self.leading.insert(lease.to_owned());
            } else if let Some((_, lease)) = text.split_once(STOPPED) {
                self.leading.remove(lease);
            } else if text.contains(REPORT) {
                match parse_report(at, text) {
                    Some(report) => self.reports.push(report),
                    None => self.garbled.push(text.to_owned()),
                }
            }
        }
        self.read = self.candidate.seen.len();
    }

    /// Reads RSS and open file descriptors from `/proc`, unless it has exited.
    fn sample(&mut self, at: Instant) {
        if self.running()
            && let Some(sample) = sample(self.candidate.pid(), at)
        {
            self.samples.push(sample);
        }
    }

    /// Waits up to `limit` for it to exit, noting when; whether it did.
    async fn await_exit(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(success) = self.candidate.try_wait() {
                self.exited = Some((Instant::now(), success));
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(10 * MILLISECOND).await;
        }
    }
}

/// The lease of a `<id>: leading <lease> (fencing token <n>)` line.
fn leading_lease(text: &str) -> Option<&str> {
    let (_, rest) = text.split_once(LEADING)?;
    rest.split_once(" (fencing token ").map(|(lease, _)| lease)
}

/// `<id>: report: tasks 305, leading 33 of 100, request errors 2 (0 leading), watch errors 0,
/// live ok, ready ok`.
fn parse_report(at: Instant, text: &str) -> Option<Report> {
    let (_, rest) = text.split_once(REPORT)?;
    let mut fields = rest.split(", ");
    let mut field = |name: &str| fields.next()?.strip_prefix(name)?.strip_prefix(' ');
    let tasks = field("tasks")?.parse().ok()?;
    let (leading, elections) = field("leading")?.split_once(" of ")?;
    let (request_errors, leader_errors) = field("request errors")?.split_once(" (")?;
    let leader_errors = leader_errors.strip_suffix(" leading)")?.parse().ok()?;
    let watch_errors = field("watch errors")?.parse().ok()?;
    let live = field("live")? == "ok";
    let ready = field("ready")? == "ok";
    Some(Report {
        at,
        tasks,
        leading: leading.parse().ok()?,
        elections: elections.parse().ok()?,
        request_errors: request_errors.parse().ok()?,
        leader_errors,
        watch_errors,
        live,
        ready,
    })
}

/// RSS and open file descriptors of process `pid`; `None` once it has exited.
fn sample(pid: u32, at: Instant) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    let (mut fds, mut sockets) = (0, 0);
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        fds += 1;
        let target = std::fs::read_link(entry.path()).unwrap_or_default();
        sockets += usize::from(target.to_string_lossy().starts_with("socket:"));
    }
    Some(Sample {
        at,
        rss_kib,
        fds,
        sockets,
    })
}

// ---------------------------------------------------------------------------------------------
// The soak.

struct Soak<'a> {
    plane: &'a ControlPlane,
    toxiproxy: Toxiproxy,
    work_dir: PathBuf,
    /// Where each process's standard error goes, `<id>.log`.
    logs: PathBuf,
    namespace: String,
    leases: Vec<String>,
    processes: Vec<Replica>,
    injected: Vec<Injected>,
    history: LeaseHistory,
    began: Instant,
    /// When each cycle of [`Fault::CYCLE`] began.
    cycle_starts: Vec<Instant>,
    last_sample: Instant,
    restarts: usize,
    /// What went wrong on the way, for the verdict.
    failures: Vec<String>,
    /// At the end, per process, the followers still showing a request that failed (see the
    /// report's findings).
    stale_errors: Vec<(String, usize)>,
}

impl<'a> Soak<'a> {
    /// Starts toxiproxy, the history watch and the three processes, and waits until every lease
    /// is led and every process ready.
    async fn start(plane: &'a ControlPlane, work_dir: PathBuf) -> Soak<'a> {
        let toxiproxy = Toxiproxy::start(
            &plane.bin_dir().join("toxiproxy"),
            &work_dir.join("toxiproxy.log"),
        );
        let namespace = plane.namespace("soak").await;
        let api = Api::namespaced(plane.client(Identity::Admin).await, &namespace);
        let history = LeaseHistory::record(api, None, Renewals::Latest);
        let logs = target_dir().join("soak").join("logs");
        let _ = std::fs::remove_dir_all(&logs);
        std::fs::create_dir_all(&logs)
            .unwrap_or_else(|error| panic!("creating {}: {error}", logs.display()));
        let began = Instant::now();
        let mut soak = Soak {
            plane,
            toxiproxy,
            work_dir,
            logs,
            namespace,
            leases: (0..LEASES).map(|i| format!("lease-{i:03}")).collect(),
            processes: Vec::new(),
            injected: Vec::new(),
            history,
            began,
            cycle_starts: Vec::new(),
            last_sample: began - SAMPLE_EVERY,
            restarts: 0,
            failures: Vec::new(),
            stale_errors: Vec::new(),
        };
        soak.launch("long-1", true);
        soak.launch("long-2", true);
        soak.launch_restarted();
        let ready = soak
            .wait_until(60 * SECOND, |soak| soak.all_led() && soak.all_ready())
            .await;
        assert!(
            ready.is_some(),
            "soak: the three processes did not lead every lease and report ready within 60 s:\n{}",
            soak.status()
        );
        soak
    }

    /// Starts process `id`, through a proxy of its own when `long_lived`.
    fn launch(&mut self, id: &str, long_lived: bool) {
        let mut options = Vec::new();
        let proxy = long_lived.then(|| {
            let proxy = format!("{}-{id}", self.namespace);
            let kubeconfig = self
                .toxiproxy
                .proxied_kubeconfig(self.plane, &proxy, &self.work_dir);
            // The last --kubeconfig wins over the admin one `Candidate` passes first.
            options.push("--kubeconfig".to_owned());
            options.push(kubeconfig.to_str().expect("a UTF-8 path").to_owned());
            proxy
        });
        options.extend(FAST_TIMINGS.map(String::from));
        options.extend(["--timestamps", "--report-interval", REPORT_INTERVAL].map(String::from));
        let options: Vec<&str> = options.iter().map(String::as_str).collect();
        let log = self.logs.join(format!("{id}.log"));
        let candidate = Candidate::start_logging_to(
            self.plane,
            id,
            &self.namespace,
            &self.leases,
            &options,
            &log,
        );
        self.processes.push(Replica {
            candidate,
            proxy,
            started: Instant::now(),
            exited: None,
            killed_at: None,
            read: 0,
            leading: BTreeSet::new(),
            reports: Vec::new(),
            samples: Vec::new(),
            garbled: Vec::new(),
        });
    }

    /// Starts the next restarted process, `short-<n>`.
    fn launch_restarted(&mut self) {
        self.restarts += 1;
        self.launch(&format!("short-{}", self.restarts), false);
    }

    /// Reads every process's output, and `/proc` when a sample is due.
    fn tick(&mut self) {
        let now = Instant::now();
        let due = now.duration_since(self.last_sample) >= SAMPLE_EVERY;
        if due {
            self.last_sample = now;
        }
        for process in &mut self.processes {
            process.update();
            if due {
                process.sample(now);
            }
        }
    }

    /// Keeps reading and sampling until `done` holds, for up to `limit`; how long it took.
    async fn wait_until(
        &mut self,
        limit: Duration,
        done: impl Fn(&Self) -> bool,
    ) -> Option<Duration> {
        let start = Instant::now();
        loop {
            self.tick();
            if done(self) {
                return Some(start.elapsed());
            }
            if start.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(50 * MILLISECOND).await;
        }
    }

    /// Keeps reading and sampling for `duration`.
    async fn idle(&mut self, duration: Duration) {
        self.wait_until(duration, |_| false).await;
    }

    /// The processes that have not exited.
    fn running(&self) -> impl Iterator<Item = &Replica> {
        self.processes.iter().filter(|p| p.running())
    }

    /// Whether every lease is led by exactly one running process, by their output.
    fn all_led(&self) -> bool {
        self.leases
            .iter()
            .all(|lease| self.running().filter(|p| p.leading.contains(lease)).count() == 1)
    }

    /// Whether every running process's last report says it is ready.
    fn all_ready(&self) -> bool {
        self.running()
            .all(|p| p.reports.last().is_some_and(|report| report.ready))
    }

    /// The index of the process `id`.
    fn index(&self, id: &str) -> usize {
        self.processes
            .iter()
            .position(|p| p.id() == id)
            .expect("a process of the soak")
    }

    /// The running restarted process.
    fn restarted(&self) -> usize {
        self.processes
            .iter()
            .rposition(|p| !p.is_long_lived() && p.running())
            .expect("a restarted process runs")
    }

    /// Who leads how many leases, for messages.
    fn status(&self) -> String {
        let mut text = String::new();
        for process in self.running() {
            let _ = writeln!(
                text,
                "  {}: leads {} lease(s); last report {:?}",
                process.id(),
                process.leading.len(),
                process.reports.last()
            );
        }
        let unled: Vec<&String> = self
            .leases
            .iter()
            .filter(|lease| !self.running().any(|p| p.leading.contains(*lease)))
            .collect();
        let _ = writeln!(text, "  leases nobody leads: {unled:?}");
        text
    }

    /// Injects `fault`, waits until every lease is led again and records it.
    async fn inject(&mut self, fault: Fault) {
        let (target, at) = match fault {
            Fault::Cut => {
                // The restarted process must be ready to take a share.
                let restarted = self.restarted();
                let ready = move |soak: &Self| {
                    soak.processes[restarted]
                        .reports
                        .last()
                        .is_some_and(|report| report.ready)
                };
                if self.wait_until(20 * SECOND, ready).await.is_none() {
                    let id = self.processes[restarted].id().to_owned();
                    self.failures.push(format!(
                        "{id} did not report ready within 20 s of its start"
                    ));
                }
                let target = self
                    .processes
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.is_long_lived())
                    .max_by_key(|(_, p)| p.leading.len())
                    .map(|(i, _)| i)
                    .expect("two long-lived processes");
                let proxy = self.processes[target].proxy.clone().expect("a proxy");
                let toxics = toxiproxy::cut();
                self.toxiproxy.add_toxics(&proxy, &toxics);
                let at = Instant::now();
                let moved = self
                    .wait_until(20 * SECOND, |soak| {
                        soak.processes[target].leading.is_empty() && soak.all_led()
                    })
                    .await;
                if moved.is_some() {
                    // Let the cut process run into the fault a little longer.
                    self.idle(SECOND).await;
                }
                self.toxiproxy.remove_toxics(&proxy, &toxics);
                (target, at)
            }
            Fault::Term | Fault::Kill => {
                let target = self.restarted();
                let signal = if fault == Fault::Term { "TERM" } else { "KILL" };
                self.processes[target].candidate.signal(signal);
                let at = Instant::now();
                if fault == Fault::Kill {
                    self.processes[target].killed_at = Some(at);
                }
                if !self.processes[target].await_exit(15 * SECOND).await {
                    let process = &mut self.processes[target];
                    self.failures.push(format!(
                        "{} did not exit within 15 s of SIGTERM; killed",
                        process.id()
                    ));
                    process.candidate.signal("KILL");
                    process.killed_at = Some(Instant::now());
                    process.await_exit(15 * SECOND).await;
                }
                let process = &mut self.processes[target];
                process.candidate.read_to_end(10 * SECOND).await;
                process.update();
                if fault == Fault::Term && process.exited.is_some_and(|(_, success)| !success) {
                    self.failures
                        .push(format!("{} exited with a failure on SIGTERM", process.id()));
                }
                self.launch_restarted();
                (target, at)
            }
        };
        let led = self.leading_at(target, at);
        let recovered = self
            .wait_until(RECOVERY_LIMIT, Soak::all_led)
            .await
            .map(|_| at.elapsed());
        let target = self.processes[target].id().to_owned();
        if recovered.is_none() {
            self.failures.push(format!(
                "after the {} of {target} at {:.1} s, not every lease had one leader within {} \
                 s:\n{}",
                fault.name(),
                self.seconds(at),
                RECOVERY_LIMIT.as_secs(),
                self.status()
            ));
        }
        self.injected.push(Injected {
            fault,
            target,
            at,
            led,
            recovered,
        });
    }

    /// How many leases process `index` led at `at`, by its stamped output.
    fn leading_at(&self, index: usize, at: Instant) -> usize {
        let mut leading = BTreeSet::new();
        for (read_at, line) in &self.processes[index].candidate.seen {
            let (when, text) = line_time(*read_at, line);
            if when > at {
                break;
            }
            if let Some(lease) = leading_lease(text) {
                leading.insert(lease);
            } else if let Some((_, lease)) = text.split_once(STOPPED) {
                leading.remove(lease);
            }
        }
        leading.len()
    }

    /// `at` in seconds since the processes started.
    fn seconds(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.began).as_secs_f64()
    }

    /// After the last fault: waits for every lease to be led and fresh reports, then checks that
    /// nothing is left unrecovered. Returns the checks, each with whether it passed.
    async fn final_state(&mut self) -> Vec<Check> {
        let mut checks = Vec::new();
        let settled = self.wait_until(RECOVERY_LIMIT, Soak::all_led).await;
        checks.push((
            format!(
                "every lease led by exactly one process within {} s of the last fault",
                RECOVERY_LIMIT.as_secs()
            ),
            match settled {
                Some(_) => Ok(()),
                None => Err(self.status()),
            },
        ));
        // Reports and renews from after the settling.
        let settled_at = Instant::now();
        self.wait_until(10 * SECOND, |soak| {
            soak.running().all(|p| {
                p.reports
                    .last()
                    .is_some_and(|report| report.at > settled_at + SECOND)
            })
        })
        .await;

        let mut problems = Vec::new();
        for process in &mut self.processes {
            if process.running()
                && let Some(success) = process.candidate.try_wait()
            {
                problems.push(format!(
                    "{} exited by itself (status 0: {success})",
                    process.id()
                ));
                process.exited = Some((Instant::now(), success));
            }
        }
        checks.push(("every process still runs".into(), result_of(problems)));

        let mut problems = Vec::new();
        let mut stale = Vec::new();
        for process in self.running() {
            match process.reports.last() {
                Some(report) if report.at > settled_at => {
                    if report.leader_errors + report.watch_errors > 0
                        || !report.live
                        || !report.ready
                    {
                        problems.push(format!("{}: {report:?}", process.id()));
                    }
                    if report.request_errors > 0 {
                        stale.push((process.id().to_owned(), report.request_errors));
                    }
                    if report.leading != process.leading.len() || report.elections != LEASES {
                        problems.push(format!(
                            "{} reports leading {} of {}, its output says {} of {LEASES}",
                            process.id(),
                            report.leading,
                            report.elections,
                            process.leading.len()
                        ));
                    }
                }
                other => problems.push(format!(
                    "{}: no report since the soak settled (last {other:?})",
                    process.id()
                )),
            }
        }
        checks.push((
            "every process reports live and ready, every watch back, no leader with a failed \
             request"
                .into(),
            result_of(problems),
        ));
        self.stale_errors = stale;

        let mut problems = Vec::new();
        let now = Instant::now();
        let history = self.history.all();
        for lease in &self.leases {
            let leaders: Vec<&str> = self
                .running()
                .filter(|p| p.leading.contains(lease))
                .map(Replica::id)
                .collect();
            let last = history.get(lease).and_then(|records| records.last());
            match (leaders.as_slice(), last) {
                ([leader], Some(record)) if record.holder.as_deref() == Some(*leader) => {
                    let since = now.saturating_duration_since(record.seen_at);
                    if since > LEASE_DURATION {
                        problems.push(format!(
                            "{lease}: {leader}'s last renew was seen {since:?} ago"
                        ));
                    }
                }
                _ => problems.push(format!(
                    "{lease}: led by {leaders:?} by their output, the API server's last record \
                     {last:?}"
                )),
            }
        }
        checks.push((
            "every lease's holder at the API server is its one leader, renewed within the lease \
             duration"
                .into(),
            result_of(problems),
        ));
        checks
    }

    /// Stops every running process with SIGTERM and reads the rest of its output; whether each
    /// exited with status 0 within 15 s.
    async fn stop(&mut self) -> Result<(), String> {
        let mut problems = Vec::new();
        for process in self.processes.iter().filter(|p| p.running()) {
            process.candidate.signal("TERM");
        }
        for process in &mut self.processes {
            if !process.running() {
                continue;
            }
            if !process.await_exit(15 * SECOND).await {
                problems.push(format!(
                    "{} did not exit within 15 s of SIGTERM",
                    process.id()
                ));
                process.candidate.signal("KILL");
                process.killed_at = Some(Instant::now());
                process.await_exit(15 * SECOND).await;
            } else if process.exited.is_some_and(|(_, success)| !success) {
                problems.push(format!("{} exited with a failure", process.id()));
            }
            process.candidate.read_to_end(10 * SECOND).await;
            process.update();
        }
        self.history.stop();
        for process in &self.processes {
            if let Some(proxy) = &process.proxy {
                self.toxiproxy.delete_proxy(proxy);
            }
        }
        result_of(problems)
    }

    /// The leadership checks over every lease: intervals from every process's stamped output
    /// (no overlap, tokens up), and the API server's takeovers. Returns the checks and the number
    /// of intervals and of takeovers.
    fn leadership(&self) -> (Vec<Check>, usize, usize) {
        // Each process's leadership lines, by lease.
        let mut lines: Vec<BTreeMap<&str, Vec<(Instant, String)>>> = Vec::new();
        let mut unstamped = Vec::new();
        for process in &self.processes {
            let mut by_lease: BTreeMap<&str, Vec<(Instant, String)>> = BTreeMap::new();
            for (read_at, line) in &process.candidate.seen {
                let lease = match stamped(line) {
                    Some((_, text)) => leading_lease(text)
                        .or_else(|| text.split_once(STOPPED).map(|(_, lease)| lease)),
                    None => {
                        if line.contains(LEADING) || line.contains(STOPPED) {
                            unstamped.push(format!("{}: {line:?}", process.id()));
                        }
                        None
                    }
                };
                if let Some(lease) = lease {
                    by_lease
                        .entry(lease)
                        .or_default()
                        .push((*read_at, line.clone()));
                }
            }
            lines.push(by_lease);
        }
        let mut problems = Vec::new();
        if !unstamped.is_empty() {
            problems.push(format!("unstamped leadership lines: {unstamped:?}"));
        }
        let mut intervals_seen = 0;
        for lease in &self.leases {
            let transcripts: Vec<Transcript<'_>> = self
                .processes
                .iter()
                .zip(&lines)
                .filter_map(|(process, by_lease)| {
                    Some(Transcript {
                        id: process.id(),
                        implementation: Implementation::Rust,
                        lines: by_lease.get(lease.as_str())?,
                        killed_at: process.killed_at,
                        paused_at: None,
                    })
                })
                .collect();
            let intervals = match leadership_intervals(lease, &transcripts) {
                Ok(intervals) => intervals,
                Err(error) => {
                    problems.push(format!("{lease}: {error}"));
                    continue;
                }
            };
            intervals_seen += intervals.len();
            let overlaps = overlapping_pairs(&intervals);
            if !overlaps.is_empty() {
                problems.push(format!(
                    "{lease}: two leaders at once, {overlaps:?} in\n{}",
                    report(&intervals, self.began)
                ));
            }
            if let Err(error) = check_fencing_tokens(&intervals) {
                problems.push(format!(
                    "{lease}: {error} in\n{}",
                    report(&intervals, self.began)
                ));
            }
        }
        let mut checks = vec![(
            format!(
                "no two leaderships of a lease overlap, fencing tokens go up ({intervals_seen} \
                 leadership intervals)"
            ),
            result_of(problems),
        )];

        let history = self.history.all();
        let mut problems = Vec::new();
        let mut takeovers = 0;
        for lease in &self.leases {
            let records = history.get(lease).map_or(&[][..], Vec::as_slice);
            takeovers += holder_changes(records);
            problems.extend(
                check_takeovers(records, LEASE_DURATION)
                    .into_iter()
                    .map(|error| format!("{lease}: {error}")),
            );
        }
        checks.push((
            format!(
                "every takeover the API server committed came after a release or a lease \
                 duration after the last renew ({takeovers} changes of holder)"
            ),
            result_of(problems),
        ));
        (checks, intervals_seen, takeovers)
    }
}

/// Changes from one holder to another in one lease's records (a release and a takeover count
/// once; the first holder does not count).
fn holder_changes(records: &[crate::lease_history::Record]) -> usize {
    let mut last: Option<&str> = None;
    let mut changes = 0;
    for holder in records.iter().filter_map(|r| r.holder.as_deref()) {
        if last.is_some_and(|last| last != holder) {
            changes += 1;
        }
        last = Some(holder);
    }
    changes
}

/// One check of the soak: what it checks, and why it failed.
type Check = (String, Result<(), String>);

/// `Ok` with no problems, else every problem, one per line.
fn result_of(problems: Vec<String>) -> Result<(), String> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

// ---------------------------------------------------------------------------------------------
// The test.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak() {
    let settings = settings();
    let plane = control_plane();
    let work_dir = std::env::temp_dir().join(format!("leader-soak-{}", std::process::id()));
    std::fs::create_dir_all(&work_dir).expect("creating the soak's directory");
    let _cleanup = RemoveOnDrop(work_dir.clone());

    let mut soak = Soak::start(&plane, work_dir).await;
    let end = soak.began + settings.duration;
    eprintln!(
        "soak: every lease led after {:.1} s; whole fault cycles until {:.0} s (at least {MIN_CYCLES})",
        soak.seconds(Instant::now()),
        settings.duration.as_secs_f64()
    );
    while soak.cycle_starts.len() < MIN_CYCLES || Instant::now() < end {
        soak.cycle_starts.push(Instant::now());
        for fault in Fault::CYCLE {
            soak.inject(fault).await;
            let last = soak.injected.last().expect("just injected");
            eprintln!(
                "soak: {:>7.1} s {} of {} ({} leases), every lease led again after {}",
                soak.seconds(last.at),
                fault.name(),
                last.target,
                last.led,
                last.recovered
                    .map_or("-".into(), |d| format!("{} ms", d.as_millis()))
            );
            soak.idle(PAUSE).await;
        }
    }
    let faults_ended = Instant::now();

    let mut checks = Vec::new();
    let recovered = soak.injected.iter().all(|i| i.recovered.is_some());
    checks.push((
        format!(
            "every fault recovered: every lease led again within {} s",
            RECOVERY_LIMIT.as_secs()
        ),
        if recovered && soak.failures.is_empty() {
            Ok(())
        } else {
            Err(soak.failures.join("\n"))
        },
    ));
    checks.extend(soak.final_state().await);
    checks.push((
        "every process exits with status 0 on SIGTERM".into(),
        soak.stop().await,
    ));
    let garbled: Vec<String> = soak
        .processes
        .iter()
        .flat_map(|p| {
            p.garbled
                .iter()
                .map(move |line| format!("{}: {line}", p.id()))
        })
        .collect();
    checks.push(("every report line reads".into(), result_of(garbled)));
    let (leadership, intervals, takeovers) = soak.leadership();
    checks.extend(leadership);

    let cycle_starts: Vec<f64> = soak
        .cycle_starts
        .iter()
        .map(|&at| soak.seconds(at))
        .collect();
    let windows =
        Windows::of(&cycle_starts, soak.seconds(faults_ended)).expect("at least three cycles");
    let mut judged = Vec::new();
    for process in soak.processes.iter().filter(|p| p.is_long_lived()) {
        let verdicts = Series::of(process, soak.began).judge(&windows);
        let problems: Vec<String> = verdicts
            .iter()
            .filter_map(|(what, verdict)| match verdict {
                Some(verdict) if verdict.is_flat() => None,
                Some(verdict) => Some(format!("{what}: {}", verdict.describe())),
                None => Some(format!("{what}: no readings in a window")),
            })
            .collect();
        checks.push((
            format!(
                "{}: flat after warm-up (RSS, fds other than sockets, and tasks other than terms' \
                 and connections' within {:.0} %; the sockets' peak no higher than before, in \
                 windows of {:.0} s or more)",
                process.id(),
                resources::FLAT * 100.0,
                resources::IDLE_CONNECTION_LIFETIME
            ),
            result_of(problems),
        ));
        judged.push((process.id().to_owned(), verdicts));
    }

    let summary = Summary {
        settings: &settings,
        soak: &soak,
        windows,
        faults_ended,
        checks: &checks,
        judged: &judged,
        intervals,
        takeovers,
    };
    let raw = target_dir().join("soak").join("samples.csv");
    write(&raw, &summary.csv());
    let plot = settings.report.with_extension("svg");
    write(&plot, &summary.plot());
    write(&settings.report, &summary.markdown());
    eprintln!("{}", summary.tables());
    eprintln!(
        "soak: wrote {}, {} and {}",
        settings.report.display(),
        plot.display(),
        raw.display()
    );
    let failed: Vec<String> = checks
        .iter()
        .filter_map(|(what, result)| result.as_ref().err().map(|why| format!("{what}:\n{why}")))
        .collect();
    assert!(
        failed.is_empty(),
        "soak: {} check(s) failed (report in {}):\n{}",
        failed.len(),
        settings.report.display(),
        failed.join("\n\n")
    );
}

/// Writes `text` to `path`, creating its directory.
fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .unwrap_or_else(|error| panic!("creating {}: {error}", dir.display()));
    }
    std::fs::write(path, text)
        .unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_parse() {
        let at = Instant::now();
        let report = parse_report(
            at,
            "long-1: report: tasks 305, leading 33 of 100, request errors 2 (1 leading), watch \
             errors 0, live ok, ready failing",
        )
        .expect("a report");
        assert_eq!(
            (
                report.tasks,
                report.leading,
                report.elections,
                report.request_errors,
                report.leader_errors,
                report.watch_errors
            ),
            (305, 33, 100, 2, 1, 0)
        );
        assert!(report.live && !report.ready);
        assert!(parse_report(at, "long-1: report: tasks x").is_none());
        assert_eq!(
            leading_lease("long-1: leading lease-007 (fencing token 3)"),
            Some("lease-007")
        );
        assert_eq!(leading_lease("long-1: stopped leading lease-007"), None);
    }

    #[test]
    fn holder_changes_count_takeovers_not_releases() {
        let record = |holder: Option<&str>| crate::lease_history::Record {
            seen_at: Instant::now(),
            holder: holder.map(Into::into),
            transitions: 0,
            duration_seconds: Some(4),
            acquire_time: None,
            renew_time: None,
        };
        let records = [
            record(Some("a")),
            record(None),
            record(Some("b")),
            record(Some("b")),
            record(Some("a")),
        ];
        assert_eq!(holder_changes(&records), 2);
    }
}
