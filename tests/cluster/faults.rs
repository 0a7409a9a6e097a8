//! The fault campaign: mixed fleets of our candidates (`examples/election.rs`) and client-go
//! candidates (`tests/control-plane/peer`) on one Lease, with real faults injected on the
//! current leader, and the candidates' own output checked for two leaders at once.
//!
//! Fault kinds, each hitting the leader only: a network cut, 1-3 s of latency, a 1 KB/s
//! bandwidth throttle and connection resets (all through the leader's own toxiproxy proxy), a
//! SIGSTOP longer than the lease duration, a restart of kube-apiserver, a restart of etcd, and
//! SIGKILL. Every candidate reaches kube-apiserver through a proxy of its own, on one toxiproxy
//! server per campaign. Fleets alternate 2 Rust + 1 Go and 1 Rust + 2 Go, and the faulted
//! leader alternates between the two implementations.
//!
//! Every candidate runs with `--timestamps` (each line carries the machine's `CLOCK_MONOTONIC`
//! reading when it was printed) and `--work-interval` (a `working` line per unit of work while
//! leading). The checks, per trial:
//! - no two leadership intervals overlap (`leadership.rs`); a paused leader's interval ends at
//!   its SIGSTOP for this check, a killed one's at its SIGKILL;
//! - an overlap whose earlier leader is ours is an engine bug: the campaign fails with the
//!   transcripts. One whose earlier leader is the client-go peer is a client-go finding when
//!   the Lease history shows that the next leader took over by the rules (after a release by
//!   the Go leader, or after the lease expired): client-go cancels the work's context only after
//!   its renew loop has given up and tried to release the lease, so the work outlives the lease.
//!   Anything else fails the campaign;
//! - fencing tokens go up from one holder to the next;
//! - after SIGCONT, our paused candidate prints `stopped leading` before any further `working`
//!   line, and its fencing token is below the new leader's. For the Go peer, whether it started
//!   another unit of work is recorded (client-go has no clock-based check), not failed on.
//!
//! Settings (environment): `LEADER_FAULT_TRIALS` trials per fault kind (default 1, the subset
//! `make test` runs); `LEADER_FAULT_PARALLEL` concurrent trials of the network and signal kinds
//! (default 6); `LEADER_FAULT_RESTART_FLEETS` fleets observing each control-plane restart
//! (default 3); `LEADER_FAULT_KINDS` a comma-separated subset of kinds; `LEADER_FAULT_REPORT` a
//! Markdown file to write the results table to. `make fault-campaign` runs 25 trials per kind
//! and writes `docs/fault-campaign.md`.
//!
//! Restarts run in a private control plane (`launcher serve --stop-on-stdin-eof`, a child of
//! this test), so they never disturb the other tests that share the run's control plane; the
//! launcher restarts its own servers on SIGUSR1 (kube-apiserver) and SIGUSR2 (etcd).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::{StreamExt, future};
use kube::api::Api;
use serde_json::json;

use crate::leadership::{
    End, Interval, Transcript, check_fencing_tokens, leadership_intervals, line_time,
    overlapping_pairs, report, stamped,
};
use crate::lease_history::{LeaseHistory, Renewals};
use crate::support::{
    Candidate, ControlPlane, FAST_TIMINGS, Identity, Implementation, PrivatePlane, RemoveOnDrop,
    Server, control_plane,
};
use crate::toxiproxy::{self, Toxiproxy, toxic};

const SECOND: Duration = Duration::from_secs(1);
const MILLISECOND: Duration = Duration::from_millis(1);
const LEASE: &str = "lock";
/// The durations of [`FAST_TIMINGS`].
const LEASE_DURATION: Duration = Duration::from_secs(4);
const RENEW_DEADLINE: Duration = Duration::from_secs(3);
const RETRY_PERIOD: Duration = Duration::from_secs(1);
const WORK_INTERVAL: &str = "500ms";
const LEADING: &str = ": leading lock (";
const STOPPED: &str = ": stopped leading lock";
const WORKING: &str = ": working on lock (";

// ---------------------------------------------------------------------------------------------
// Fault kinds and settings.

/// What is done to the leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    /// Its proxy drops every byte both ways (`timeout` toxics with no timeout).
    Cut,
    /// Its proxy delays every response by 1-3 s (`latency` 2000 ms, jitter 1000 ms).
    Latency,
    /// Its proxy passes 1 KB/s each way (`bandwidth` toxics).
    Bandwidth,
    /// Its proxy resets its connections (`reset_peer`) on the first byte sent.
    ResetPeer,
    /// SIGSTOP for longer than the lease duration, then SIGCONT.
    Pause,
    /// kube-apiserver restarts (SIGTERM, start again on the same port).
    RestartApiserver,
    /// etcd restarts (SIGTERM, start again on the same port and data).
    RestartEtcd,
    /// SIGKILL.
    Kill,
}

impl Kind {
    const ALL: [Kind; 8] = [
        Kind::Cut,
        Kind::Latency,
        Kind::Bandwidth,
        Kind::ResetPeer,
        Kind::Pause,
        Kind::RestartApiserver,
        Kind::RestartEtcd,
        Kind::Kill,
    ];

    /// The name in `LEADER_FAULT_KINDS`, namespaces and messages.
    fn name(self) -> &'static str {
        match self {
            Kind::Cut => "cut",
            Kind::Latency => "latency",
            Kind::Bandwidth => "bandwidth",
            Kind::ResetPeer => "reset-peer",
            Kind::Pause => "sigstop",
            Kind::RestartApiserver => "restart-apiserver",
            Kind::RestartEtcd => "restart-etcd",
            Kind::Kill => "sigkill",
        }
    }

    /// The row title in the report.
    fn title(self) -> &'static str {
        match self {
            Kind::Cut => "network cut (toxiproxy `timeout`)",
            Kind::Latency => "latency 1-3 s (toxiproxy `latency`)",
            Kind::Bandwidth => "bandwidth 1 KB/s (toxiproxy `bandwidth`)",
            Kind::ResetPeer => "connection reset (toxiproxy `reset_peer`)",
            Kind::Pause => "SIGSTOP > lease duration, SIGCONT",
            Kind::RestartApiserver => "restart kube-apiserver",
            Kind::RestartEtcd => "restart etcd",
            Kind::Kill => "SIGKILL",
        }
    }

    fn is_restart(self) -> bool {
        matches!(self, Kind::RestartApiserver | Kind::RestartEtcd)
    }

    /// The toxics that make this network fault, on the leader's proxy.
    fn toxics(self) -> Vec<serde_json::Value> {
        match self {
            Kind::Cut => toxiproxy::cut(),
            Kind::Latency => vec![toxic(
                "latency",
                "latency",
                "downstream",
                json!({"latency": 2000, "jitter": 1000}),
            )],
            Kind::Bandwidth => vec![
                toxic("slow-up", "bandwidth", "upstream", json!({"rate": 1})),
                toxic("slow-down", "bandwidth", "downstream", json!({"rate": 1})),
            ],
            Kind::ResetPeer => vec![toxic(
                "reset",
                "reset_peer",
                "upstream",
                json!({"timeout": 0}),
            )],
            _ => Vec::new(),
        }
    }

    /// How long a network fault stays at most; it is healed earlier once another candidate
    /// leads.
    fn max_hold(self) -> Duration {
        match self {
            Kind::Cut | Kind::ResetPeer => 12 * SECOND,
            _ => 8 * SECOND,
        }
    }
}

struct Settings {
    trials: usize,
    parallel: usize,
    restart_fleets: usize,
    kinds: Vec<Kind>,
    report: Option<PathBuf>,
}

