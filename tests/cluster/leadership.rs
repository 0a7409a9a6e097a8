//! Leadership intervals from the output of candidate processes, and the checks on them: no two
//! leaders at once, fencing tokens that go up from one holder to the next, and the time with no
//! leader between two of them. Used by the mixed fleets (`interop.rs`) and the fault campaign
//! (`faults.rs`); it works on any set of candidate transcripts.
//!
//! Times are readings of the machine's monotonic clock (`Instant`, `CLOCK_MONOTONIC` on Linux),
//! which every process on the machine shares. A line that starts with a `[<seconds>.<nanos>] `
//! stamp (`--timestamps` of `examples/election.rs` and of the client-go peer) is placed at that
//! stamp, taken by the candidate when it printed the line; other lines at the time the test read
//! them, which is later by the pipe's and the reader thread's delay.

use std::fmt;
use std::time::{Duration, Instant};

use crate::support::Implementation;

/// What one candidate process printed, for the leadership analysis.
pub(crate) struct Transcript<'a> {
    pub(crate) id: &'a str,
    pub(crate) implementation: Implementation,
    /// Its stdout lines with when the test read them.
    pub(crate) lines: &'a [(Instant, String)],
    /// When it was SIGKILLed (taken after the kill was sent): a leadership it had not reported
    /// stopped ends there at the latest.
    pub(crate) killed_at: Option<Instant>,
    /// When it was SIGSTOPped (taken after the signal was sent), if it was: a leadership that
    /// had begun before ends there for the overlap check, since a stopped process does no work.
    /// What it does once continued is for the caller to check (see `faults.rs`).
    pub(crate) paused_at: Option<Instant>,
}

/// How a leadership interval ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// The candidate printed `stopped leading`.
    Stopped(Instant),
    /// The candidate was SIGKILLed while leading; the time is an upper bound.
    Killed(Instant),
    /// The candidate was SIGSTOPped while leading; the time is an upper bound of the last
    /// moment it could act as leader before it was continued.
    Paused(Instant),
    /// No end is known (still running, or exited without saying): treated as lasting forever.
    Open,
}

/// One stretch of leadership, from a candidate's `leading` line to its end.
#[derive(Clone, Debug)]
pub(crate) struct Interval {
    pub(crate) id: String,
    pub(crate) implementation: Implementation,
    pub(crate) fencing_token: i64,
    pub(crate) start: Instant,
    pub(crate) end: End,
}

impl Interval {
    /// The end time, `None` when open.
    pub(crate) fn end_time(&self) -> Option<Instant> {
        match self.end {
            End::Stopped(at) | End::Killed(at) | End::Paused(at) => Some(at),
            End::Open => None,
        }
    }

    fn overlaps(&self, other: &Interval) -> bool {
        let before = |a: &Interval, b: &Interval| a.end_time().is_some_and(|end| end <= b.start);
        !before(self, other) && !before(other, self)
    }
}

/// An interval shown relative to `base`, for messages.
pub(crate) struct Relative<'a>(pub(crate) &'a Interval, pub(crate) Instant);

impl fmt::Display for Relative<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Relative(interval, base) = *self;
        let ms = |at: Instant| at.saturating_duration_since(base).as_secs_f64() * 1e3;
        write!(
            f,
            "{} ({}, token {}): {:.1} ms .. ",
            interval.id,
            interval.implementation,
            interval.fencing_token,
            ms(interval.start)
        )?;
        match interval.end {
            End::Stopped(at) => write!(f, "{:.1} ms", ms(at)),
            End::Killed(at) => write!(f, "{:.1} ms (SIGKILL)", ms(at)),
            End::Paused(at) => write!(f, "{:.1} ms (SIGSTOP)", ms(at)),
            End::Open => write!(f, "open"),
        }
    }
}

/// The line without its `[<seconds>.<nanos>] ` stamp, and the stamp as an `Instant`; `None`
/// for a line without one.
pub(crate) fn stamped(line: &str) -> Option<(Instant, &str)> {
    let rest = line.strip_prefix('[')?;
    let (stamp, text) = rest.split_once("] ")?;
    let (seconds, nanos) = stamp.split_once('.')?;
    if nanos.len() != 9 {
        return None;
    }
    let reading = Duration::new(seconds.parse().ok()?, nanos.parse().ok()?);
    Some((instant_at(reading)?, text))
}

