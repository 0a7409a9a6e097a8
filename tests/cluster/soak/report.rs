//! The soak's report: the Markdown file with its header, tables and method, the SVG plot beside
//! it, the raw samples as CSV, and the tables the test prints.

use std::fmt::Write as _;
use std::time::Instant;

use super::resources::{FLAT, IDLE_CONNECTION_LIFETIME, Series, Verdict, Windows, percentile};
use super::{Check, Fault, Injected, LEASES, PAUSE, Replica, Settings, Soak};
use crate::plot;

/// Per long-lived process, each judged series with its verdict.
pub(super) type Judged = Vec<(String, Vec<(&'static str, Option<Verdict>)>)>;

/// Everything the report shows.
pub(super) struct Summary<'a, 'b> {
    pub(super) settings: &'a Settings,
    pub(super) soak: &'a Soak<'b>,
    pub(super) windows: Windows,
    pub(super) faults_ended: Instant,
    pub(super) checks: &'a [Check],
    pub(super) judged: &'a Judged,
    /// Leadership intervals the processes reported.
    pub(super) intervals: usize,
    /// Changes of holder the API server committed.
    pub(super) takeovers: usize,
}

impl Summary<'_, '_> {
    fn faults_table(&self) -> String {
        let mut text = String::from(
            "| fault | injected | target led leases | leases handed over | every lease led again after, p50 / p99 / max (ms) | not recovered |\n\
             |---|---:|---:|---:|---:|---:|\n",
        );
        for fault in [Fault::Cut, Fault::Term, Fault::Kill] {
            let of_kind: Vec<&Injected> = self
                .soak
                .injected
                .iter()
                .filter(|i| i.fault == fault)
                .collect();
            let mut times: Vec<f64> = of_kind
                .iter()
                .filter_map(|i| i.recovered)
                .map(|d| d.as_secs_f64() * 1e3)
                .collect();
            times.sort_by(f64::total_cmp);
            let times = match (percentile(&times, 50.0), percentile(&times, 99.0)) {
                (Some(p50), Some(p99)) => {
                    format!("{p50:.0} / {p99:.0} / {:.0}", times[times.len() - 1])
                }
                _ => "-".to_owned(),
            };
            let _ = writeln!(
                text,
                "| {} | {} | {} | {} | {times} | {} |",
                fault.title(),
                of_kind.len(),
                of_kind.iter().filter(|i| i.led > 0).count(),
                of_kind.iter().map(|i| i.led).sum::<usize>(),
                of_kind.iter().filter(|i| i.recovered.is_none()).count()
            );
        }
        text
    }

    fn resources_table(&self) -> String {
        let mut text = String::from(
            "| process | lifetime (s) | RSS (MiB) | fds other than sockets | sockets | alive tasks - leases led - sockets | verdict |\n\
             |---|---:|---:|---:|---:|---:|---|\n",
        );
        for (id, verdicts) in self.judged {
            let process = &self.soak.processes[self.soak.index(id)];
            let flat = verdicts
                .iter()
                .all(|(_, verdict)| verdict.as_ref().is_some_and(Verdict::is_flat));
            let cells: Vec<String> = verdicts
                .iter()
                .map(|(_, verdict)| match verdict {
                    Some(verdict) if verdict.is_flat() => verdict.describe(),
                    Some(verdict) => format!("**{}**", verdict.describe()),
                    None => "no readings".into(),
                })
                .collect();
            let _ = writeln!(
                text,
                "| {id} | {:.0} | {} | {} |",
                self.lifetime(process),
                cells.join(" | "),
                if flat { "flat" } else { "**not flat**" }
            );
        }
        let restarted: Vec<&Replica> = self
            .soak
            .processes
            .iter()
            .filter(|p| !p.is_long_lived())
            .collect();
        let mut lifetimes: Vec<f64> = restarted.iter().map(|p| self.lifetime(p)).collect();
        lifetimes.sort_by(f64::total_cmp);
        let series: Vec<Series> = restarted
            .iter()
            .map(|p| Series::of(p, self.soak.began))
            .collect();
        // The lowest and the highest of the processes' peaks.
        let peaks = |pick: fn(&Series) -> &Vec<(f64, f64)>| {
            let peaks: Vec<f64> = series
                .iter()
                .filter_map(|s| pick(s).iter().map(|&(_, value)| value).reduce(f64::max))
                .collect();
            let low = peaks.iter().copied().reduce(f64::min);
            let high = peaks.iter().copied().reduce(f64::max);
            match (low, high) {
                (Some(low), Some(high)) => format!("peaks {low:.0} to {high:.0}"),
                _ => "-".to_owned(),
            }
        };
        let _ = writeln!(
            text,
            "| short-1 .. short-{} ({} processes) | {:.0} (p50) | {} | {} | {} | {} | not judged: each lives for two faults, less than the warm-up |",
            restarted.len(),
            restarted.len(),
            percentile(&lifetimes, 50.0).unwrap_or_default(),
            peaks(|s| &s.rss_mib),
            peaks(|s| &s.other_fds),
            peaks(|s| &s.sockets),
            peaks(|s| &s.other_tasks),
        );
        text
    }

    fn lifetime(&self, process: &Replica) -> f64 {
        let end = process.exited.map_or(self.faults_ended, |(at, _)| at);
        end.saturating_duration_since(process.started).as_secs_f64()
    }

    fn checks_list(&self) -> String {
        let mut text = String::new();
        for (what, result) in self.checks {
            match result {
                Ok(()) => {
                    let _ = writeln!(text, "- pass: {what}");
                }
                Err(why) => {
                    let first = why.lines().next().unwrap_or_default();
                    let _ = writeln!(text, "- **FAIL**: {what}: {first}");
                }
            }
        }
        text
    }

    fn findings(&self) -> String {
        let stale = &self.soak.stale_errors;
        if stale.is_empty() {
            return "No follower still showed a failed request at the end.\n".into();
        }
        let list: Vec<String> = stale
            .iter()
            .map(|(id, count)| format!("{id}: {count} of {LEASES} elections"))
            .collect();
        format!(
            "At the end, with every lease led, every watch back and every process live and ready, \
             followers still showed a request that had failed during a cut in \
             `LeaseStatus::last_error` ({}). The status clears it only at the next successful \
             request, and a follower fed by its watch sends none until it goes for a lease, so \
             the error can show long after the API server is back. It is reported here and not \
             failed on; a leader's failed request (cleared by its next renew, every second) \
             fails the soak.\n",
            list.join(", ")
        )
    }

    /// What the test prints at the end.
    pub(super) fn tables(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}",
            self.faults_table(),
            self.resources_table(),
            self.checks_list(),
            self.findings()
        )
    }

    pub(super) fn markdown(&self) -> String {
        let soak = self.soak;
        let minutes = self.settings.duration.as_secs_f64() / 60.0;
        let ran = self.faults_ended.duration_since(soak.began).as_secs_f64() / 60.0;
        let mut text = format!(
            "# Soak\n\n\
             Generated by {} (`tests/cluster/soak.rs`) with {minutes:.0} minute(s) asked: \
             {} fault cycles, {} faults in {ran:.1} minutes, on a {}-core machine. \
             `SOAK_MINUTES=N make soak` runs whole fault cycles for N minutes (30 by default) and \
             writes this file; `make test` runs one minute and writes under `target/soak/`. Do \
             not edit by hand; run the soak again.\n\n\
             Three processes of `examples/election.rs` contend for the same {LEASES} Leases with \
             the fast test timings (lease duration 4 s, renew deadline 3 s, retry period 1 s). \
             `long-1` and `long-2` live for the whole soak, each through a toxiproxy proxy of \
             its own; the third process is replaced after each signal by a new one with a new \
             identity (`short-1` .. `short-{}`). A cycle of faults: a toxiproxy cut of the \
             long-lived process leading the most leases (held until every lease is led by \
             another process, then 1 s more), SIGTERM of the restarted process, another cut, \
             SIGKILL of the restarted process; after each fault, every lease led again, then \
             {} s.\n\n",
            self.settings.run_by,
            soak.cycle_starts.len(),
            soak.injected.len(),
            std::thread::available_parallelism().map_or(0, usize::from),
            soak.restarts,
            PAUSE.as_secs(),
        );
        text.push_str("## Verdict\n\n");
        text.push_str(&self.checks_list());
        text.push_str("\n## Faults\n\n");
        text.push_str(&self.faults_table());
        let _ = write!(
            text,
            "\n*target led leases*: faults whose target led at least one lease when hit (a \
             restarted process leads only what the cut before handed it). *every lease led \
             again*: from the fault until every lease had exactly one leader by the processes' \
             own output, read every 50 ms. The API server committed {} changes of holder; the \
             processes reported {} leadership intervals.\n",
            self.takeovers, self.intervals
        );
        text.push_str("\n## Resources\n\n");
        let Windows {
            warm_up,
            first,
            last,
            cycles: (warm_up_cycles, window_cycles),
        } = self.windows;
        let _ = writeln!(
            text,
            "Warm-up: the first {warm_up_cycles} cycle(s), {warm_up:.0} s. Medians over the \
             first window after it ({window_cycles} cycle(s), {:.0}-{:.0} s) and the last window \
             ({:.0}-{:.0} s), first -> last. Flat: within {:.0} %; for the sockets, the last \
             window's peak against the peak before it, in windows of {:.0} s or more (see \
             Method).\n",
            first.0,
            first.1,
            last.0,
            last.1,
            FLAT * 100.0,
            IDLE_CONNECTION_LIFETIME
        );
        text.push_str(&self.resources_table());
        let svg = self
            .settings
            .report
            .with_extension("svg")
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let _ = write!(
            text,
            "\n![RSS, open file descriptors and tokio tasks of each process over the soak, faults \
             marked]({svg})\n"
        );
        text.push_str("\n## Findings\n\n");
        text.push_str(&self.findings());
        text.push_str(METHOD);
        text
    }

    /// Every sample and report of every process, and the faults, as CSV (seconds since the
    /// soak began), for a closer look than the plot.
    pub(super) fn csv(&self) -> String {
        let soak = self.soak;
        let mut text = String::from(
            "process,seconds,rss_kib,fds,sockets,tasks,leading,request_errors,leader_errors,watch_errors,live,ready,fault\n",
        );
        for process in &soak.processes {
            for sample in &process.samples {
                let _ = writeln!(
                    text,
                    "{},{:.3},{},{},{},,,,,,,,",
                    process.id(),
                    soak.seconds(sample.at),
                    sample.rss_kib,
                    sample.fds,
                    sample.sockets
                );
            }
            for report in &process.reports {
                let _ = writeln!(
                    text,
                    "{},{:.3},,,,{},{},{},{},{},{},{},",
                    process.id(),
                    soak.seconds(report.at),
                    report.tasks,
                    report.leading,
                    report.request_errors,
                    report.leader_errors,
                    report.watch_errors,
                    report.live,
                    report.ready
                );
            }
        }
        for injected in &soak.injected {
            let _ = writeln!(
                text,
                "{},{:.3},,,,,{},,,,,,{}",
                injected.target,
                soak.seconds(injected.at),
                injected.led,
                injected.fault.name()
            );
        }
        text
    }

    pub(super) fn plot(&self) -> String {
        let soak = self.soak;
        let mut panels = [
            plot::Panel::new("RSS (MiB)"),
            plot::Panel::new("open file descriptors (dashed: of them sockets)"),
            plot::Panel::new("alive tokio tasks (dashed: minus leases led and sockets)"),
        ];
        let colors = ["#1f77b4", "#ff7f0e"];
        let mut long = 0;
        for process in &soak.processes {
            let series = Series::of(process, soak.began);
            let (color, label) = if process.is_long_lived() {
                long += 1;
                (colors[(long - 1) % 2], Some(process.id().to_owned()))
            } else {
                let first = process.id() == "short-1";
                (
                    "#2ca02c",
                    first.then(|| "short-1 .. (restarted)".to_owned()),
                )
            };
            let line = |points: Vec<(f64, f64)>, dashed: bool, label: Option<String>| plot::Line {
                label,
                color,
                dashed,
                points,
            };
            panels[0]
                .lines
                .push(line(series.rss_mib, false, label.clone()));
            panels[1].lines.push(line(series.fds, false, label.clone()));
            panels[1].lines.push(line(series.sockets, true, None));
            panels[2].lines.push(line(series.tasks, false, label));
            panels[2].lines.push(line(series.other_tasks, true, None));
        }
        let markers = soak
            .injected
            .iter()
            .map(|i| plot::Marker {
                at: soak.seconds(i.at),
                color: fault_color(i.fault),
            })
            .collect();
        let Windows {
            warm_up,
            first,
            last,
            ..
        } = self.windows;
        plot::Chart {
            title: format!(
                "Soak: 3 processes x {LEASES} leases, {} faults",
                soak.injected.len()
            ),
            x_max: soak.seconds(self.faults_ended),
            x_label: None,
            panels: panels.into(),
            markers,
            marker_legend: [Fault::Cut, Fault::Term, Fault::Kill]
                .map(|fault| (fault.name(), fault_color(fault)))
                .into(),
            bands: vec![
                (0.0, warm_up, "#000000", "warm-up"),
                (first.0, first.1, "#e6b800", "first window"),
                (last.0, last.1, "#e6b800", "last window"),
            ],
        }
        .svg()
    }
}