fn settings() -> Settings {
    let number = |name: &str, default: usize| match std::env::var(name) {
        Ok(text) => text
            .parse()
            .ok()
            .filter(|&n: &usize| n > 0)
            .unwrap_or_else(|| panic!("{name}={text:?} is not a positive number")),
        Err(_) => default,
    };
    let kinds = match std::env::var("LEADER_FAULT_KINDS") {
        Ok(list) => list
            .split(',')
            .map(|name| {
                Kind::ALL
                    .into_iter()
                    .find(|kind| kind.name() == name.trim())
                    .unwrap_or_else(|| panic!("LEADER_FAULT_KINDS: no fault kind {name:?}"))
            })
            .collect(),
        Err(_) => Kind::ALL.to_vec(),
    };
    Settings {
        trials: number("LEADER_FAULT_TRIALS", 1),
        parallel: number("LEADER_FAULT_PARALLEL", 6),
        restart_fleets: number("LEADER_FAULT_RESTART_FLEETS", 3),
        kinds,
        report: std::env::var_os("LEADER_FAULT_REPORT").map(PathBuf::from),
    }
}

// ---------------------------------------------------------------------------------------------
// One trial: a fleet on one lease, one fault on its leader.

struct Member {
    candidate: Candidate,
    proxy: String,
    killed_at: Option<Instant>,
    paused_at: Option<Instant>,
    continued_at: Option<Instant>,
}

struct Fleet<'a> {
    kind: Kind,
    number: usize,
    plane: &'a ControlPlane,
    toxiproxy: &'a Toxiproxy,
    kubeconfigs: PathBuf,
    namespace: String,
    members: Vec<Member>,
    history: LeaseHistory,
    base: Instant,
    notes: Vec<String>,
}

/// The fault as injected on one fleet.
struct Injected {
    leader: usize,
    at: Instant,
    /// For a control-plane restart: when the launcher reported the restarted server ready.
    server_ready: Option<Instant>,
}

/// The fleet and the implementation of the leader to fault, by the campaign-wide trial number.
fn composition(number: usize) -> ([Implementation; 3], Implementation) {
    use Implementation::{Go, Rust};
    let fleet = if number.is_multiple_of(2) {
        [Rust, Rust, Go]
    } else {
        [Rust, Go, Go]
    };
    let target = if (number / 2).is_multiple_of(2) {
        Rust
    } else {
        Go
    };
    (fleet, target)
}

fn fleet_name(fleet: &[Implementation]) -> String {
    let rust = fleet.iter().filter(|&&i| i == Implementation::Rust).count();
    format!("{rust} Rust + {} Go", fleet.len() - rust)
}