/// When a line was printed: its stamp if it has one, else `read_at`; and its text.
pub(crate) fn line_time(read_at: Instant, line: &str) -> (Instant, &str) {
    stamped(line).unwrap_or((read_at, line))
}

/// The raw `CLOCK_MONOTONIC` reading behind `at`. `std` offers no accessor and this workspace
/// forbids `unsafe`, so it comes from `Instant`'s `Debug` form on Linux,
/// `Instant { tv_sec: 12, tv_nsec: 345 }` (`examples/election.rs` stamps its lines the same
/// way); `None` if that form ever changes.
pub(crate) fn monotonic_reading(at: Instant) -> Option<Duration> {
    let text = format!("{at:?}");
    let field = |name: &str| -> Option<u64> {
        let start = text.find(name)? + name.len();
        let end = text[start..]
            .find(|c: char| !c.is_ascii_digit())
            .map_or(text.len(), |end| start + end);
        text[start..end].parse().ok()
    };
    let nanos = u32::try_from(field("tv_nsec: ")?).ok()?;
    Some(Duration::new(field("tv_sec: ")?, nanos))
}

/// The `Instant` of a raw `CLOCK_MONOTONIC` reading.
fn instant_at(reading: Duration) -> Option<Instant> {
    let now = Instant::now();
    let now_reading = monotonic_reading(now)?;
    match now_reading.checked_sub(reading) {
        Some(ago) => now.checked_sub(ago),
        None => now.checked_add(reading - now_reading),
    }
}

