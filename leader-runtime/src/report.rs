//! How a runtime tells people about the API server's problems in its log: each problem once when
//! it starts, again at a bounded rate while it lasts, and once when it ends, whatever the number
//! of leases and requests that meet it. Every election reports its failed requests and its
//! feed's failures here; their status and metrics keep every failure, only the log is summarised.
//!
//! A program that installs no `tracing` subscriber (`#[leader_main]` installs none) would see
//! none of it, so then the same lines go to stderr.
//!
//! Two kinds of problem are followed:
//! - the API server is out of reach (connection failures, timeouts, 5xx and 429 answers): one
//!   problem for the whole runtime;
//! - RBAC refuses a verb in a namespace: one problem per verb and namespace, logged with the
//!   message that names the Role rule to add.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{Level, info, warn};

use crate::{Error, Verb};

/// How often a problem that goes on is logged again.
const REMIND_EVERY: Duration = Duration::from_secs(30);

/// The problems of one runtime, and when each was last logged.
#[derive(Default)]
pub(crate) struct Reporter {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The API server is out of reach.
    unreachable: Option<Ongoing>,
    /// RBAC refuses a verb in a namespace.
    refused: HashMap<(Verb, String), Option<Ongoing>>,
    /// Namespaces where RBAC refused to record events: no more are recorded there.
    events_refused: HashSet<String>,
}

/// A problem that is going on.
struct Ongoing {
    since: Instant,
    logged: Instant,
    /// Failures since it was last logged.
    failures: u64,
}

impl Ongoing {
    fn new(now: Instant) -> Self {
        Ongoing {
            since: now,
            logged: now,
            failures: 1,
        }
    }

    /// Counts one more failure; `Some(failures since the last log)` when it is time to log again.
    fn again(&mut self, now: Instant) -> Option<u64> {
        self.failures += 1;
        if now.duration_since(self.logged) < REMIND_EVERY {
            return None;
        }
        self.logged = now;
        Some(std::mem::take(&mut self.failures))
    }
}

impl Reporter {
    /// A request, or the list or watch behind a feed, failed with `error`.
    pub(crate) fn failed(&self, error: &Error) {
        let now = Instant::now();
        let mut state = lock(&self.state);
        let (slot, problem) = match error {
            Error::Forbidden {
                verb, namespace, ..
            } => {
                let slot = state.refused.entry((*verb, namespace.clone())).or_default();
                (slot, "the API server refuses this replica")
            }
            _ if is_unavailable(error) => (&mut state.unreachable, "cannot reach the API server"),
            _ => return,
        };
        match slot {
            None => {
                *slot = Some(Ongoing::new(now));
                say(
                    Level::WARN,
                    &format!("{problem}; retrying every retry period"),
                    Some(error),
                );
            }
            Some(ongoing) => {
                if let Some(failures) = ongoing.again(now) {
                    let message = format!(
                        "still: {problem} ({failures} failures in the last {}s, for {}s now)",
                        REMIND_EVERY.as_secs(),
                        now.duration_since(ongoing.since).as_secs()
                    );
                    say(Level::WARN, &message, Some(error));
                }
            }
        }
    }

    /// Whether leader-election events may be recorded in `namespace`: not once RBAC refused them.
    pub(crate) fn may_record_events(&self, namespace: &str) -> bool {
        !lock(&self.state).events_refused.contains(namespace)
    }

    /// RBAC refused to record an event in `namespace`: said once, and no more are recorded
    /// there, so that the refusal is not repeated at every term.
    pub(crate) fn events_refused(&self, namespace: &str, error: &Error) {
        if lock(&self.state)
            .events_refused
            .insert(namespace.to_owned())
        {
            let message = format!(
                "not recording leader-election events in namespace `{namespace}` any more; the \
                 election goes on without them"
            );
            say(Level::WARN, &message, Some(error));
        }
    }