impl<'a> Fleet<'a> {
    /// Starts the fleet for trial `number`: the candidate to fault first, alone, until it
    /// leads; then the others, until they report it as the leader.
    async fn start(
        plane: &'a ControlPlane,
        toxiproxy: &'a Toxiproxy,
        kubeconfigs: &Path,
        kind: Kind,
        number: usize,
    ) -> Fleet<'a> {
        let namespace = plane.namespace(&format!("fault-{}", kind.name())).await;
        let leases = Api::namespaced(plane.client(Identity::Admin).await, &namespace);
        let history = LeaseHistory::record(leases, Some(LEASE), Renewals::Keep);
        let mut fleet = Fleet {
            kind,
            number,
            plane,
            toxiproxy,
            kubeconfigs: kubeconfigs.to_owned(),
            namespace,
            members: Vec::new(),
            history,
            base: Instant::now(),
            notes: Vec::new(),
        };
        let (implementations, target) = composition(number);
        let mut order = implementations.to_vec();
        let first = order
            .iter()
            .position(|&i| i == target)
            .expect("in the fleet");
        order.swap(0, first);
        fleet.add(order[0]);
        fleet.members[0]
            .candidate
            .wait_for(LEADING, 30 * SECOND)
            .await;
        let leader_id = fleet.members[0].candidate.id.clone();
        for &implementation in &order[1..] {
            fleet.add(implementation);
        }
        for member in &mut fleet.members[1..] {
            member
                .candidate
                .wait_for(&format!("new leader of {LEASE}: {leader_id}"), 30 * SECOND)
                .await;
        }
        fleet
    }

    fn add(&mut self, implementation: Implementation) {
        let count = self
            .members
            .iter()
            .filter(|m| m.candidate.implementation == implementation)
            .count();
        let id = format!(
            "{}-{}",
            implementation.to_string().to_lowercase(),
            count + 1
        );
        let proxy = format!("{}-{id}", self.namespace);
        let kubeconfig = self
            .toxiproxy
            .proxied_kubeconfig(self.plane, &proxy, &self.kubeconfigs);
        let kubeconfig = kubeconfig.to_str().expect("a UTF-8 path").to_owned();
        // Both programs take the last value of a repeated flag: this --kubeconfig wins over
        // the admin one `start_as` passes first.
        let mut options = vec!["--kubeconfig", &kubeconfig];
        options.extend(FAST_TIMINGS);
        options.extend(["--work-interval", WORK_INTERVAL, "--timestamps"]);
        let candidate = Candidate::start_as(
            implementation,
            self.plane,
            &id,
            &self.namespace,
            &[LEASE.to_owned()],
            &options,
        );
        self.members.push(Member {
            candidate,
            proxy,
            killed_at: None,
            paused_at: None,
            continued_at: None,
        });
    }

    fn label(&self) -> String {
        format!("{} #{}", self.kind.name(), self.number)
    }

    /// The members whose last leadership line says they lead.
    fn leaders(&mut self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&m| {
                let member = &mut self.members[m];
                member.killed_at.is_none() && leads(&mut member.candidate)
            })
            .collect()
    }

    /// Waits up to `limit` for a leader and returns it (the first one if several).
    async fn await_leader(&mut self, limit: Duration) -> Option<usize> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(&leader) = self.leaders().first() {
                return Some(leader);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(20 * MILLISECOND).await;
        }
    }

    /// Waits up to `limit` until exactly one candidate leads (a client-go leader whose work
    /// outlives its lease has stopped, say), and returns it.
    async fn await_sole_leader(&mut self, limit: Duration) -> Option<usize> {
        let deadline = Instant::now() + limit;
        loop {
            if let [leader] = self.leaders()[..] {
                return Some(leader);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(20 * MILLISECOND).await;
        }
    }

    /// Waits up to `limit` until a candidate other than `leader` leads; whether one did.
    async fn await_handover(&mut self, leader: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.leaders().iter().any(|&m| m != leader) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(20 * MILLISECOND).await;
        }
    }

    /// Injects a fault of this fleet's kind on its current leader, holds it, and heals it.
    /// Restarts are injected by [`restart_batch`] instead.
    async fn inject(&mut self) -> Injected {
        let Some(leader) = self.await_leader(20 * SECOND).await else {
            panic!(
                "{}: no leader to fault\n{}",
                self.label(),
                self.transcripts()
            );
        };
        let kind = self.kind;
        match kind {
            Kind::Cut | Kind::Latency | Kind::Bandwidth | Kind::ResetPeer => {
                let proxy = self.members[leader].proxy.clone();
                let toxics = kind.toxics();
                self.toxiproxy.add_toxics(&proxy, &toxics);
                let at = Instant::now();
                let moved = self.await_handover(leader, kind.max_hold()).await;
                if moved {
                    // Let the old leader run into the fault a little longer.
                    tokio::time::sleep(SECOND).await;
                }
                self.toxiproxy.remove_toxics(&proxy, &toxics);
                Injected {
                    leader,
                    at,
                    server_ready: None,
                }
            }
            Kind::Pause => {
                let candidate = &self.members[leader].candidate;
                candidate.signal("STOP");
                let at = Instant::now();
                assert_stopped(candidate.pid());
                self.members[leader].paused_at = Some(at);
                if !self.await_handover(leader, 30 * SECOND).await {
                    self.notes
                        .push("nobody took over while the leader was stopped".into());
                }
                let paused_for = (LEASE_DURATION + SECOND).saturating_sub(at.elapsed());
                tokio::time::sleep(paused_for).await;
                self.members[leader].continued_at = Some(Instant::now());
                self.members[leader].candidate.signal("CONT");
                // It must notice that its leadership is over, one way or the other.
                let candidate = &mut self.members[leader].candidate;
                let deadline = Instant::now() + 15 * SECOND;
                while leads(candidate) && Instant::now() < deadline {
                    tokio::time::sleep(20 * MILLISECOND).await;
                }
                Injected {
                    leader,
                    at,
                    server_ready: None,
                }
            }
            Kind::Kill => {
                self.members[leader].candidate.signal("KILL");
                let at = Instant::now();
                self.members[leader].killed_at = Some(at);
                assert!(
                    !self.members[leader].candidate.wait(),
                    "killed with SIGKILL"
                );
                self.await_handover(leader, 30 * SECOND).await;
                Injected {
                    leader,
                    at,
                    server_ready: None,
                }
            }
            Kind::RestartApiserver | Kind::RestartEtcd => {
                unreachable!("restarts are injected on the whole control plane")
            }
        }
    }

    /// After the fault: waits for a leader, lets the fleet run a moment, stops everyone
    /// (followers first, so that nobody takes over from the last leader) and analyses the
    /// output.
    async fn finish(mut self, injected: Injected) -> TrialResult {
        if self.await_sole_leader(40 * SECOND).await.is_none() {
            self.notes
                .push("not exactly one leader within 40 s of the fault".into());
        }
        tokio::time::sleep(SECOND).await;
        let shutdown_at = Instant::now();
        let leaders = self.leaders();
        let followers: Vec<usize> = (0..self.members.len())
            .filter(|m| !leaders.contains(m))
            .collect();
        self.stop(&followers).await;
        self.stop(&leaders).await;
        self.history.stop();
        for member in &self.members {
            self.toxiproxy.delete_proxy(&member.proxy);
        }
        self.analyse(&injected, shutdown_at)
    }

    /// Stops `members` with SIGTERM (SIGKILL after 15 s) and reads the rest of their output.
    async fn stop(&mut self, members: &[usize]) {
        let live: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&m| self.members[m].killed_at.is_none())
            .collect();
        for &m in &live {
            self.members[m].candidate.signal("TERM");
        }
        let deadline = Instant::now() + 15 * SECOND;
        for &m in &live {
            let member = &mut self.members[m];
            while member.candidate.try_wait().is_none() {
                if Instant::now() > deadline {
                    let note = format!(
                        "{} did not exit within 15 s of SIGTERM; killed",
                        member.candidate.id
                    );
                    self.notes.push(note);
                    let member = &mut self.members[m];
                    member.candidate.signal("KILL");
                    member.killed_at = Some(Instant::now());
                    member.candidate.wait();
                    break;
                }
                tokio::time::sleep(20 * MILLISECOND).await;
            }
        }
        for &m in members {
            self.members[m].candidate.read_to_end(10 * SECOND).await;
        }
    }

    fn transcripts(&self) -> String {
        let mut text = String::new();
        for member in &self.members {
            let candidate = &member.candidate;
            let _ = writeln!(
                text,
                "--- {} ({}){}{}",
                candidate.id,
                candidate.implementation,
                member
                    .paused_at
                    .map(|at| format!(", SIGSTOP at {:.1} ms", self.ms(at)))
                    .unwrap_or_default(),
                member
                    .killed_at
                    .map(|at| format!(", SIGKILL at {:.1} ms", self.ms(at)))
                    .unwrap_or_default(),
            );
            if let Some(at) = member.continued_at {
                let _ = writeln!(text, "    SIGCONT at {:.1} ms", self.ms(at));
            }
            for (read_at, line) in &candidate.seen {
                let (at, line) = line_time(*read_at, line);
                let _ = writeln!(text, "{:>10.1} ms  {line}", self.ms(at));
            }
        }
        let _ = writeln!(text, "--- the Lease as the API server committed it");
        for record in &self.history.of(LEASE) {
            let _ = writeln!(
                text,
                "{:>10.1} ms  holder {:?}, leaseTransitions {}, leaseDurationSeconds {:?}, \
                 renewTime {:?}",
                self.ms(record.seen_at),
                record.holder,
                record.transitions,
                record.duration_seconds,
                record.renew_time
            );
        }
        text
    }

    fn ms(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.base).as_secs_f64() * 1e3
    }

    fn analyse(&self, injected: &Injected, shutdown_at: Instant) -> TrialResult {
        let faulted = &self.members[injected.leader].candidate;
        let mut result = TrialResult {
            kind: self.kind,
            number: self.number,
            label: self.label(),
            fleet: fleet_name(&composition(self.number).0),
            faulted: faulted.implementation,
            outcome: Outcome::NoLeaderAtFault,
            engine_violations: Vec::new(),
            client_go_overlaps: Vec::new(),
            foreign_releases: Vec::new(),
            paused: None,
            recovery: None,
            notes: self.notes.clone(),
            transcript: String::new(),
        };
        let violation = |result: &mut TrialResult, text: String| {
            result.engine_violations.push(text);
        };

        // Every leadership and work line must carry its monotonic stamp.
        for member in &self.members {
            for (_, line) in &member.candidate.seen {
                let relevant = [LEADING, STOPPED, WORKING].iter().any(|t| line.contains(t));
                if relevant && stamped(line).is_none() {
                    violation(
                        &mut result,
                        format!("unstamped line from {}: {line:?}", member.candidate.id),
                    );
                }
            }
        }
        let transcripts: Vec<Transcript<'_>> = self
            .members
            .iter()
            .map(|member| Transcript {
                id: &member.candidate.id,
                implementation: member.candidate.implementation,
                lines: &member.candidate.seen,
                killed_at: member.killed_at,
                paused_at: member.paused_at,
            })
            .collect();
        let intervals = match leadership_intervals(LEASE, &transcripts) {
            Ok(intervals) => intervals,
            Err(error) => {
                violation(&mut result, error);
                result.transcript = self.transcripts();
                return result;
            }
        };
        if let Err(error) = check_fencing_tokens(&intervals) {
            violation(&mut result, error);
        }
        for (i, j) in overlapping_pairs(&intervals) {
            let (earlier, later) = (&intervals[i], &intervals[j]);
            match earlier.implementation {
                Implementation::Rust => match self.explain_foreign_release(earlier, later) {
                    Some(release) => result.foreign_releases.push(release),
                    None => violation(
                        &mut result,
                        format!(
                            "overlap: {} (ours) still led when {} started",
                            earlier.id, later.id
                        ),
                    ),
                },
                Implementation::Go => match self.explain_client_go_overlap(earlier, later) {
                    Ok(overlap) => result.client_go_overlaps.push(overlap),
                    Err(why) => violation(
                        &mut result,
                        format!(
                            "overlap: {} ({}) started while {} (client-go) still led, and the \
                             Lease history does not show a takeover by the rules: {why}",
                            later.id, later.implementation, earlier.id
                        ),
                    ),
                },
            }
        }

        // The faulted leadership and what followed it.
        let faulted_interval = intervals.iter().position(|interval| {
            interval.id == faulted.id
                && interval.start <= injected.at
                && interval.end_time().is_none_or(|end| end >= injected.at)
        });
        if let Some(index) = faulted_interval {
            let interval = &intervals[index];
            let end = interval.end_time().unwrap_or(shutdown_at);
            // Intervals are sorted by start: the next one is the next leadership, which may
            // have begun before this one ended (an overlap, a negative gap).
            if let (Some(ready), Some(next)) = (injected.server_ready, intervals.get(index + 1)) {
                result.recovery = Some(Recovery {
                    led_after_restart_ms: duration_ms_signed(injected.at, end),
                    next_after_ready_ms: duration_ms_signed(ready, next.start),
                });
            }
            result.outcome = match intervals.get(index + 1) {
                Some(next) => Outcome::Handover {
                    next: next.implementation,
                    same_candidate: next.id == interval.id,
                    gap_ms: duration_ms_signed(end, next.start),
                },
                None if end >= shutdown_at => Outcome::Kept,
                None => Outcome::NoLeaderAfter,
            };
        }

        if self.kind == Kind::Pause {
            result.paused = Some(self.check_pause(injected, &intervals, &mut result));
        }
        if !result.engine_violations.is_empty() || !result.client_go_overlaps.is_empty() {
            result.transcript = format!(
                "{}\nintervals (ms from the fleet's start):\n{}",
                self.transcripts(),
                report(&intervals, self.base)
            );
        }
        result
    }

    /// Whether the Lease history shows that `later` took over from `earlier` by the rules:
    /// after a release written by `earlier`, or after `earlier`'s record had stood unchanged
    /// for a lease duration.
    /// An overlap where our leader was the earlier one is excused only in this case: the Lease
    /// history shows our live record replaced by a released one (empty holder) that we did not
    /// write (we release only at shutdown, which had not come), followed by a client-go peer's
    /// takeover. That is client-go's `release()` checking `IsLeader()` against its stale observed
    /// record after a partition healed: it writes away a lease it no longer holds, then its
    /// elector acquires it within milliseconds, before any watch can tell our leader.
    fn explain_foreign_release(&self, ours: &Interval, later: &Interval) -> Option<ForeignRelease> {
        if later.implementation != Implementation::Go {
            return None;
        }
        let history = self.history.of(LEASE);
        let taken = (2..history.len()).rev().find(|&i| {
            history[i].holder.as_deref() == Some(later.id.as_str())
                && history[i - 1].holder.is_none()
                && history[i - 2].holder.as_deref() == Some(ours.id.as_str())
        })?;
        if self.shut_down_by(&ours.id, history[taken - 1].seen_at) {
            return None; // our own release at shutdown: no excuse
        }
        let end = ours.end_time()?;
        Some(ForeignRelease {
            ours: ours.id.clone(),
            go: later.id.clone(),
            overlap_ms: duration_ms(later.start, end),
        })
    }

    /// Whether our candidate `id` had begun shutting down (the only time it releases a lease)
    /// by `at`.
    fn shut_down_by(&self, id: &str, at: Instant) -> bool {
        let member = self.members.iter().find(|m| m.candidate.id == id);
        member.is_some_and(|member| {
            member
                .candidate
                .seen
                .iter()
                .any(|(when, line)| line.contains("shutting down") && *when <= at)
        })
    }

    fn explain_client_go_overlap(
        &self,
        earlier: &Interval,
        later: &Interval,
    ) -> Result<ClientGoOverlap, String> {
        let history = self.history.of(LEASE);
        // The record in which `later` became the holder, seen around when it said it leads.
        let taken = history
            .iter()
            .enumerate()
            .rev()
            .find(|(i, record)| {
                record.holder.as_deref() == Some(later.id.as_str())
                    && *i > 0
                    && history[i - 1].holder.as_deref() != Some(later.id.as_str())
                    && record.seen_at <= later.start + SECOND
            })
            .map(|(i, _)| i)
            .ok_or("no record of the takeover")?;
        let previous = &history[taken - 1];
        let overlap_ms = duration_ms(
            later.start,
            earlier
                .end_time()
                .expect("an overlap with an open interval"),
        );
        let how = match previous.holder.as_deref() {
            None => {
                let before = taken
                    .checked_sub(2)
                    .map(|i| &history[i])
                    .ok_or("a release with no holder before it")?;
                let release_to_takeover_ms = duration_ms(previous.seen_at, history[taken].seen_at);
                if before.holder.as_deref() == Some(earlier.id.as_str()) {
                    Takeover::Released {
                        release_to_takeover_ms,
                    }
                } else if before.holder.as_deref() == Some(later.id.as_str())
                    && later.implementation == Implementation::Rust
                    && !self.shut_down_by(&later.id, previous.seen_at)
                {
                    // Our own live record was released, not by us (we release only at
                    // shutdown, which had not come): client-go's stale `release()` (see
                    // `explain_foreign_release`). We took the released lease back by the rules.
                    Takeover::ReleasedByAnother {
                        release_to_takeover_ms,
                    }
                } else {
                    return Err(format!(
                        "released by {:?}, not by {}",
                        before.holder, earlier.id
                    ));
                }
            }
            Some(holder) if holder == earlier.id => {
                let unchanged = history[taken]
                    .seen_at
                    .saturating_duration_since(previous.seen_at);
                if unchanged + 100 * MILLISECOND < LEASE_DURATION {
                    return Err(format!(
                        "{} took over {unchanged:?} after {}'s last renew",
                        later.id, earlier.id
                    ));
                }
                Takeover::Expired {
                    since_last_renew_ms: unchanged.as_secs_f64() * 1e3,
                }
            }
            Some(holder) => {
                return Err(format!("took over from {holder}, not from {}", earlier.id));
            }
        };
        // How long the Go leader's work went on after the lease was no longer its own.
        let (lost_at, last_renew) = match how {
            Takeover::Released { .. } => (previous.seen_at, &history[taken - 2]),
            Takeover::Expired { .. } => (previous.seen_at + LEASE_DURATION, previous),
            Takeover::ReleasedByAnother { .. } => {
                let own = history[..taken]
                    .iter()
                    .rev()
                    .find(|record| record.holder.as_deref() == Some(earlier.id.as_str()))
                    .ok_or("the Go leader's record is not in the history")?;
                (own.seen_at + LEASE_DURATION, own)
            }
        };
        // client-go's renew loop runs a RetryPeriod after its last success and gives up a
        // RenewDeadline later; it cancels the work's context only after `release()` returns.
        let gave_up = last_renew.seen_at + RETRY_PERIOD + RENEW_DEADLINE;
        let end = earlier
            .end_time()
            .expect("an overlap with an open interval");
        Ok(ClientGoOverlap {
            earlier: earlier.id.clone(),
            later: later.id.clone(),
            later_implementation: later.implementation,
            overlap_ms,
            how,
            work_after_lease_ms: duration_ms(lost_at, end),
            work_after_renew_gave_up_ms: duration_ms_signed(gave_up, end),
        })
    }

    /// After SIGCONT: ours must stop before any further unit of work, with a fencing token
    /// below the new leader's; for the Go peer, record what it did.
    fn check_pause(
        &self,
        injected: &Injected,
        intervals: &[Interval],
        result: &mut TrialResult,
    ) -> PausedResult {
        let member = &self.members[injected.leader];
        let candidate = &member.candidate;
        let paused_at = member.paused_at.expect("paused");
        let continued_at = member.continued_at.expect("continued");
        let mut units_after = 0;
        let mut stopped_after = None;
        let mut first_after = None;
        for (read_at, line) in &candidate.seen {
            let (at, text) = line_time(*read_at, line);
            if at < continued_at {
                continue;
            }
            if text.contains(WORKING) && stopped_after.is_none() {
                units_after += 1;
                first_after.get_or_insert("working");
            } else if text.ends_with(STOPPED) && stopped_after.is_none() {
                stopped_after = Some(at - continued_at);
                first_after.get_or_insert("stopped leading");
            }
        }
        let own = intervals
            .iter()
            .find(|i| i.id == candidate.id && i.end == End::Paused(paused_at));
        let token = own.map(|i| i.fencing_token);
        let next = intervals
            .iter()
            .find(|i| i.id != candidate.id && i.start >= paused_at);
        let next_token = next.map(|i| i.fencing_token);
        let token_lower = matches!((token, next_token), (Some(a), Some(b)) if a < b);
        if candidate.implementation == Implementation::Rust {
            if stopped_after.is_none() {
                result.engine_violations.push(format!(
                    "{} did not print `stopped leading` after SIGCONT",
                    candidate.id
                ));
            }
            if units_after > 0 {
                result.engine_violations.push(format!(
                    "{} started {units_after} unit(s) of work after SIGCONT before it stopped \
                     leading",
                    candidate.id
                ));
            }
            if !token_lower {
                result.engine_violations.push(format!(
                    "{}'s fencing token {token:?} is not below the new leader's {next_token:?}",
                    candidate.id
                ));
            }
        }
        PausedResult {
            implementation: candidate.implementation,
            paused_for: continued_at - paused_at,
            units_after,
            stopped_after,
            token,
            next_token,
            token_lower,
        }
    }
}

