//! `examples/writes.rs` as a team runs its single-writer service: three replicas on the control
//! plane, a client sending writes to every replica at random, and 20 handovers of the lease, by
//! turns graceful (SIGTERM) and not (SIGKILL), each followed by a fresh replica. The evidence is
//! what the client was answered, what each replica printed it applied (with its fencing token and
//! the wall-clock time: all processes share this machine's clock), and the Lease as the API
//! server committed it. Checked:
//!
//! - every write the client was told was applied is applied exactly once, by the replica and
//!   with the fencing token the answer names;
//! - every apply is by a holder of the lease with that fencing token, after its term began
//!   (`acquireTime`) and before the next term began: none by a follower, none by an earlier
//!   leader once a later one leads;
//! - no write is applied twice, and none that the client was told was not applied (`307`, or
//!   `503` with `Retry-After`) was;
//! - every rejected write was told where to go: a `307` names the leader in `Location`, a `503`
//!   carries `Retry-After`.
//!
//! It prints how many writes failed during the handovers and for how long; with
//! `LEADER_WRITES_RESULTS=<file>` (`make writes`) it writes that as a Markdown report.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;

use crate::lease_history::{LeaseHistory, Record, Renewals};
use crate::support::{Candidate, ControlPlane, FAST_TIMINGS, Identity, control_plane};

/// The example's lease.
pub(crate) const LEASE: &str = "writes";
const SECOND: Duration = Duration::from_secs(1);
/// The lease duration in [`FAST_TIMINGS`].
const LEASE_DURATION: Duration = Duration::from_secs(4);
const HANDOVERS: usize = 20;
/// How often the client sends a write.
const WRITE_EVERY: Duration = Duration::from_millis(10);

/// What the client was answered for one write.
#[derive(Clone, Debug)]
pub(crate) enum Outcome {
    /// `200`: applied by `by` with `token`.
    Applied { by: String, token: i32 },
    /// Not applied, and the answer said so: a `503`, or a `307` that led to one.
    Rejected { status: u16, told: String },
    /// No connection to the replica (it was killed): not applied.
    Unreachable,
    /// The connection broke after the write was sent, or the answer was a `502`: it may or may
    /// not have been applied.
    Unknown(String),
}

/// One write the client sent.
#[derive(Clone, Debug)]
pub(crate) struct Sent {
    body: String,
    /// When the client sent it (and got its answer).
    sent_at: Instant,
    answered_at: Instant,
    outcome: Outcome,
    /// The answer was a redirect, followed once.
    redirected: bool,
}

/// The addresses the client writes to.
pub(crate) type Targets = Arc<Mutex<Vec<SocketAddr>>>;

/// A replica of the example, and where it serves.
struct Replica {
    candidate: Candidate,
    address: SocketAddr,
}

/// A free port on loopback.
fn free_address() -> SocketAddr {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    socket.local_addr().expect("a bound socket")
}

fn start(cluster: &ControlPlane, namespace: &str, id: &str) -> Replica {
    let address = free_address();
    let listen = address.to_string();
    let mut options = FAST_TIMINGS.to_vec();
    options.extend(["--listen", &listen]);
    let candidate = Candidate::start_example("writes", cluster, id, namespace, LEASE, &options);
    Replica { candidate, address }
}

/// A small random-number generator (xorshift), seeded from the clock: the test needs no more.
struct Dice(u64);

impl Dice {
    fn new() -> Self {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        Dice(u64::from(nanos.subsec_nanos()) | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n as u64).unwrap()
    }
}

/// Sends writes to the replicas at random until `stop` fires, one every [`WRITE_EVERY`] whatever
/// the answers take (a write that hangs does not hold up the next); returns every write sent,
/// answered.
pub(crate) async fn send_writes(targets: Targets, stop: leader::CancellationToken) -> Vec<Sent> {
    // A connection that is not set up within a second is a replica gone (a deleted pod's IP
    // answers nothing at all): not sent, so not applied.
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(SECOND));
    let http = Client::builder(TokioExecutor::new()).build(connector);
    let mut dice = Dice::new();
    let mut writes = tokio::task::JoinSet::new();
    let mut ticks = tokio::time::interval(WRITE_EVERY);
    for n in 0.. {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let target = {
            let targets = targets.lock().unwrap();
            targets[dice.below(targets.len())]
        };
        let http = http.clone();
        writes.spawn(async move {
            let body = format!("w{n}");
            let sent_at = Instant::now();
            let (outcome, redirected) = write(&http, target, &body).await;
            Sent {
                body,
                sent_at,
                answered_at: Instant::now(),
                outcome,
                redirected,
            }
        });
    }
    let mut sent = writes.join_all().await;
    sent.sort_by_key(|write| write.sent_at);
    sent
}