fn fault_color(fault: Fault) -> &'static str {
    match fault {
        Fault::Cut => "#7f7f7f",
        Fault::Term => "#9467bd",
        Fault::Kill => "#d62728",
    }
}

const METHOD: &str = "
## Method

- **Leadership.** Every process prints `leading <lease> (fencing token <n>)` when its work on a
  lease starts and `stopped leading <lease>` when the leadership token fires, each line stamped
  with the machine's monotonic clock (`--timestamps`). The fault campaign's checker
  (`tests/cluster/leadership.rs`) builds each lease's leadership intervals from every process's
  output (a SIGKILLed process's open interval ends at the kill) and fails on any overlap or on
  fencing tokens that do not go up. Beside that, a watch from the test straight to
  kube-apiserver records each lease's changes of holder (`tests/cluster/lease_history.rs`), and
  every takeover must come after a release or with an `acquireTime` at least a lease duration
  after the previous holder's last `renewTime` (both written by the processes from the one
  machine's clock).
- **Resources.** RSS is `VmRSS` and open file descriptors the entries of `/proc/<pid>/fd`
  (sockets: those that link to `socket:[...]`), read by the test once a second. Alive tasks
  come from the process itself: with `--report-interval 1s`, `examples/election.rs` prints
  tokio's `RuntimeMetrics::num_alive_tasks()` and how many of its elections lead. Two kinds of
  task follow the load by design: `Election::lead` runs each term's work in a task of its own
  (one per lease led) and hyper drives each HTTP connection in a task of its own (one per
  socket); the judged series subtracts both (sockets from the `/proc` reading nearest the
  report), and what is left (per lease the elector and the example's `lead_forever` and
  `report_new_leaders`, and the watch) is what could leak. RSS, the fds other than sockets and
  those tasks must have medians within 5 % between the first window after warm-up and the
  last. The sockets are the HTTP/1.1 connections to kube-apiserver: hyper keeps an idle
  connection for 90 s, a takeover of dozens of leases opens dozens at once (up to 16 lease
  requests and 4 Events in flight), and a cut process piles up connection attempts until it
  is healed, so the count swings by dozens within seconds and stays up for a while after a
  large burst; its median moves by far more than 5 % with no leak at all (the table shows
  it), and so does the peak of a single window. What the bursts bound is the peak over the
  run: the last window's highest reading must not be more than 5 % above the highest before
  it, warm-up included (with the first burst of all, when the three processes create the
  leases). A connection never closed would raise every reading after it,
  so a leak ends above everything seen before; one held by a leaked task also shows in the
  tasks. The peak is judged only in windows of 90 s or more (kube-apiserver closes a
  connection after 90 s idle): in shorter ones, such as the one-minute run's, one burst's
  connections are still open in the next window, and whether the last window holds the
  highest peak says only which window got the largest takeover. Windows are whole fault cycles, so both hold the same mix of faults. The restarted
  processes are not judged: each lives for two faults, less than the warm-up, so none has a
  window after it; their peaks are shown.
- **Unrecovered errors.** The report line also gives how many elections hold a failed request
  not yet cleared by a success (`LeaseStatus::last_error`; how many of them lead), how many are
  fed by a failed watch (`watch_error`), and the verdicts of `Runtime::liveness` and
  `Runtime::readiness`. After the last fault the soak waits until every lease is led, takes
  reports from after that, and requires every process live and ready, no watch error, no
  leader with a failed request, each lease's holder at the API server equal to the one
  process leading it and renewed within the lease duration, and exit status 0 on SIGTERM.
- **Plot.** Written by the test (`tests/cluster/soak/plot.rs`); grey lines are cuts, purple
  SIGTERM, red SIGKILL; the shaded bands are the warm-up and the two windows.
";
