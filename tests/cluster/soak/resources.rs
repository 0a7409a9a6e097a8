//! The resources of a process over the soak, and the verdict on whether they stayed flat.
//!
//! Judged over whole fault cycles, so that both windows hold the same mix of faults: warm-up is
//! the first fifth of the cycles (at least one), a window a tenth (at least one); the first
//! window follows the warm-up, the last one ends with the faults.
//!
//! What is judged, and why each so:
//! - RSS, open file descriptors other than sockets, and alive tasks minus leases led minus open
//!   sockets: the median of the last window within 5 % of the first window's. Tasks minus those
//!   two, because two kinds of task follow the load by design: `Election::lead` runs each term's
//!   work in a task of its own (one per lease led), and hyper drives each HTTP connection in a
//!   task of its own (one per socket). What is left (per lease: the elector and the example's
//!   two tasks) is what could leak.
//! - Sockets: the HTTP/1.1 connections to kube-apiserver. hyper keeps an idle connection for
//!   90 s, a takeover of dozens of leases opens dozens at once (up to 16 lease requests and 4
//!   Events in flight), and a cut process piles up connection attempts until it is healed: the
//!   count swings by dozens within seconds and stays up for a while after a large burst, so
//!   its median moves by far more than 5 % with no leak at all, and so does the peak of a
//!   single window (93 in one, 104 in the next). What bursts bound is
//!   the peak over the run: the highest reading of the last window must not be more than 5 %
//!   above the highest before it (warm-up included, with the first burst of all, when three
//!   processes create the 100 leases). A connection never closed would raise every reading
//!   after it, so a leak ends above everything seen before. A connection held by a leaked task
//!   also shows in the tasks above, one per socket and one for its owner.
//!   The peak is judged only when the windows last at least [`IDLE_CONNECTION_LIFETIME`]: in
//!   shorter ones (the one-minute soak's are about 23 s) the connections of one burst are still
//!   open in the next window, so whether the last window's peak is the highest says which
//!   window happened to get the largest takeover, not whether anything leaked. The one-minute
//!   soak failed this way in 3 of 4 runs, on code before and after the commits of 2026-11-28,
//!   each time with a pool that jumped by 7 to 12 connections at one takeover and stayed level
//!   after it. Shorter runs report the peaks without judging them; RSS and the tasks above are
//!   judged in every run.

use std::time::Instant;

use super::{Replica, Sample};

/// The largest change between the first and the last window that counts as flat.
pub(super) const FLAT: f64 = 0.05;

/// How long kube-apiserver keeps an idle connection open (its `IdleTimeout`, 90 s), in seconds:
/// the connections a burst opens beyond what later requests reuse stay open this long, and
/// windows shorter than this cannot judge the sockets' peak (see the module's header).
pub(super) const IDLE_CONNECTION_LIFETIME: f64 = 90.0;

/// The windows the resources are judged over, in seconds since the soak began.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Windows {
    pub(super) warm_up: f64,
    pub(super) first: (f64, f64),
    pub(super) last: (f64, f64),
    /// Cycles in each: warm-up, a window.
    pub(super) cycles: (usize, usize),
}

impl Windows {
    /// From when each fault cycle started and when the faults ended (seconds); `None` for fewer
    /// than three cycles.
    pub(super) fn of(cycle_starts: &[f64], end: f64) -> Option<Windows> {
        let cycles = cycle_starts.len();
        if cycles < 3 {
            return None;
        }
        let warm_up = cycles.div_ceil(5).max(1);
        let window = cycles.div_ceil(10).max(1).min((cycles - warm_up) / 2);
        let start = |cycle: usize| cycle_starts.get(cycle).copied().unwrap_or(end);
        Some(Windows {
            warm_up: start(warm_up),
            first: (start(warm_up), start(warm_up + window)),
            last: (start(cycles - window), end),
            cycles: (warm_up, window),
        })
    }
}

/// How a series is judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Rule {
    /// The last window's median within [`FLAT`] of the first window's.
    Median,
    /// The last window's highest reading at most [`FLAT`] above the highest before it, judged
    /// only when the last window lasts at least [`IDLE_CONNECTION_LIFETIME`].
    Peak,
}

/// One series of one process, judged.
#[derive(Clone, Debug)]
pub(super) struct Verdict {
    pub(super) rule: Rule,
    /// The first window's median.
    pub(super) first: f64,
    /// The last window's median.
    pub(super) last: f64,
    /// The highest reading before the last window, warm-up included.
    pub(super) earlier_peak: f64,
    /// The highest reading of the last window.
    pub(super) last_peak: f64,
    /// Whether the windows are long enough for the rule (always, but for [`Rule::Peak`] in
    /// windows shorter than [`IDLE_CONNECTION_LIFETIME`]).
    pub(super) judged: bool,
}