/// Writes `body` to the replica at `target`, following one redirect.
async fn write(
    http: &Client<HttpConnector, Full<Bytes>>,
    target: SocketAddr,
    body: &str,
) -> (Outcome, bool) {
    let mut uri = format!("http://{target}/write");
    let mut redirected = false;
    loop {
        let request = hyper::Request::post(&uri)
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let response = match tokio::time::timeout(5 * SECOND, http.request(request)).await {
            Err(_) => return (Outcome::Unknown("no answer within 5 s".into()), redirected),
            Ok(Err(error)) if error.is_connect() => return (Outcome::Unreachable, redirected),
            Ok(Err(error)) => return (Outcome::Unknown(format!("{error:?}")), redirected),
            Ok(Ok(response)) => response,
        };
        let status = response.status().as_u16();
        let header = |name: &str| {
            let value = response.headers().get(name)?;
            Some(value.to_str().unwrap_or_default().to_owned())
        };
        let location = header("location");
        let retry_after = header("retry-after");
        let leader_address = header("leader-address");
        let text = match response.into_body().collect().await {
            Ok(body) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
            Err(error) => return (Outcome::Unknown(format!("{error:?}")), redirected),
        };
        match status {
            200 => {
                // `<identity> applied <body> (fencing token <token>)`
                let (by, rest) = text.split_once(" applied ").expect("an apply answer");
                let token = rest.rsplit_once("(fencing token ").expect("a token").1;
                let token = token
                    .trim()
                    .trim_end_matches(')')
                    .parse()
                    .expect("a number");
                let by = by.to_owned();
                return (Outcome::Applied { by, token }, redirected);
            }
            307 => {
                let location = location.expect("a 307 names the leader in Location");
                if redirected {
                    // Redirected twice: the leader changed while the write was on its way.
                    let told = format!("Location {location}");
                    return (Outcome::Rejected { status, told }, redirected);
                }
                uri = location;
                redirected = true;
            }
            503 => {
                let told = format!(
                    "Retry-After {}, leader-address {}",
                    retry_after.expect("a 503 says when to retry"),
                    leader_address.as_deref().unwrap_or("-")
                );
                return (Outcome::Rejected { status, told }, redirected);
            }
            502 => return (Outcome::Unknown(text), redirected),
            _ => panic!("unexpected answer {status} to {body} at {uri}: {text}"),
        }
    }
}

/// One apply a replica printed: `<id>: applied <body> (fencing token <token>) at <unix µs>`.
#[derive(Clone, Debug)]
pub(crate) struct Apply {
    by: String,
    body: String,
    token: i32,
    /// Wall-clock time of the apply, in µs since the epoch.
    at_micros: i64,
}

impl Apply {
    /// The apply a line of the example's output says, if it says one.
    pub(crate) fn parse(line: &str) -> Option<Apply> {
        let (by, rest) = line.split_once(": applied ")?;
        let (body, rest) = rest.split_once(" (fencing token ")?;
        let (token, at) = rest.split_once(") at ")?;
        Some(Apply {
            by: by.to_owned(),
            body: body.to_owned(),
            token: token.parse().expect("a number"),
            at_micros: at.trim().parse().expect("a number"),
        })
    }
}

fn applies(candidate: &Candidate) -> Vec<Apply> {
    let lines = candidate.seen.iter().map(|(_, line)| line);
    let applies: Vec<Apply> = lines.filter_map(|line| Apply::parse(line)).collect();
    for apply in &applies {
        assert_eq!(apply.by, candidate.id, "{apply:?}");
    }
    applies
}