/// Whether the candidate's last leadership line says it leads.
fn leads(candidate: &mut Candidate) -> bool {
    candidate.drain();
    for (_, line) in candidate.seen.iter().rev() {
        if line.contains(LEADING) {
            return true;
        }
        if line.ends_with(STOPPED) {
            return false;
        }
    }
    false
}

/// Checks in /proc that a SIGSTOPped process has stopped (state `T`).
fn assert_stopped(pid: u32) {
    let path = format!("/proc/{pid}/stat");
    let deadline = Instant::now() + SECOND;
    loop {
        let stat = std::fs::read_to_string(&path).unwrap_or_default();
        // The state follows the parenthesised command name.
        let state = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next());
        if state == Some('T') {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "process {pid} not stopped: {stat}"
        );
        std::thread::sleep(MILLISECOND);
    }
}

fn duration_ms(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1e3
}

/// `to - from` in milliseconds, negative when `to` is earlier.
fn duration_ms_signed(from: Instant, to: Instant) -> f64 {
    if to >= from {
        duration_ms(from, to)
    } else {
        -duration_ms(to, from)
    }
}

// ---------------------------------------------------------------------------------------------
// Results.

#[derive(Clone, Debug)]
enum Outcome {
    /// Leadership passed on after the fault (to another candidate, or to the same one after
    /// it had stopped leading). `gap_ms` is negative for an overlap.
    Handover {
        next: Implementation,
        same_candidate: bool,
        gap_ms: f64,
    },
    /// The faulted leader led on through the fault.
    Kept,
    /// The faulted leader stopped and nobody led after it.
    NoLeaderAfter,
    /// The fault did not hit a leader (it had stopped leading just before).
    NoLeaderAtFault,
}