impl Verdict {
    /// From `points` (seconds, value); `None` if a window holds none.
    pub(super) fn of(points: &[(f64, f64)], windows: &Windows, rule: Rule) -> Option<Verdict> {
        let values_in = |(from, to): (f64, f64)| {
            let mut values: Vec<f64> = points
                .iter()
                .filter(|(at, _)| (from..to).contains(at))
                .map(|&(_, value)| value)
                .collect();
            values.sort_by(f64::total_cmp);
            values
        };
        let first = values_in(windows.first);
        let last = values_in(windows.last);
        Some(Verdict {
            rule,
            first: median(&first)?,
            last: median(&last)?,
            earlier_peak: points
                .iter()
                .filter(|(at, _)| *at < windows.last.0)
                .map(|&(_, value)| value)
                .reduce(f64::max)?,
            last_peak: *last.last()?,
            judged: rule != Rule::Peak
                || windows.last.1 - windows.last.0 >= IDLE_CONNECTION_LIFETIME,
        })
    }

    /// The change from the first window to the last, as a fraction of the first.
    pub(super) fn change(&self) -> f64 {
        if self.first == 0.0 {
            return if self.last == 0.0 { 0.0 } else { f64::INFINITY };
        }
        (self.last - self.first) / self.first
    }

    /// Whether the series stayed flat; a series not [`judged`](Self::judged) passes.
    pub(super) fn is_flat(&self) -> bool {
        match self.rule {
            Rule::Median => self.change().abs() <= FLAT,
            Rule::Peak => !self.judged || self.last_peak <= self.earlier_peak * (1.0 + FLAT),
        }
    }

    /// `first -> last (change)` of the medians, and the peaks for [`Rule::Peak`].
    pub(super) fn describe(&self) -> String {
        let medians = format!(
            "{:.1} -> {:.1} ({:+.1} %)",
            self.first,
            self.last,
            self.change() * 100.0
        );
        match self.rule {
            Rule::Median => medians,
            Rule::Peak if self.judged => format!(
                "peak {:.0} before, {:.0} in the last window; median {medians}",
                self.earlier_peak, self.last_peak
            ),
            Rule::Peak => format!(
                "peak {:.0} before, {:.0} in the last window; median {medians}; not judged: \
                 windows shorter than {IDLE_CONNECTION_LIFETIME:.0} s",
                self.earlier_peak, self.last_peak
            ),
        }
    }
}

/// The median of sorted `values` (the mean of the middle two for an even count).
pub(super) fn median(values: &[f64]) -> Option<f64> {
    let middle = values.len() / 2;
    match values.len() {
        0 => None,
        n if n % 2 == 0 => Some((values[middle - 1] + values[middle]) / 2.0),
        _ => Some(values[middle]),
    }
}

/// The `p`th percentile (nearest rank) of sorted `values`.
pub(super) fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    Some(values[rank.clamp(1, values.len()) - 1])
}

/// A process's series, in seconds since the soak began.
pub(super) struct Series {
    pub(super) rss_mib: Vec<(f64, f64)>,
    pub(super) fds: Vec<(f64, f64)>,
    pub(super) sockets: Vec<(f64, f64)>,
    pub(super) other_fds: Vec<(f64, f64)>,
    pub(super) tasks: Vec<(f64, f64)>,
    /// Alive tasks minus leases led minus sockets (the `/proc` sample nearest the report).
    pub(super) other_tasks: Vec<(f64, f64)>,
}

impl Series {
    pub(super) fn of(process: &Replica, began: Instant) -> Series {
        let at = |instant: Instant| instant.saturating_duration_since(began).as_secs_f64();
        let samples = &process.samples;
        let of_samples = |value: fn(&Sample) -> f64| -> Vec<(f64, f64)> {
            samples.iter().map(|s| (at(s.at), value(s))).collect()
        };
        let nearest = |instant: Instant| {
            let after = samples.partition_point(|s| s.at < instant);
            [after.checked_sub(1), Some(after)]
                .into_iter()
                .flatten()
                .filter_map(|i| samples.get(i))
                .min_by_key(|s| {
                    if s.at > instant {
                        s.at - instant
                    } else {
                        instant - s.at
                    }
                })
        };
        Series {
            rss_mib: of_samples(|s| s.rss_kib as f64 / 1024.0),
            fds: of_samples(|s| s.fds as f64),
            sockets: of_samples(|s| s.sockets as f64),
            other_fds: of_samples(|s| (s.fds - s.sockets) as f64),
            tasks: process
                .reports
                .iter()
                .map(|r| (at(r.at), r.tasks as f64))
                .collect(),
            other_tasks: process
                .reports
                .iter()
                .filter_map(|r| {
                    let sample = nearest(r.at)?;
                    let unexplained = r.tasks as f64 - r.leading as f64 - sample.sockets as f64;
                    Some((at(r.at), unexplained))
                })
                .collect(),
        }
    }