/// The terms of the lease, in order: (holder, fencing token, acquireTime in µs).
pub(crate) fn terms(records: &[Record]) -> Vec<(String, i32, i64)> {
    let mut terms: Vec<(String, i32, i64)> = Vec::new();
    for record in records {
        let Some(holder) = &record.holder else {
            continue;
        };
        if terms
            .last()
            .is_some_and(|(last, token, _)| last == holder && *token == record.transitions)
        {
            continue;
        }
        let acquired = record.acquire_time.expect("a holder writes acquireTime");
        let acquired = acquired.as_microsecond();
        terms.push((holder.clone(), record.transitions, acquired));
    }
    terms
}

/// A handover as the test caused it.
pub(crate) struct Handover {
    /// The leader that was made to go.
    pub(crate) from: String,
    /// `TERM` (graceful) or `KILL`.
    pub(crate) signal: &'static str,
    pub(crate) at: Instant,
    /// When the next holder was seen.
    pub(crate) next_at: Instant,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_to_the_leader_only_and_are_applied_once_across_20_handovers() {
    let cluster = control_plane();
    let namespace = cluster.namespace("writes").await;
    let client = cluster.client(Identity::Admin).await;
    let leases: Api<Lease> = Api::namespaced(client, &namespace);
    let history = LeaseHistory::record(leases.clone(), Some(LEASE), Renewals::Latest);

    let mut replicas: Vec<Replica> = (1..=3)
        .map(|i| start(&cluster, &namespace, &format!("replica-{i}")))
        .collect();
    for replica in &mut replicas {
        replica
            .candidate
            .wait_for(": serving on", 20 * SECOND)
            .await;
    }
    let holder = next_holder(&leases, None, 20 * SECOND).await;
    let targets: Targets = Arc::new(Mutex::new(replicas.iter().map(|r| r.address).collect()));
    let stop = leader::CancellationToken::new();
    let writer = tokio::spawn(send_writes(Arc::clone(&targets), stop.clone()));

    let mut handovers = Vec::new();
    let mut holder = holder;
    let mut gone = Vec::new();
    for round in 0..HANDOVERS {
        // Some writes in every term first.
        tokio::time::sleep(SECOND).await;
        let index = replicas
            .iter()
            .position(|r| r.candidate.id == holder)
            .unwrap_or_else(|| panic!("{holder} leads but is not a live replica"));
        let leaving = replicas.remove(index);
        let signal = if round % 2 == 0 { "TERM" } else { "KILL" };
        let at = Instant::now();
        leaving.candidate.signal(signal);
        let limit = if signal == "TERM" {
            2 * SECOND
        } else {
            LEASE_DURATION + 2 * SECOND
        };
        let next = next_holder(&leases, Some(&holder), limit).await;
        handovers.push(Handover {
            from: holder.clone(),
            signal,
            at,
            next_at: Instant::now(),
        });
        // A fresh replica in place of the one that left, written to from when it serves; the
        // one that left stays a target until the next handover (clients do not learn at once
        // that it is gone).
        let id = format!("replica-{}", round + 4);
        let mut fresh = start(&cluster, &namespace, &id);
        fresh.candidate.wait_for(": serving on", 20 * SECOND).await;
        replicas.push(fresh);
        let mut now = targets.lock().unwrap();
        *now = replicas.iter().map(|r| r.address).collect();
        now.push(leaving.address);
        drop(now);
        gone.push(leaving);
        holder = next;
    }
    tokio::time::sleep(SECOND).await;
    stop.cancel();
    let sent = writer.await.unwrap();
    for replica in &replicas {
        replica.candidate.signal("TERM");
    }
    let mut everyone: Vec<Candidate> = replicas
        .into_iter()
        .chain(gone)
        .map(|replica| replica.candidate)
        .collect();
    for candidate in &mut everyone {
        candidate.read_to_end(20 * SECOND).await;
    }
    tokio::time::sleep(SECOND).await;
    history.stop();

    let applies: Vec<Apply> = everyone.iter().flat_map(applies).collect();
    let terms = terms(&history.of(LEASE));
    let report = check(&sent, &applies, &terms);
    let summary = summarise(&sent, &handovers, &applies);
    eprintln!("writes: {report}\n{summary}");
    let setup = format!(
        "Three replicas of `examples/writes.rs` (`--on-follower=redirect`) as processes on the \
         local control plane, lease duration 4 s, renew deadline 3 s, retry period 1 s; a \
         client sends a write every {WRITE_EVERY:?} to a replica picked at random, following one \
         `307`; {HANDOVERS} handovers, by turns SIGTERM and SIGKILL of the leader, each followed \
         by a fresh replica."
    );
    write_results(
        "LEADER_WRITES_RESULTS",
        "processes",
        &setup,
        &report,
        &summary,
    );
}

/// Waits up to `limit` for a holder other than `not`, and returns it.
pub(crate) async fn next_holder(leases: &Api<Lease>, not: Option<&str>, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let lease = leases.get_opt(LEASE).await.unwrap();
        let holder = lease
            .and_then(|lease| lease.spec?.holder_identity)
            .filter(|holder| !holder.is_empty() && Some(holder.as_str()) != not);
        if let Some(holder) = holder {
            return holder;
        }
        assert!(
            Instant::now() < deadline,
            "no holder but {not:?} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Checks the guarantees (see the module's comment); panics on the first broken one. Returns
/// what was checked, in a line.
pub(crate) fn check(sent: &[Sent], applies: &[Apply], terms: &[(String, i32, i64)]) -> String {
    let mut applied: HashMap<&str, Vec<&Apply>> = HashMap::new();
    for apply in applies {
        applied.entry(apply.body.as_str()).or_default().push(apply);
    }
    for (body, applies) in &applied {
        assert_eq!(
            applies.len(),
            1,
            "{body} was applied more than once: {applies:#?}"
        );
    }
    let mut accepted = 0;
    for write in sent {
        let applies = applied
            .get(write.body.as_str())
            .map_or(&[][..], Vec::as_slice);
        match &write.outcome {
            Outcome::Applied { by, token } => {
                accepted += 1;
                let [apply] = applies else {
                    panic!(
                        "{} was answered as applied but applied {applies:?}",
                        write.body
                    );
                };
                assert_eq!((&apply.by, apply.token), (by, *token), "{}", write.body);
            }
            Outcome::Rejected { .. } | Outcome::Unreachable => assert!(
                applies.is_empty(),
                "{} was answered {:?} but applied: {applies:?}",
                write.body,
                write.outcome
            ),
            Outcome::Unknown(_) => {}
        }
    }
    assert!(accepted > 0, "no write was accepted");
    for apply in applies {
        let term = terms
            .iter()
            .position(|(holder, token, _)| *holder == apply.by && *token == apply.token)
            .unwrap_or_else(|| {
                panic!("{apply:?} is by no holder of the lease with that token: {terms:#?}")
            });
        let began = terms[term].2;
        assert!(
            apply.at_micros >= began,
            "{apply:?} before its term began: {terms:#?}"
        );
        if let Some((next, _, next_began)) = terms.get(term + 1) {
            assert!(
                apply.at_micros < *next_began,
                "{apply:?} after {next}'s term began: {terms:#?}"
            );
        }
    }
    format!(
        "{} writes sent, {accepted} applied, {} applies checked against {} terms of the lease: \
         each applied once, by the holder with its fencing token, within its term",
        sent.len(),
        applies.len(),
        terms.len()
    )
}

/// How writes fared around each kind of handover: for each handover, the writes that failed
/// from the signal until the first applied write after it, and that time.
pub(crate) fn summarise(sent: &[Sent], handovers: &[Handover], applies: &[Apply]) -> String {
    let mut by_kind: BTreeMap<&str, Vec<(Duration, usize, Duration)>> = BTreeMap::new();
    for handover in handovers {
        let after: Vec<&Sent> = sent.iter().filter(|s| s.sent_at >= handover.at).collect();
        // The first write the next leaders applied (the one leaving may apply a few more).
        let first_applied = after
            .iter()
            .filter(|s| matches!(&s.outcome, Outcome::Applied { by, .. } if *by != handover.from))
            .map(|s| s.answered_at)
            .min()
            .unwrap_or(handover.next_at);
        let failed = after
            .iter()
            .filter(|s| s.sent_at < first_applied && s.sent_at >= handover.at)
            .filter(|s| !matches!(s.outcome, Outcome::Applied { .. }))
            .count();
        let takeover = handover.next_at - handover.at;
        by_kind.entry(handover.signal).or_default().push((
            first_applied.saturating_duration_since(handover.at),
            failed,
            takeover,
        ));
    }
    let mut text = String::new();
    let count = |f: fn(&Outcome) -> bool| sent.iter().filter(|s| f(&s.outcome)).count();
    let _ = writeln!(
        text,
        "| writes sent | applied | rejected (503, not applied) | unreachable replica (not applied) | outcome unknown | answered after a 307 |"
    );
    let _ = writeln!(text, "| ---: | ---: | ---: | ---: | ---: | ---: |");
    let _ = writeln!(
        text,
        "| {} | {} | {} | {} | {} | {} |\n",
        sent.len(),
        count(|o| matches!(o, Outcome::Applied { .. })),
        count(|o| matches!(o, Outcome::Rejected { .. })),
        count(|o| matches!(o, Outcome::Unreachable)),
        count(|o| matches!(o, Outcome::Unknown(_))),
        sent.iter().filter(|s| s.redirected).count(),
    );
    let mut rejected: BTreeMap<u16, (usize, &str)> = BTreeMap::new();
    for write in sent {
        if let Outcome::Rejected { status, told } = &write.outcome {
            rejected.entry(*status).or_insert((0, told)).0 += 1;
        }
    }
    for (status, (count, told)) in rejected {
        let _ = writeln!(
            text,
            "- rejected with {status}: {count} (for example: {told})"
        );
    }
    for write in sent {
        if let Outcome::Unknown(why) = &write.outcome {
            let applied = applies.iter().find(|apply| apply.body == write.body);
            let fate = applied.map_or("not applied".to_owned(), |apply| {
                format!("applied by {} (fencing token {})", apply.by, apply.token)
            });
            let _ = writeln!(text, "- outcome unknown for {} ({fate}): {why}", write.body);
        }
    }
    let _ = writeln!(text);
    let _ = writeln!(
        text,
        "| handover | count | next holder after (median, max) | no write applied for (median, max) | failed writes per handover (median, max) |"
    );
    let _ = writeln!(text, "| --- | ---: | ---: | ---: | ---: |");
    for (kind, rows) in by_kind {
        let median_max = |mut values: Vec<Duration>| {
            values.sort();
            format!(
                "{:?}, {:?}",
                values[values.len() / 2],
                values[values.len() - 1]
            )
        };
        let mut failed: Vec<usize> = rows.iter().map(|r| r.1).collect();
        failed.sort_unstable();
        let name = if kind == "TERM" {
            "SIGTERM (graceful)"
        } else {
            "SIGKILL"
        };
        let _ = writeln!(
            text,
            "| {name} | {} | {} | {} | {}, {} |",
            rows.len(),
            median_max(rows.iter().map(|r| r.2).collect()),
            median_max(rows.iter().map(|r| r.0).collect()),
            failed[failed.len() / 2],
            failed[failed.len() - 1],
        );
    }
    text
}

/// Writes the results where the variable `variable` says (`make writes` sets it), under a
/// heading for `what`: the file holds one section per kind of run.
pub(crate) fn write_results(variable: &str, what: &str, setup: &str, report: &str, summary: &str) {
    let Ok(path) = std::env::var(variable) else {
        return;
    };
    let section = format!(
        "## Replicas as {what}\n\n{setup}\n\n\
         Checked: {report}; no write applied twice, none that was answered as not applied; \
         every rejected write told where to go (`Location` on a `307`, `Retry-After` on a \
         `503`).\n\n{summary}"
    );
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let mut sections: BTreeMap<String, String> = old
        .split("\n## ")
        .skip(1)
        .filter_map(|part| {
            let (title, _) = part.split_once('\n')?;
            Some((title.to_owned(), format!("## {}", part.trim_end())))
        })
        .filter(|(title, _)| title.starts_with("Replicas as "))
        .collect();
    sections.insert(format!("Replicas as {what}"), section.trim_end().to_owned());
    let mut text = String::from(
        "# Writes to the leader across handovers\n\n\
         Generated by `make writes` (processes, `tests/cluster/writes.rs`) and `make node-writes` \
         (pods on the test node, `tests/cluster/node/writes.rs`).\n\n\
         A write is *failed* when it was sent after the signal and before the first write \
         applied by the next leader: rejected with `503` and `Retry-After` (a handover is going \
         on), sent to a replica that was gone (no connection), or, rarely, with an outcome the \
         client cannot know (the connection broke after it was sent).\n",
    );
    for section in sections.values() {
        text.push('\n');
        text.push_str(section);
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap_or_else(|error| panic!("writing {path}: {error}"));
}