#[derive(Clone, Debug)]
enum Takeover {
    Released {
        release_to_takeover_ms: f64,
    },
    Expired {
        since_last_renew_ms: f64,
    },
    /// The Go leader's lease had expired and gone to our candidate; a client-go `release()`
    /// then wrote our live record away, and our candidate took the released lease again.
    ReleasedByAnother {
        release_to_takeover_ms: f64,
    },
}

/// Our leader's live lease written away by a client-go peer's stale release.
#[derive(Clone, Debug)]
struct ForeignRelease {
    ours: String,
    go: String,
    overlap_ms: f64,
}

#[derive(Clone, Debug)]
struct ClientGoOverlap {
    earlier: String,
    later: String,
    later_implementation: Implementation,
    overlap_ms: f64,
    how: Takeover,
    /// From the release (as the watch saw it) or the lease's expiry to the end of the work.
    work_after_lease_ms: f64,
    /// From when client-go's renew loop gave up at the latest (the Go leader's last renew as
    /// the watch saw it, plus RetryPeriod and RenewDeadline) to the end of the work: the time
    /// the work's context stayed live while `release()` ran.
    work_after_renew_gave_up_ms: f64,
}

#[derive(Clone, Debug)]
struct PausedResult {
    implementation: Implementation,
    paused_for: Duration,
    /// `working` lines after SIGCONT, before `stopped leading`.
    units_after: usize,
    /// From SIGCONT to `stopped leading`.
    stopped_after: Option<Duration>,
    token: Option<i64>,
    next_token: Option<i64>,
    token_lower: bool,
}

#[derive(Clone, Debug)]
struct TrialResult {
    kind: Kind,
    /// The campaign-wide trial number.
    number: usize,
    label: String,
    fleet: String,
    faulted: Implementation,
    outcome: Outcome,
    engine_violations: Vec<String>,
    client_go_overlaps: Vec<ClientGoOverlap>,
    /// Overlaps after a client-go peer released our live lease (see `explain_foreign_release`).
    foreign_releases: Vec<ForeignRelease>,
    paused: Option<PausedResult>,
    /// For a control-plane restart followed by a handover: when leadership ended and resumed.
    recovery: Option<Recovery>,
    notes: Vec<String>,
    transcript: String,
}

/// How a leadership went through a control-plane restart (the restart began at the signal).
#[derive(Clone, Debug)]
struct Recovery {
    /// From the restart's signal to the end of the faulted leader's leadership.
    led_after_restart_ms: f64,
    /// From the restarted server's reported readiness to the start of the next leadership
    /// (negative: it began before the launcher's readiness report was seen).
    next_after_ready_ms: f64,
}

impl TrialResult {
    fn summary(&self) -> String {
        let outcome = match &self.outcome {
            Outcome::Handover {
                next,
                same_candidate,
                gap_ms,
            } => format!(
                "-> {next}{} after {gap_ms:.0} ms",
                if *same_candidate {
                    " (same candidate)"
                } else {
                    ""
                }
            ),
            Outcome::Kept => "kept leading".into(),
            Outcome::NoLeaderAfter => "no leader after".into(),
            Outcome::NoLeaderAtFault => "no leader at the fault".into(),
        };
        let mut text = format!(
            "{}: {} fleet, {} leader {outcome}",
            self.label, self.fleet, self.faulted
        );
        if let Some(paused) = &self.paused {
            let _ = write!(
                text,
                "; after SIGCONT: {} unit(s) of work, stopped after {:?}, tokens {:?} -> {:?}",
                paused.units_after, paused.stopped_after, paused.token, paused.next_token
            );
        }
        for overlap in &self.client_go_overlaps {
            let _ = write!(
                text,
                "; client-go overlap {} -> {} of {:.0} ms",
                overlap.earlier, overlap.later, overlap.overlap_ms
            );
        }
        for release in &self.foreign_releases {
            let _ = write!(
                text,
                "; client-go {} released the live lease of {} (ours) and took it; overlap {:.1} ms",
                release.go, release.ours, release.overlap_ms
            );
        }
        for note in self.notes.iter().chain(&self.engine_violations) {
            let _ = write!(text, "; {note}");
        }
        text
    }
}

// ---------------------------------------------------------------------------------------------
// The campaign.

/// Runs one trial of a per-leader fault.
async fn leader_trial(
    plane: &ControlPlane,
    toxiproxy: &Toxiproxy,
    kubeconfigs: &Path,
    kind: Kind,
    number: usize,
) -> TrialResult {
    let mut fleet = Fleet::start(plane, toxiproxy, kubeconfigs, kind, number).await;
    // A few renews and units of work before the fault.
    tokio::time::sleep(SECOND).await;
    let injected = fleet.inject().await;
    let result = fleet.finish(injected).await;
    eprintln!("fault campaign: {}", result.summary());
    result
}

