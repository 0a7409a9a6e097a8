//! The one error type of this crate.

use std::time::Duration;

/// The API verbs the runtime uses on `leases.coordination.k8s.io`, named as RBAC names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    /// Read one Lease.
    Get,
    /// Create a Lease that does not exist yet.
    Create,
    /// Replace a Lease, guarded by its resourceVersion.
    Update,
    /// List the Leases of a namespace (the first step of every watch).
    List,
    /// Watch the Leases of a namespace.
    Watch,
}

impl Verb {
    /// The verb as RBAC spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::List => "list",
            Verb::Watch => "watch",
        }
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The RBAC rule that grants what the runtime does with Leases, as a Role lists it.
pub const LEASE_RULE: &str = "apiGroups: [\"coordination.k8s.io\"], resources: [\"leases\"], \
                              verbs: [\"get\", \"list\", \"watch\", \"create\", \"update\"]";

/// The RBAC rule that lets the runtime record leader-election Events on its Leases (kube's
/// events recorder creates an Event, and patches it when the same one repeats). Not needed with
/// `RuntimeBuilder::events(false)`.
pub const EVENT_RULE: &str =
    "apiGroups: [\"events.k8s.io\"], resources: [\"events\"], verbs: [\"create\", \"patch\"]";

/// The RBAC rule that lets a replica mark its own pod while it leads, with
/// `RuntimeBuilder::pod_deletion_cost` (in the pod's namespace). Not part of [`RBAC_RULES`]: only
/// that option needs it.
pub const POD_RULE: &str = "apiGroups: [\"\"], resources: [\"pods\"], verbs: [\"patch\"]";

/// The RBAC rule that lets a replica keep the EndpointSlice of its leader Service, with
/// `RuntimeBuilder::leader_service` (feature `leader-service`), in the runtime's namespace. Not
/// part of [`RBAC_RULES`]: only that option needs it.
pub const SERVICE_RULE: &str = "apiGroups: [\"discovery.k8s.io\"], resources: [\"endpointslices\"], \
                                verbs: [\"get\", \"create\", \"update\"]";

/// Every RBAC rule the runtime needs, in each namespace where it holds leases, as a Role lists
/// them: [`LEASE_RULE`] and [`EVENT_RULE`].
pub const RBAC_RULES: [&str; 2] = [LEASE_RULE, EVENT_RULE];

