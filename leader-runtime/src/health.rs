//! Liveness and readiness as data: the verdicts behind `/healthz` and `/readyz`, for any server.

use std::fmt;
use std::time::Duration;

use crate::{Election, Error, Runtime};

/// How long past the lease duration a leader may go without renewing before it counts as stuck
/// in [`Runtime::liveness`]: 20 s, as Kubernetes' own components give client-go's
/// `NewLeaderHealthzAdaptor`.
pub const DEFAULT_HEALTH_TOLERANCE: Duration = Duration::from_secs(20);

/// The answer to a probe: healthy, or not with one reason per failing election.
///
/// Its [`Display`](fmt::Display) is what `/healthz` and `/readyz` answer: `ok`, or the reasons one
/// per line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    reasons: Vec<String>,
}

impl Verdict {
    fn from_reasons(reasons: Vec<String>) -> Self {
        Verdict { reasons }
    }

    /// Whether the probe passes: no election has a problem.
    pub fn is_healthy(&self) -> bool {
        self.reasons.is_empty()
    }

    /// Why the probe fails, one line per failing election (ordered by namespace and lease name);
    /// empty when it passes.
    pub fn reasons(&self) -> &[String] {
        &self.reasons
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reasons.is_empty() {
            return f.write_str("ok");
        }
        f.write_str(&self.reasons.join("\n"))
    }
}

impl Runtime {
    /// Liveness, client-go's `HealthzAdaptor` for every election: unhealthy while some election
    /// fails its [`Election::health_check`] with `tolerance` (a stuck leader, which a restart
    /// fixes, or RBAC refusing the runtime). An unreachable API server does not make it
    /// unhealthy. [`DEFAULT_HEALTH_TOLERANCE`] is the usual tolerance.
    ///
    /// ```
    /// # use leader_runtime::{DEFAULT_HEALTH_TOLERANCE, Runtime, testing::InMemoryLeaseStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> leader_runtime::Result<()> {
    /// let runtime = Runtime::builder().store(InMemoryLeaseStore::new()).build().await?;
    /// let live = runtime.liveness(DEFAULT_HEALTH_TOLERANCE);
    /// assert!(live.is_healthy());
    /// assert_eq!(live.to_string(), "ok");
    /// # runtime.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn liveness(&self, tolerance: Duration) -> Verdict {
        let reasons = sorted(self.elections())
            .iter()
            .filter_map(|election| election.health_check(tolerance).err())
            .map(|error| error.to_string())
            .collect();
        Verdict::from_reasons(reasons)
    }

    /// Readiness: every election has seen its lease (or leads it), and RBAC lets it take part.
    /// Ready with no elections at all.
    ///
    /// ```
    /// # use leader_runtime::{Runtime, testing::InMemoryLeaseStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> leader_runtime::Result<()> {
    /// let store = InMemoryLeaseStore::new().connection();
    /// store.set_fault(Some(leader_runtime::testing::Fault::Unreachable));
    /// let runtime = Runtime::builder().store(store).namespace("jobs").build().await?;
    /// runtime.election("reports")?;
    /// let ready = runtime.readiness();
    /// assert!(!ready.is_healthy());
    /// assert_eq!(ready.reasons(), ["lease `jobs/reports` not observed yet"]);
    /// # runtime.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn readiness(&self) -> Verdict {
        let reasons = sorted(self.elections())
            .iter()
            .filter_map(|election| {
                let status = election.status().borrow().clone();
                let lease = election.key();
                // The health check's refusal (a request, or the list or watch), never "stuck".
                if let Err(Error::Unhealthy { message, .. }) = election.health_check(Duration::MAX)
                {
                    Some(format!(
                        "election for lease `{lease}` is refused: {message}"
                    ))
                } else if status.observed_change.is_none() && !status.is_leader {
                    Some(format!("lease `{lease}` not observed yet"))
                } else {
                    None
                }
            })
            .collect();
        Verdict::from_reasons(reasons)
    }
}

/// `elections` ordered by namespace and name, so that answers are stable.
pub(crate) fn sorted(mut elections: Vec<Election>) -> Vec<Election> {
    elections.sort_by(|a, b| a.key().cmp(b.key()));
    elections
}