/// Runs `numbers.len()` fleets through one restart of the private control plane.
async fn restart_batch(
    private: &PrivatePlane,
    toxiproxy: &Toxiproxy,
    kubeconfigs: &Path,
    kind: Kind,
    numbers: Vec<usize>,
) -> Vec<TrialResult> {
    let plane = &private.plane;
    let mut fleets = future::join_all(
        numbers
            .iter()
            .map(|&n| Fleet::start(plane, toxiproxy, kubeconfigs, kind, n)),
    )
    .await;
    tokio::time::sleep(SECOND).await;
    let mut leaders = Vec::new();
    for fleet in &mut fleets {
        let Some(leader) = fleet.await_leader(20 * SECOND).await else {
            panic!(
                "{}: no leader to fault\n{}",
                fleet.label(),
                fleet.transcripts()
            );
        };
        leaders.push(leader);
    }
    let at = Instant::now();
    let server = match kind {
        Kind::RestartApiserver => Server::ApiServer,
        Kind::RestartEtcd => Server::Etcd,
        _ => unreachable!("{kind:?} is no restart"),
    };
    let server_ready = Some(private.restart(server).await);
    let results = future::join_all(fleets.into_iter().zip(leaders).map(|(fleet, leader)| {
        fleet.finish(Injected {
            leader,
            at,
            server_ready,
        })
    }))
    .await;
    for result in &results {
        eprintln!("fault campaign: {}", result.summary());
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_campaign() {
    let settings = settings();
    let began = Instant::now();
    let cluster = control_plane();
    let bin_dir = cluster.bin_dir();
    let work_dir = std::env::temp_dir().join(format!("leader-faults-{}", std::process::id()));
    std::fs::create_dir_all(&work_dir).expect("creating the campaign's directory");
    let _cleanup = RemoveOnDrop(work_dir.clone());
    let toxiproxy = Toxiproxy::start(&bin_dir.join("toxiproxy"), &work_dir.join("toxiproxy.log"));

    // Campaign-wide trial numbers: trial t of the k-th kind is number k + t, so that fleets
    // and faulted implementations alternate within each kind and across kinds.
    let mut leader_trials = Vec::new();
    let mut restart_trials: Vec<(Kind, Vec<usize>)> = Vec::new();
    for (k, &kind) in settings.kinds.iter().enumerate() {
        let numbers: Vec<usize> = (0..settings.trials).map(|t| k + t).collect();
        if kind.is_restart() {
            for batch in numbers.chunks(settings.restart_fleets) {
                restart_trials.push((kind, batch.to_vec()));
            }
        } else {
            leader_trials.extend(numbers.into_iter().map(|n| (kind, n)));
        }
    }
    // Interleave kinds, so that concurrent trials differ.
    leader_trials.sort_by_key(|&(kind, number)| (number, kind));
    let mut restarts_injected: BTreeMap<Kind, usize> = BTreeMap::new();
    for (kind, _) in &restart_trials {
        *restarts_injected.entry(*kind).or_default() += 1;
    }

    let leader_results = futures::stream::iter(leader_trials)
        .map(|(kind, number)| leader_trial(&cluster, &toxiproxy, &work_dir, kind, number))
        .buffer_unordered(settings.parallel)
        .collect::<Vec<_>>();
    let restart_results = async {
        if restart_trials.is_empty() {
            return (Vec::new(), Duration::ZERO);
        }
        let private = PrivatePlane::start_beside(&cluster).await;
        let mut results = Vec::new();
        let restarts_began = Instant::now();
        for (kind, numbers) in restart_trials {
            results.extend(restart_batch(&private, &toxiproxy, &work_dir, kind, numbers).await);
        }
        let spent = restarts_began.elapsed();
        tokio::task::spawn_blocking(move || drop(private))
            .await
            .expect("stopping the private control plane");
        (results, spent)
    };
    let (mut results, (restart_results, _)) = tokio::join!(leader_results, restart_results);
    results.extend(restart_results);
    results.sort_by_key(|result| (result.kind, result.number));
    let wall = began.elapsed();

    let summary = Summary {
        settings: &settings,
        results: &results,
        restarts_injected,
        wall,
    };
    eprintln!("{}", summary.table());
    if let Some(path) = &settings.report {
        std::fs::write(path, summary.markdown(&results))
            .unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
        eprintln!("fault campaign: wrote {}", path.display());
    }
    for result in &results {
        if !result.client_go_overlaps.is_empty() {
            eprintln!(
                "fault campaign: client-go finding in {}:\n{}",
                result.label, result.transcript
            );
        }
    }
    let failed: Vec<&TrialResult> = results
        .iter()
        .filter(|result| !result.engine_violations.is_empty())
        .collect();
    assert!(
        failed.is_empty(),
        "{} trial(s) broke exclusive leadership or the paused-leader guarantee:\n{}",
        failed.len(),
        failed
            .iter()
            .map(|result| format!("{}\n{}", result.summary(), result.transcript))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let leaderless: Vec<&TrialResult> = results
        .iter()
        .filter(|result| matches!(result.outcome, Outcome::NoLeaderAfter))
        .collect();
    assert!(
        leaderless.is_empty(),
        "no leader after the fault in: {:?}",
        leaderless.iter().map(|r| &r.label).collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------------------------
// The results table.

struct Summary<'a> {
    settings: &'a Settings,
    results: &'a [TrialResult],
    /// Per restart kind, how many restarts were done.
    restarts_injected: BTreeMap<Kind, usize>,
    wall: Duration,
}

/// Gap statistics of handovers without overlap, in milliseconds.
fn gap_stats(gaps: &mut [f64]) -> String {
    if gaps.is_empty() {
        return "- | - | -".into();
    }
    gaps.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let index = ((p / 100.0) * gaps.len() as f64).ceil() as usize;
        gaps[index.clamp(1, gaps.len()) - 1]
    };
    format!(
        "{:.0} | {:.0} | {:.0}",
        rank(50.0),
        rank(99.0),
        gaps[gaps.len() - 1]
    )
}

impl<'a> Summary<'a> {
    fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &'a TrialResult> + '_ {
        self.results.iter().filter(move |r| r.kind == kind)
    }

    fn faults_injected(&self, kind: Kind) -> usize {
        if kind.is_restart() {
            self.restarts_injected.get(&kind).copied().unwrap_or(0)
        } else {
            self.of_kind(kind).count()
        }
    }

    /// Gaps (ms) of the non-overlapping handovers among `results`.
    fn gaps<'b>(results: impl Iterator<Item = &'b TrialResult>) -> Vec<f64> {
        results
            .filter_map(|r| match r.outcome {
                Outcome::Handover { gap_ms, .. } if gap_ms >= 0.0 => Some(gap_ms),
                _ => None,
            })
            .collect()
    }

    /// The main table, as Markdown.
    fn table(&self) -> String {
        let mut text = String::from(
            "| fault | trials | faults injected | handovers | kept leading | overlaps, ours at fault | overlaps, client-go earlier | gap p50 (ms) | gap p99 (ms) | gap max (ms) |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        let mut totals = [0usize; 6];
        for &kind in &self.settings.kinds {
            let trials = self.of_kind(kind).count();
            let injected = self.faults_injected(kind);
            let handovers = self
                .of_kind(kind)
                .filter(|r| matches!(r.outcome, Outcome::Handover { .. }))
                .count();
            let kept = self
                .of_kind(kind)
                .filter(|r| matches!(r.outcome, Outcome::Kept))
                .count();
            let ours: usize = self
                .of_kind(kind)
                .map(|r| {
                    r.engine_violations
                        .iter()
                        .filter(|v| v.starts_with("overlap"))
                        .count()
                })
                .sum();
            let go: usize = self.of_kind(kind).map(|r| r.client_go_overlaps.len()).sum();
            for (total, n) in totals
                .iter_mut()
                .zip([trials, injected, handovers, kept, ours, go])
            {
                *total += n;
            }
            let _ = writeln!(
                text,
                "| {} | {trials} | {injected} | {handovers} | {kept} | {ours} | {go} | {} |",
                kind.title(),
                gap_stats(&mut Self::gaps(self.of_kind(kind)))
            );
        }
        let [trials, injected, handovers, kept, ours, go] = totals;
        let _ = writeln!(
            text,
            "| **all** | **{trials}** | **{injected}** | **{handovers}** | **{kept}** | **{ours}** | **{go}** | {} |",
            gap_stats(&mut Self::gaps(self.results.iter()))
        );
        text
    }

    /// Per kind, split by the faulted leader's implementation and the next leader's.
    fn split_table(&self) -> String {
        let mut text = String::from(
            "| fault | faulted leader -> next leader | trials | overlaps, client-go earlier | gap p50 (ms) | gap p99 (ms) | gap max (ms) |\n\
             |---|---|---:|---:|---:|---:|---:|\n",
        );
        for &kind in &self.settings.kinds {
            let mut groups: BTreeMap<(Implementation, String), Vec<&TrialResult>> = BTreeMap::new();
            for result in self.of_kind(kind) {
                let next = match &result.outcome {
                    Outcome::Handover {
                        next,
                        same_candidate: false,
                        ..
                    } => next.to_string(),
                    Outcome::Handover {
                        next,
                        same_candidate: true,
                        ..
                    } => format!("{next} (itself again)"),
                    Outcome::Kept => "none: kept leading".into(),
                    Outcome::NoLeaderAfter => "none: no leader".into(),
                    Outcome::NoLeaderAtFault => "none: no leader at the fault".into(),
                };
                groups
                    .entry((result.faulted, next))
                    .or_default()
                    .push(result);
            }
            for ((faulted, next), group) in groups {
                let go: usize = group.iter().map(|r| r.client_go_overlaps.len()).sum();
                let faulted = match faulted {
                    Implementation::Rust => "ours",
                    Implementation::Go => "Go peer",
                };
                let next = next.replace("Rust", "ours").replace("Go", "Go peer");
                let _ = writeln!(
                    text,
                    "| {} | {faulted} -> {next} | {} | {go} | {} |",
                    kind.name(),
                    group.len(),
                    gap_stats(&mut Self::gaps(group.into_iter()))
                );
            }
        }
        text
    }

    /// For control-plane restarts, by the faulted leader's implementation: how long it kept
    /// leading into the restart, and how soon after the server was ready the next leader began.
    fn recovery_table(&self) -> String {
        let mut text = String::from(
            "| fault | faulted leader | trials | led on after the restart began, p50 / max (ms) | next leader after the server was ready, p50 / p99 / max (ms) |\n\
             |---|---|---:|---:|---:|\n",
        );
        for &kind in self.settings.kinds.iter().filter(|kind| kind.is_restart()) {
            for implementation in [Implementation::Rust, Implementation::Go] {
                let recoveries: Vec<&Recovery> = self
                    .of_kind(kind)
                    .filter(|r| r.faulted == implementation)
                    .filter_map(|r| r.recovery.as_ref())
                    .collect();
                if recoveries.is_empty() {
                    continue;
                }
                let mut led: Vec<f64> = recoveries.iter().map(|r| r.led_after_restart_ms).collect();
                led.sort_by(f64::total_cmp);
                let mut next: Vec<f64> = recoveries.iter().map(|r| r.next_after_ready_ms).collect();
                let faulted = match implementation {
                    Implementation::Rust => "ours",
                    Implementation::Go => "Go peer",
                };
                let _ = writeln!(
                    text,
                    "| {} | {faulted} | {} | {:.0} / {:.0} | {} |",
                    kind.name(),
                    recoveries.len(),
                    led[(led.len() - 1) / 2],
                    led[led.len() - 1],
                    gap_stats(&mut next).replace(" | ", " / ")
                );
            }
        }
        text
    }

    fn paused_table(&self) -> String {
        let mut text = String::from(
            "| paused leader | trials | stopped leading before any further unit of work | started another unit of work after SIGCONT | token below the new leader's | SIGCONT to `stopped leading`, p50 / max (ms) | pause p50 (ms) |\n\
             |---|---:|---:|---:|---:|---:|---:|\n",
        );
        for implementation in [Implementation::Rust, Implementation::Go] {
            let paused: Vec<&PausedResult> = self
                .results
                .iter()
                .filter_map(|r| r.paused.as_ref())
                .filter(|p| p.implementation == implementation)
                .collect();
            if paused.is_empty() {
                continue;
            }
            let clean = paused
                .iter()
                .filter(|p| p.units_after == 0 && p.stopped_after.is_some())
                .count();
            let worked = paused.iter().filter(|p| p.units_after > 0).count();
            let lower = paused.iter().filter(|p| p.token_lower).count();
            let mut stops: Vec<f64> = paused
                .iter()
                .filter_map(|p| p.stopped_after)
                .map(|d| d.as_secs_f64() * 1e3)
                .collect();
            stops.sort_by(f64::total_cmp);
            let mut pauses: Vec<f64> = paused
                .iter()
                .map(|p| p.paused_for.as_secs_f64() * 1e3)
                .collect();
            pauses.sort_by(f64::total_cmp);
            let name = match implementation {
                Implementation::Rust => "ours (`is_leading()` before each unit)",
                Implementation::Go => "Go peer (`ctx.Err() == nil` before each unit)",
            };
            let _ = writeln!(
                text,
                "| {name} | {} | {clean} | {worked} | {lower} | {} / {} | {:.0} |",
                paused.len(),
                stops
                    .get(stops.len().saturating_sub(1) / 2)
                    .map_or("-".into(), |v| format!("{v:.0}")),
                stops.last().map_or("-".into(), |v| format!("{v:.0}")),
                pauses.get(pauses.len() / 2).copied().unwrap_or_default()
            );
        }
        text
    }

    fn foreign_release_findings(&self) -> String {
        let releases: Vec<(&TrialResult, &ForeignRelease)> = self
            .results
            .iter()
            .flat_map(|r| r.foreign_releases.iter().map(move |o| (r, o)))
            .collect();
        if releases.is_empty() {
            return "No client-go peer wrote away a lease our candidate held.\n".into();
        }
        let mut overlaps: Vec<f64> = releases.iter().map(|(_, r)| r.overlap_ms).collect();
        overlaps.sort_by(f64::total_cmp);
        let trials: Vec<String> = releases.iter().map(|(r, _)| r.label.clone()).collect();
        format!(
            "{} trial(s) ({}) where a client-go peer, after its partition healed, wrote a released \
             record over the lease OUR candidate held, then acquired it itself within \
             milliseconds. client-go's `release()` re-reads the Lease but checks `IsLeader()` \
             against its stale observed record, so it overwrites a lease it no longer holds. Our \
             leader stopped as soon as its watch showed the foreign record (no confirming GET once \
             our own last write has been seen on the watch), {:.1} ms p50 and {:.1} ms max after \
             the Go peer said it leads. No lease protocol can keep a third writer from replacing \
             the record; these overlaps are counted here and not as engine violations. Every \
             other overlap with our leader as the earlier one fails the campaign.\n",
            releases.len(),
            trials.join(", "),
            overlaps[overlaps.len() / 2],
            overlaps[overlaps.len() - 1],
        )
    }

    fn client_go_findings(&self) -> String {
        let overlaps: Vec<(&TrialResult, &ClientGoOverlap)> = self
            .results
            .iter()
            .flat_map(|r| r.client_go_overlaps.iter().map(move |o| (r, o)))
            .collect();
        if overlaps.is_empty() {
            return "No overlap with a client-go leader as the earlier one was seen.\n".into();
        }
        let mut by_kind: BTreeMap<Kind, Vec<f64>> = BTreeMap::new();
        let (mut released, mut expired, mut foreign) = (0, 0, 0);
        for (result, overlap) in &overlaps {
            by_kind
                .entry(result.kind)
                .or_default()
                .push(overlap.overlap_ms);
            match overlap.how {
                Takeover::Released { .. } => released += 1,
                Takeover::Expired { .. } => expired += 1,
                Takeover::ReleasedByAnother { .. } => foreign += 1,
            }
        }
        let mut text = format!(
            "{} overlap(s) with the client-go peer as the earlier leader: the next leader took \
             over by the rules ({released} after a release written by the Go leader, {expired} \
             after its record had stood unchanged for the lease duration, {foreign} after a \
             client-go release written over our candidate's own live record) while the Go \
             leader's `OnStartedLeading` context was still live.\n\n\
             | fault | overlaps | overlap p50 (ms) | overlap max (ms) |\n|---|---:|---:|---:|\n",
            overlaps.len()
        );
        for (kind, mut values) in by_kind {
            values.sort_by(f64::total_cmp);
            let _ = writeln!(
                text,
                "| {} | {} | {:.0} | {:.0} |",
                kind.name(),
                values.len(),
                values[(values.len() - 1) / 2],
                values[values.len() - 1]
            );
        }
        text.push_str("\nEach one, with its evidence:\n\n");
        for (result, overlap) in &overlaps {
            let how = match overlap.how {
                Takeover::Released {
                    release_to_takeover_ms,
                } => format!(
                    "the Go leader released the lease (holder emptied, leaseDurationSeconds 1); \
                     {} took over {release_to_takeover_ms:.0} ms later",
                    overlap.later
                ),
                Takeover::Expired {
                    since_last_renew_ms,
                } => format!(
                    "the Go leader's last renew stood unchanged for {since_last_renew_ms:.0} ms \
                     (lease duration 4000 ms) before {} took over",
                    overlap.later
                ),
                Takeover::ReleasedByAnother {
                    release_to_takeover_ms,
                } => format!(
                    "the Go leader's lease expired and {0} took it; then a release (holder \
                     emptied) was written over {0}'s live record, which {0} had not written (it \
                     had not begun shutting down), and {0} took the released lease again \
                     {release_to_takeover_ms:.0} ms later",
                    overlap.later
                ),
            };
            let _ = writeln!(
                text,
                "- {}: {} (client-go) -> {} ({}): {how}; the Go leader's work ended {:.0} ms \
                 after {} started, {:.0} ms after the lease stopped being its own and {:.0} ms \
                 after its renew loop had given up (last renew + 1 s + 3 s).",
                result.label,
                overlap.earlier,
                overlap.later,
                overlap.later_implementation,
                overlap.overlap_ms,
                overlap.later,
                overlap.work_after_lease_ms,
                overlap.work_after_renew_gave_up_ms
            );
        }
        text
    }

    fn markdown(&self, results: &[TrialResult]) -> String {
        let trials = results.len();
        let minutes = self.wall.as_secs_f64() / 60.0;
        let mut text = format!(
            "# Fault campaign\n\n\
             Generated by `make fault-campaign` (`tests/cluster/faults.rs`): {trials} trials, \
             {} per fault kind, {} at a time for the network and signal faults, control-plane \
             restarts one after the other with {} fleets each, in {minutes:.1} minutes on a \
             {}-core machine. Do not edit by hand; run the campaign again.\n\n\
             Every trial is a fresh fleet of three candidates on one Lease with the fast test \
             timings (lease duration 4 s, renew deadline 3 s, retry period 1 s): 2 of ours + 1 \
             client-go peer, or 1 + 2, alternating. The fault hits the current leader, ours or \
             the Go peer in turn; every network fault goes through that leader's own toxiproxy \
             proxy only.\n\n",
            self.settings.trials,
            self.settings.parallel,
            self.settings.restart_fleets,
            std::thread::available_parallelism().map_or(0, usize::from),
        );
        text.push_str("## Results\n\n");
        text.push_str(&self.table());
        text.push_str(
            "\n*handovers*: the faulted leader stopped leading and a leader followed (another \
             candidate, or the same one once it had stopped); *kept leading*: the fault did not \
             end its leadership. *gap*: from the end of the faulted leadership to the start of \
             the next one, over the handovers without overlap. *overlaps, ours at fault* counts \
             the overlapping pairs of leaderships in which our candidate led without the lease \
             (it was the earlier leader, or it started while a client-go leader still held the \
             lease); it must be 0, and the campaign fails otherwise (see *Engine violations*).\n\n",
        );
        text.push_str("### By implementation\n\n");
        text.push_str(&self.split_table());
        if self.settings.kinds.iter().any(|kind| kind.is_restart()) {
            text.push_str("\n### Control-plane restarts: when leadership ends and resumes\n\n");
            text.push_str(&self.recovery_table());
            text.push_str(
                "\nThe gap above runs from the end of the faulted leadership to the start of the \
                 next, so it also counts how long the faulted leader kept leading into the outage: \
                 our leader stops at its renew deadline (3 s after its last renew), while the \
                 client-go leader keeps its context until its renew loop and `release()` give up \
                 on a connection the stopping server no longer answers. The recovery itself is the \
                 last column: from the launcher's report that the restarted server is ready to the \
                 next leadership, the same reference for both implementations. The report comes \
                 up to about a second after the server serves again (the launcher waits for \
                 `/readyz`, then finishes its own start-up steps and writes its state file), so \
                 values below zero mean the next leader began before the report.\n",
            );
        }
        text.push_str("\n## Paused leaders (SIGSTOP > lease duration, then SIGCONT)\n\n");
        text.push_str(&self.paused_table());
        text.push_str(
            "\nOur candidate checks `Leadership::is_leading()` before each unit of work: it \
             reads the clock and fires the token past the term's deadline, so a resumed process \
             stops before another unit even if the runtime has not run yet. The client-go peer \
             checks `ctx.Err() == nil`, the only check client-go offers; that context ends only \
             once the elector's renew loop has run and given up.\n\n",
        );
        text.push_str("## Engine violations\n\n");
        let failed: Vec<&TrialResult> = results
            .iter()
            .filter(|r| !r.engine_violations.is_empty())
            .collect();
        if failed.is_empty() {
            text.push_str("None.\n\n");
        } else {
            for result in failed {
                let mut seen = Vec::new();
                for violation in &result.engine_violations {
                    if !seen.contains(&violation) {
                        seen.push(violation);
                    }
                }
                let _ = writeln!(
                    text,
                    "- {} ({} fleet, {} leader faulted): {} violation(s): {}",
                    result.label,
                    result.fleet,
                    result.faulted,
                    result.engine_violations.len(),
                    seen.iter()
                        .map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                );
            }
            text.push_str(
                "\nThe transcripts are in the campaign's output (the test fails with them).\n\n",
            );
        }
        text.push_str("## Client-go findings\n\n");
        text.push_str(&self.client_go_findings());
        text.push_str("\n### A client-go peer releasing our live lease\n\n");
        text.push_str(&self.foreign_release_findings());
        text.push_str(METHOD);
        text
    }
}

const METHOD: &str = "
## Method

- **Intervals.** Every candidate prints `leading` when its leader work starts (ours: the
  closure given to `Election::lead` starts; client-go: `OnStartedLeading` runs) and `stopped
  leading` when it ends (ours: the leadership token fired; client-go: the context given to
  `OnStartedLeading` is done), and one `working` line per unit of work (every 500 ms). With
  `--timestamps` each line starts with the machine's `CLOCK_MONOTONIC` reading taken when it was
  printed (Rust: the clock behind `std::time::Instant`; Go: `clock_gettime(CLOCK_MONOTONIC)`).
  All processes run on one machine, so all readings are on one clock; the test places every
  line at its stamp, not at the time it read it.
- **Ends that a process cannot print.** A SIGKILLed leader's interval ends when `kill` returned.
  A SIGSTOPped leader's interval ends, for the overlap check, when `kill -STOP` returned (and
  `/proc` showed the process stopped): a stopped process does no work. What it does after
  SIGCONT is checked on its own (the paused-leader table).
- **Overlap.** Two intervals overlap unless one ends at or before the other starts. An overlap
  whose earlier leader is ours fails the campaign. One whose earlier leader is the client-go
  peer is classified from the Lease history (a watch from the test, straight to the API server):
  a client-go finding if the next leader took over after a release written by the Go leader or
  after the Go leader's last record had stood unchanged for a lease duration; anything else
  fails the campaign.
- **Bounds.** A stamp is taken just before the line is written, after the event it reports,
  so an interval's start is late by at most the time between the event and the print (the
  `leading` line is the first thing the work does) and its end is late the same way: both
  sides of an overlap comparison carry the same kind of delay, microseconds on an idle core,
  more under load. A unit of work is stamped after its check (`is_leading()`), so a `working`
  line stamped after SIGCONT is one whose check ran after SIGCONT, except when the SIGSTOP
  landed between the check and the stamp (a window of a few instructions). SIGSTOP and SIGKILL
  times are taken after the signal was sent, so they are upper bounds of the moment the
  process stopped.
- **Faults.** Network faults are toxics on the leader's proxy (toxiproxy v2.5.0, from the Go
  module proxy), held until another candidate leads plus 1 s, at most 12 s (cut, reset) or 8 s
  (latency, bandwidth): `timeout` (no timeout: drop all data) both ways; `latency` 2000 ms with
  1000 ms jitter on responses; `bandwidth` 1 KB/s both ways; `reset_peer` (RST on the first
  byte) on requests. SIGSTOP lasts until another candidate leads and at least 5 s (lease
  duration + 1 s). Restarts are SIGTERM and start again on the same port (and for etcd the same
  data), done by the launcher of a private control plane on SIGUSR1 (kube-apiserver) and
  SIGUSR2 (etcd); several fleets, each on its own Lease, go through each restart, and every one
  of them is a trial.
";