    /// Each judged series with its name and verdict.
    pub(super) fn judge(&self, windows: &Windows) -> Vec<(&'static str, Option<Verdict>)> {
        vec![
            (
                "RSS (MiB)",
                Verdict::of(&self.rss_mib, windows, Rule::Median),
            ),
            (
                "fds other than sockets",
                Verdict::of(&self.other_fds, windows, Rule::Median),
            ),
            ("sockets", Verdict::of(&self.sockets, windows, Rule::Peak)),
            (
                "alive tasks - leases led - sockets",
                Verdict::of(&self.other_tasks, windows, Rule::Median),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_whole_cycles() {
        let starts: Vec<f64> = (0..3).map(|c| f64::from(c) * 24.0).collect();
        let windows = Windows::of(&starts, 70.0).unwrap();
        assert_eq!(windows.first, (24.0, 48.0));
        assert_eq!(windows.last, (48.0, 70.0));
        assert_eq!(windows.cycles, (1, 1));
        let starts: Vec<f64> = (0..75).map(|c| f64::from(c) * 24.0).collect();
        let windows = Windows::of(&starts, 1800.0).unwrap();
        assert_eq!(windows.cycles, (15, 8));
        assert_eq!(windows.first, (360.0, 552.0));
        assert_eq!(windows.last, (67.0 * 24.0, 1800.0));
        assert!(Windows::of(&starts[..2], 48.0).is_none());
    }

    #[test]
    fn growth_after_the_warm_up_is_not_flat() {
        // Cycles of 100 s, long enough for the peak rule; a reading every 5 s.
        let windows = Windows::of(&[0.0, 100.0, 200.0], 300.0).unwrap();
        let at = |s: u32| f64::from(s) * 5.0;
        let settled: Vec<(f64, f64)> = (0..60)
            .map(|s| (at(s), if s < 20 { f64::from(s) } else { 100.0 }))
            .collect();
        assert!(
            Verdict::of(&settled, &windows, Rule::Median)
                .unwrap()
                .is_flat()
        );
        let growing: Vec<(f64, f64)> = (0..60).map(|s| (at(s), 100.0 + f64::from(s))).collect();
        let verdict = Verdict::of(&growing, &windows, Rule::Median).unwrap();
        assert!(!verdict.is_flat(), "{verdict:?}");
        // A pool that swings under the same peak passes the peak rule, not the median one;
        // a lower peak in the first window than in the last does not matter.
        let swinging: Vec<(f64, f64)> = (0..60)
            .map(|s| {
                let high = if s < 40 { s % 10 < 3 } else { s % 10 < 6 };
                let peak = if (20..40).contains(&s) { 90.0 } else { 100.0 };
                (at(s), if high { peak } else { 40.0 })
            })
            .collect();
        let peak = Verdict::of(&swinging, &windows, Rule::Peak).unwrap();
        assert!(peak.judged && peak.is_flat(), "{peak:?}");
        let median = Verdict::of(&swinging, &windows, Rule::Median).unwrap();
        assert!(!median.is_flat(), "{median:?}");
        assert!(Verdict::of(&growing, &windows, Rule::Peak).is_some_and(|v| !v.is_flat()));
        assert!(Verdict::of(&settled[..25], &windows, Rule::Median).is_none());
    }

    #[test]
    fn the_sockets_peak_is_judged_only_in_windows_an_idle_connection_cannot_outlive() {
        for (cycle, judged) in [(23.0, false), (IDLE_CONNECTION_LIFETIME, true)] {
            let windows = Windows::of(&[0.0, cycle, 2.0 * cycle], 3.0 * cycle).unwrap();
            let seconds = (3.0 * cycle) as u32;
            // A pool that jumps by 12 at a takeover late in the run and stays level (what the
            // one-minute soak saw), and one that grows all along.
            let jumping: Vec<(f64, f64)> = (0..seconds)
                .map(|s| {
                    (
                        f64::from(s),
                        if f64::from(s) < 2.4 * cycle {
                            20.0
                        } else {
                            32.0
                        },
                    )
                })
                .collect();
            let growing: Vec<(f64, f64)> = (0..seconds)
                .map(|s| (f64::from(s), 20.0 + f64::from(s) / 4.0))
                .collect();
            for series in [jumping, growing] {
                let verdict = Verdict::of(&series, &windows, Rule::Peak).unwrap();
                assert_eq!(verdict.judged, judged, "{verdict:?}");
                assert_eq!(verdict.is_flat(), !judged, "{verdict:?}");
                assert_eq!(verdict.describe().contains("not judged"), !judged);
            }
            // The other rules are judged in windows of any length.
            let rss: Vec<(f64, f64)> = (0..seconds).map(|s| (f64::from(s), 24.0)).collect();
            assert!(Verdict::of(&rss, &windows, Rule::Median).unwrap().judged);
        }
    }

    #[test]
    fn medians_and_percentiles() {
        assert_eq!(median(&[1.0, 2.0, 3.0, 10.0]), Some(2.5));
        assert_eq!(median(&[1.0, 2.0, 3.0]), Some(2.0));
        assert_eq!(median(&[]), None);
        let values: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&values, 90.0), Some(9.0));
        assert_eq!(percentile(&values, 50.0), Some(5.0));
    }
}