/// The leadership intervals of `lease` in the transcripts, sorted by start. Fails on output
/// that does not alternate `leading` / `stopped leading`, or on an unreadable fencing token.
pub(crate) fn leadership_intervals(
    lease: &str,
    transcripts: &[Transcript<'_>],
) -> Result<Vec<Interval>, String> {
    let leading = format!(": leading {lease} (fencing token ");
    let stopped = format!(": stopped leading {lease}");
    let mut intervals = Vec::new();
    for transcript in transcripts {
        // A leadership that had begun when the process was paused ends there.
        let cut = |mut interval: Interval| {
            if let Some(paused_at) = transcript.paused_at {
                let ends_later = interval.end_time().is_none_or(|end| end > paused_at);
                if interval.start < paused_at && ends_later {
                    interval.end = End::Paused(paused_at);
                }
            }
            interval
        };
        let mut current: Option<Interval> = None;
        for (read_at, line) in transcript.lines {
            let (at, line) = line_time(*read_at, line);
            if let Some(position) = line.find(&leading) {
                if let Some(open) = &current {
                    return Err(format!(
                        "{} printed {line:?} while still leading since its token {} line",
                        transcript.id, open.fencing_token
                    ));
                }
                let token = line[position + leading.len()..]
                    .strip_suffix(')')
                    .and_then(|token| token.parse().ok())
                    .ok_or_else(|| format!("{}: no fencing token in {line:?}", transcript.id))?;
                current = Some(Interval {
                    id: transcript.id.to_owned(),
                    implementation: transcript.implementation,
                    fencing_token: token,
                    start: at,
                    end: End::Open,
                });
            } else if line.ends_with(&stopped) {
                let Some(mut interval) = current.take() else {
                    return Err(format!(
                        "{} printed {line:?} without leading",
                        transcript.id
                    ));
                };
                interval.end = End::Stopped(at);
                intervals.push(cut(interval));
            }
        }
        if let Some(mut interval) = current {
            if let Some(killed_at) = transcript.killed_at {
                interval.end = End::Killed(killed_at.max(interval.start));
            }
            intervals.push(cut(interval));
        }
    }
    intervals.sort_by_key(|interval| interval.start);
    Ok(intervals)
}

/// The index pairs of intervals that overlap (an open interval overlaps everything after its
/// start). Empty when leadership was exclusive.
pub(crate) fn overlapping_pairs(intervals: &[Interval]) -> Vec<(usize, usize)> {
    let mut pairs = Vec::new();
    for (i, a) in intervals.iter().enumerate() {
        for (j, b) in intervals.iter().enumerate().skip(i + 1) {
            if a.overlaps(b) {
                pairs.push((i, j));
            }
        }
    }
    pairs
}

/// For each pair of consecutive intervals (sorted by start, not overlapping), the time between
/// the end of the first and the start of the second: how long nobody led.
pub(crate) fn handover_gaps(intervals: &[Interval]) -> Vec<Duration> {
    intervals
        .windows(2)
        .map(|pair| {
            let end = pair[0].end_time().unwrap_or(pair[0].start);
            pair[1].start.saturating_duration_since(end)
        })
        .collect()
}

/// Fencing tokens must go up along the sequence of leaders: strictly from one holder to
/// another. A holder that leads again right after itself may keep its token (the token is the
/// lease's `leaseTransitions`, which client-go and our engine both keep when the holder renews
/// its own record after a lapse in which nobody took over).
pub(crate) fn check_fencing_tokens(intervals: &[Interval]) -> Result<(), String> {
    let bad = |pair: &&[Interval]| {
        let (earlier, later) = (&pair[0], &pair[1]);
        if earlier.id == later.id {
            later.fencing_token < earlier.fencing_token
        } else {
            later.fencing_token <= earlier.fencing_token
        }
    };
    match intervals.windows(2).find(bad) {
        Some(pair) => Err(format!(
            "fencing token {} of {} is not above token {} of the previous leader {}",
            pair[1].fencing_token, pair[1].id, pair[0].fencing_token, pair[0].id
        )),
        None => Ok(()),
    }
}

/// The intervals one per line, relative to `base`, for messages.
pub(crate) fn report(intervals: &[Interval], base: Instant) -> String {
    intervals
        .iter()
        .map(|interval| format!("  {}", Relative(interval, base)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs the whole analysis: no overlap, increasing tokens. Returns the intervals, with a report
/// of them in the panic message when a check fails.
pub(crate) fn assert_exclusive_leadership(
    lease: &str,
    transcripts: &[Transcript<'_>],
    base: Instant,
) -> Vec<Interval> {
    let intervals =
        leadership_intervals(lease, transcripts).unwrap_or_else(|error| panic!("{error}"));
    let overlaps = overlapping_pairs(&intervals);
    assert!(
        overlaps.is_empty(),
        "two leaders at once: {overlaps:?} in\n{}",
        report(&intervals, base)
    );
    if let Err(error) = check_fencing_tokens(&intervals) {
        panic!("{error} in\n{}", report(&intervals, base));
    }
    intervals
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(base: Instant, entries: &[(u64, &str)]) -> Vec<(Instant, String)> {
        entries
            .iter()
            .map(|&(ms, line)| (base + Duration::from_millis(ms), line.to_owned()))
            .collect()
    }

    fn transcript<'a>(id: &'a str, lines: &'a [(Instant, String)]) -> Transcript<'a> {
        Transcript {
            id,
            implementation: Implementation::Go,
            lines,
            killed_at: None,
            paused_at: None,
        }
    }

    #[test]
    fn a_clean_sequence_of_leaders_has_no_overlap_and_the_right_gaps() {
        let base = Instant::now();
        let a = lines(
            base,
            &[
                (0, "a: leading lock (fencing token 0)"),
                (5, "a: new leader of other: x"),
                (100, "a: stopped leading lock"),
                (101, "a: released"),
            ],
        );
        let b = lines(
            base,
            &[
                (50, "b: new leader of lock: a"),
                (103, "b: leading lock (fencing token 1)"),
            ],
        );
        let c = lines(
            base,
            &[
                (4_300, "c: leading lock (fencing token 2)"),
                (4_400, "c: stopped leading lock"),
                // Another lease's output is not ours.
                (4_500, "c: leading other (fencing token 0)"),
            ],
        );
        let transcripts = [
            Transcript {
                implementation: Implementation::Rust,
                ..transcript("c", &c)
            },
            Transcript {
                implementation: Implementation::Rust,
                ..transcript("a", &a)
            },
            Transcript {
                killed_at: Some(base + Duration::from_millis(300)),
                ..transcript("b", &b)
            },
        ];
        let intervals = assert_exclusive_leadership("lock", &transcripts, base);
        let ids: Vec<&str> = intervals.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(
            intervals[1].end,
            End::Killed(base + Duration::from_millis(300))
        );
        assert_eq!(
            handover_gaps(&intervals),
            [Duration::from_millis(3), Duration::from_millis(4_000)]
        );
    }

    #[test]
    fn overlaps_open_intervals_and_bad_tokens_are_caught() {
        let base = Instant::now();
        let a = lines(
            base,
            &[
                (0, "a: leading lock (fencing token 3)"),
                (100, "a: stopped leading lock"),
            ],
        );
        let b = lines(base, &[(99, "b: leading lock (fencing token 4)")]);
        // b starts before a stopped; b never stops, so it also overlaps anything later.
        let c = lines(
            base,
            &[
                (500, "c: leading lock (fencing token 5)"),
                (600, "c: stopped leading lock"),
            ],
        );
        let intervals = leadership_intervals(
            "lock",
            &[
                transcript("a", &a),
                transcript("b", &b),
                transcript("c", &c),
            ],
        )
        .unwrap();
        assert_eq!(overlapping_pairs(&intervals), [(0, 1), (1, 2)]);

        // Touching intervals do not overlap; a token that does not go up is caught.
        let d = lines(base, &[(100, "d: leading lock (fencing token 3)")]);
        let intervals =
            leadership_intervals("lock", &[transcript("a", &a), transcript("d", &d)]).unwrap();
        assert!(overlapping_pairs(&intervals).is_empty());
        assert!(check_fencing_tokens(&intervals).is_err());

        // Output that does not alternate is refused.
        let twice = lines(
            base,
            &[
                (0, "e: leading lock (fencing token 1)"),
                (1, "e: leading lock (fencing token 2)"),
            ],
        );
        assert!(leadership_intervals("lock", &[transcript("e", &twice)]).is_err());
        let unmatched = lines(base, &[(0, "f: stopped leading lock")]);
        assert!(leadership_intervals("lock", &[transcript("f", &unmatched)]).is_err());
    }

    #[test]
    fn the_same_holder_may_keep_its_token_another_may_not() {
        let base = Instant::now();
        let a = lines(
            base,
            &[
                (0, "a: leading lock (fencing token 3)"),
                (100, "a: stopped leading lock"),
                (200, "a: leading lock (fencing token 3)"),
                (300, "a: stopped leading lock"),
            ],
        );
        let intervals = leadership_intervals("lock", &[transcript("a", &a)]).unwrap();
        assert_eq!(check_fencing_tokens(&intervals), Ok(()));
    }

    #[test]
    fn a_paused_leadership_ends_at_the_pause() {
        let base = Instant::now();
        let a = lines(
            base,
            &[
                (0, "a: leading lock (fencing token 3)"),
                // Printed once continued, long after b took over.
                (9_000, "a: stopped leading lock"),
            ],
        );
        let b = lines(base, &[(5_000, "b: leading lock (fencing token 4)")]);
        let paused_at = base + Duration::from_millis(1_000);
        let transcripts = [
            Transcript {
                paused_at: Some(paused_at),
                ..transcript("a", &a)
            },
            transcript("b", &b),
        ];
        let intervals = assert_exclusive_leadership("lock", &transcripts, base);
        assert_eq!(intervals[0].end, End::Paused(paused_at));
        assert_eq!(handover_gaps(&intervals), [Duration::from_millis(4_000)]);
    }

    #[test]
    fn stamped_lines_are_placed_at_their_stamp() {
        let now = Instant::now();
        let reading = monotonic_reading(now).expect("Instant's Debug form names tv_sec, tv_nsec");
        let earlier = reading - Duration::from_millis(1_500);
        let line = format!(
            "[{}.{:09}] a: leading lock (fencing token 1)",
            earlier.as_secs(),
            earlier.subsec_nanos()
        );
        let (at, text) = line_time(now, &line);
        assert_eq!(text, "a: leading lock (fencing token 1)");
        assert_eq!(now - at, Duration::from_millis(1_500));
        assert_eq!(line_time(now, "a: released"), (now, "a: released"));
        assert!(stamped("[1.5] a: released").is_none(), "nine digits");
    }
}