    /// `verb` on leases in `namespace` succeeded (a request, or a list or watch feeding them).
    pub(crate) fn succeeded(&self, verb: Verb, namespace: &str) {
        let now = Instant::now();
        let mut state = lock(&self.state);
        if let Some(ongoing) = state.unreachable.take() {
            let message = format!(
                "the API server is reachable again, after {:.1}s",
                now.duration_since(ongoing.since).as_secs_f64()
            );
            say(Level::INFO, &message, None);
        }
        if !state.refused.is_empty()
            && let Some(Some(ongoing)) = state.refused.remove(&(verb, namespace.to_owned()))
        {
            let message = format!(
                "the API server allows `{verb}` on leases in namespace `{namespace}` again, after \
                 {:.1}s",
                now.duration_since(ongoing.since).as_secs_f64()
            );
            say(Level::INFO, &message, None);
        }
    }
}

/// Logs `message` (with `error`), and prints it to stderr too when the program installed no
/// `tracing` subscriber, so that problems with the API server never go unsaid.
pub(crate) fn say(level: Level, message: &str, error: Option<&Error>) {
    match (level, error) {
        (Level::WARN, Some(error)) => warn!(%error, "{message}"),
        (Level::WARN, None) => warn!("{message}"),
        (_, Some(error)) => info!(%error, "{message}"),
        (_, None) => info!("{message}"),
    }
    if !tracing::dispatcher::has_been_set() {
        match error {
            Some(error) => eprintln!("leader: {level}: {message}: {error}"),
            None => eprintln!("leader: {level}: {message}"),
        }
    }
}

/// How long the API server asked to wait before retrying, if it did (a 429 answer's
/// `retryAfterSeconds`).
pub(crate) fn retry_after(error: &Error) -> Option<Duration> {
    let Error::Api { source, .. } = error else {
        return None;
    };
    match source.as_deref()?.downcast_ref::<kube::Error>()? {
        kube::Error::Api(status) => {
            let seconds = status.details.as_ref()?.retry_after_seconds;
            (seconds > 0).then(|| Duration::from_secs(seconds.into()))
        }
        _ => None,
    }
}

/// Whether `error` says the API server is out of reach or cannot serve now (as opposed to an
/// answer about the request itself, such as a conflict).
pub(crate) fn is_unavailable(error: &Error) -> bool {
    let Error::Api { source, .. } = error else {
        return false;
    };
    match source
        .as_deref()
        .and_then(|source| source.downcast_ref::<kube::Error>())
    {
        Some(kube::Error::Api(status)) => status.code == 429 || status.code >= 500,
        // Transport failures, and timeouts (whose source is the elector's own marker).
        _ => true,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    fn api_error(source: Option<kube::Error>) -> Error {
        Error::Api {
            verb: Verb::Get,
            namespace: "ns".into(),
            name: "a".into(),
            message: "failed".into(),
            source: source.map(|error| Box::new(error) as _),
        }
    }

    fn status_error(code: u16) -> kube::Error {
        kube::Error::Api(Status::failure("x", "y").with_code(code).boxed())
    }

    #[test]
    fn a_429_says_how_long_to_wait() {
        let mut status = Status::failure("slow down", "TooManyRequests").with_code(429);
        status.details = Some(kube::core::response::StatusDetails {
            name: String::new(),
            group: String::new(),
            kind: String::new(),
            uid: String::new(),
            causes: Vec::new(),
            retry_after_seconds: 7,
        });
        let error = api_error(Some(kube::Error::Api(status.boxed())));
        assert_eq!(retry_after(&error), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(&api_error(Some(status_error(429)))), None);
    }

    #[test]
    fn transport_failures_timeouts_and_server_errors_are_unavailability() {
        assert!(is_unavailable(&api_error(None)));
        assert!(is_unavailable(&api_error(Some(kube::Error::TlsRequired))));
        assert!(is_unavailable(&api_error(Some(status_error(503)))));
        assert!(is_unavailable(&api_error(Some(status_error(429)))));
        assert!(!is_unavailable(&api_error(Some(status_error(422)))));
        assert!(!is_unavailable(&Error::NotStarted));
    }

    #[tokio::test(start_paused = true)]
    async fn a_problem_is_logged_again_only_after_the_reminder_period() {
        let mut ongoing = Ongoing::new(Instant::now());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(ongoing.again(Instant::now()), None);
        tokio::time::advance(REMIND_EVERY).await;
        assert_eq!(ongoing.again(Instant::now()), Some(3));
        assert_eq!(ongoing.again(Instant::now()), None);
    }
}