/// Everything that can go wrong in the election runtime.
///
/// Errors from the API server while campaigning or renewing are not fatal: the runtime retries
/// them with backoff and shows the latest one in [`LeaseStatus::last_error`](crate::LeaseStatus).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The settings do not fit together: the election timings break client-go's rule
    /// `lease duration > renew deadline > 1.2 x retry period > 0`, or an option lacks what it
    /// needs (an address from `POD_IP`, an IP address for a leader service).
    #[error("invalid configuration: {reason}")]
    InvalidConfig {
        /// What is wrong, with the values given.
        reason: String,
    },

    /// A lease name, namespace, identity, label or address is not valid where it goes.
    #[error("invalid {what} `{value}`: {reason}")]
    InvalidName {
        /// `lease name`, `namespace`, `identity`, `label key`, `label value`, `address` or
        /// `service name`.
        what: &'static str,
        /// The name as given.
        value: String,
        /// Which rule it breaks.
        reason: String,
    },

    /// The same lease was asked for twice in one runtime with different timings.
    #[error(
        "lease `{namespace}/{name}` is already in use in this runtime with other timings; \
         functions on the same lease share one election, so give them the same settings"
    )]
    ConflictingSettings {
        /// Namespace of the lease.
        namespace: String,
        /// Name of the lease.
        name: String,
    },

    /// The lease changed since it was read, or was created by someone else first: another
    /// candidate won this round (optimistic concurrency on `resourceVersion`).
    #[error("lease `{namespace}/{name}` was changed by someone else (conflict on {verb})")]
    Conflict {
        /// The request that lost the race.
        verb: Verb,
        /// Namespace of the lease.
        namespace: String,
        /// Name of the lease.
        name: String,
    },

    /// The lease does not exist (it was never created, or was deleted).
    #[error("lease `{namespace}/{name}` does not exist")]
    NotFound {
        /// Namespace of the lease.
        namespace: String,
        /// Name of the lease.
        name: String,
    },

    /// The API server refused a request for lack of RBAC rights.
    #[error(
        "forbidden: `{user}` may not {verb} leases.coordination.k8s.io in namespace `{namespace}`; \
         bind it to a Role in that namespace with the rule {{{rule}}} (API server said: {message})",
        rule = LEASE_RULE
    )]
    Forbidden {
        /// The refused verb.
        verb: Verb,
        /// The namespace it was refused in.
        namespace: String,
        /// Who was refused, as far as known (the API server's message names it too).
        user: String,
        /// The API server's own message.
        message: String,
    },

    /// The API server refused to record a leader-election Event on a Lease for lack of RBAC
    /// rights. The election goes on unharmed: events are only told about.
    #[error(
        "forbidden: `{user}` may not record events in namespace `{namespace}`; bind it to a Role \
         in that namespace with the rule {{{rule}}}, or turn leader-election events off \
         (`RuntimeBuilder::events(false)`, `#[leader_main(events = false)]`) (API server said: \
         {message})",
        rule = EVENT_RULE
    )]
    EventsForbidden {
        /// The namespace of the lease.
        namespace: String,
        /// Who was refused, as far as known.
        user: String,
        /// The API server's own message.
        message: String,
    },

    /// A request to the API server failed (unreachable, timed out, or an unexpected answer).
    /// Transient: the runtime retries it.
    #[error("{verb} {} failed: {message}", subject(namespace, name))]
    Api {
        /// The failed request.
        verb: Verb,
        /// Namespace of the lease.
        namespace: String,
        /// Name of the lease (empty for namespace-wide list and watch).
        name: String,
        /// What went wrong, for people.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// No Kubernetes client configuration could be found or loaded.
    #[error(
        "no Kubernetes configuration: {source}. Tried in-cluster config (KUBERNETES_SERVICE_HOST and \
         the service-account token) and a kubeconfig ($KUBECONFIG or ~/.kube/config). Run inside a \
         pod, or point KUBECONFIG at a kubeconfig file"
    )]
    NoKubeConfig {
        /// What kube reported.
        #[source]
        source: kube::Error,
    },

    /// A leader-only function was called, but no runtime runs in this process.
    #[error(
        "no leader runtime is running: call leader-only functions from a program whose `main` has \
         `#[leader_main]`, or install a runtime first with `leader::install_runtime`"
    )]
    NotStarted,

    /// The runtime shut down before this replica led, so the work never ran.
    #[error("the leader runtime shut down before this replica became leader of `{lease}`")]
    ShutDown {
        /// `namespace/name` of the lease.
        lease: String,
    },

    /// The work ignored its cancellation token for longer than the hard-stop grace period after
    /// leadership ended, and the runtime dropped it so that it cannot overlap the next leader.
    #[error(
        "the work on lease `{lease}` did not return within {grace:?} after its token fired and was \
         stopped; return promptly once `Leadership::token()` is cancelled"
    )]
    HardStopped {
        /// `namespace/name` of the lease.
        lease: String,
        /// The grace period that ran out.
        grace: Duration,
    },

    /// The work panicked.
    #[error("the work on lease `{lease}` panicked")]
    WorkPanicked {
        /// `namespace/name` of the lease.
        lease: String,
    },

    /// Health check: this replica believes it leads but has not renewed for longer than the lease
    /// duration plus the tolerance, so it is stuck (client-go's `HealthzAdaptor` semantics).
    #[error(
        "leader of `{lease}` has not renewed for {since:?} (lease duration plus tolerance is {limit:?}); \
         the elector is stuck"
    )]
    LeaderStuck {
        /// `namespace/name` of the lease.
        lease: String,
        /// Time since the last successful renew.
        since: Duration,
        /// Lease duration plus tolerance.
        limit: Duration,
    },

    /// The health endpoint could not listen on its address (already in use, or not allowed).
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    #[error(
        "cannot serve the health endpoint on {addr}: {source}; choose a free port (ports below \
         1024 need privileges)"
    )]
    Listen {
        /// The address it tried to listen on.
        addr: std::net::SocketAddr,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },

    /// Health check: the API server refuses this replica's requests on the lease for lack of
    /// RBAC rights, so it cannot take part in the election.
    #[error("election for lease `{lease}` is unhealthy: {message}")]
    Unhealthy {
        /// `namespace/name` of the lease.
        lease: String,
        /// The refusal, with the RBAC rule that would grant the request.
        message: String,
    },
}

impl Error {
    /// Whether the error is the lost race of an optimistic-concurrency write.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    /// Whether the error says the lease does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}

/// What a request was about: one lease, or (with no name) the leases of a namespace.
fn subject(namespace: &str, name: &str) -> String {
    if name.is_empty() {
        format!("leases in namespace `{namespace}`")
    } else {
        format!("lease `{namespace}/{name}`")
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
