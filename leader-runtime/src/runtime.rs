//! The shared runtime: one store (one API client and the watches of its leases) and any number of
//! independent elections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::election::{Election, ElectionShared};
use crate::elector::Elector;
use crate::pod_cost::{PodDeletionCost, PodRef};
use crate::record::{Labels, Stamp};
use crate::report::Reporter;
use crate::store::{KubeLeaseStore, LeaseKey, LeaseStore};
use crate::{ElectionConfig, Error, Result, identity, validate_lease_name, validate_namespace};

/// One per process: runs the elections of all its leases over one API client.
///
/// ```
/// use leader_runtime::{Runtime, testing::InMemoryLeaseStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> leader_runtime::Result<()> {
/// // In a cluster: `Runtime::builder().build().await?` finds the client configuration itself.
/// let runtime = Runtime::builder().store(InMemoryLeaseStore::new()).identity("replica-1").build().await?;
/// let election = runtime.election("nightly-report")?;
/// let ran_on = election.lead(|leadership| async move { leadership.identity().to_owned() }).await?;
/// assert_eq!(ran_on, "replica-1");
/// runtime.shutdown().await; // releases held leases
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

/// What the elections of a runtime share.
pub(crate) struct Common {
    /// This replica's identity.
    pub(crate) identity: String,
    /// The log of the API server's problems.
    pub(crate) reporter: Reporter,
    /// What this replica puts on every lease it writes: labels, and the address it serves on.
    pub(crate) stamp: Stamp,
    /// Whether to record leader-election Events on the leases.
    pub(crate) events: bool,
    /// Marks this replica's pod while it leads, when asked to.
    pub(crate) pod_cost: Option<PodDeletionCost>,
    /// Points Services at this replica while it leads their leases, when asked to.
    #[cfg(feature = "leader-service")]
    pub(crate) leader_services: Option<crate::leader_service::LeaderServices>,
}

impl Common {
    /// What elections of the replica `identity` share, with events on, no labels and no address.
    pub(crate) fn new(identity: impl Into<String>) -> Self {
        Common {
            identity: identity.into(),
            reporter: Reporter::default(),
            stamp: Stamp::default(),
            events: true,
            pod_cost: None,
            #[cfg(feature = "leader-service")]
            leader_services: None,
        }
    }
}

struct Inner {
    store: Arc<dyn LeaseStore>,
    common: Arc<Common>,
    /// The API client behind `store`, when it is the Kubernetes API.
    client: Option<kube::Client>,
    /// Whether the builder applied the `LEADER_*` variables.
    applied_env: bool,
    namespace: String,
    config: ElectionConfig,
    shutdown: CancellationToken,
    electors: TaskTracker,
    elections: Mutex<HashMap<LeaseKey, Election>>,
    renames: HashMap<String, String>,
}

impl Runtime {
    /// A builder with every setting at its default.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// The election for lease `name` in the runtime's namespace, with the runtime's timings.
    /// Every call for the same lease returns the same election.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a name that is not a DNS-1123 subdomain.
    pub fn election(&self, name: &str) -> Result<Election> {
        self.election_with(&self.inner.namespace, name, self.inner.config)
    }

    /// The election for lease `name` in `namespace` with its own timings.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::InvalidConfig`], or [`Error::ConflictingSettings`] if the
    /// lease is already in use in this runtime with other timings.
    pub fn election_with(
        &self,
        namespace: &str,
        name: &str,
        config: ElectionConfig,
    ) -> Result<Election> {
        let name = self.inner.renames.get(name).map_or(name, String::as_str);
        validate_namespace(namespace)?;
        validate_lease_name(name)?;
        config.validate()?;
        let key = LeaseKey::new(namespace, name);
        let mut elections = self
            .inner
            .elections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = elections.get(&key) {
            if existing.shared.config != config {
                return Err(Error::ConflictingSettings {
                    namespace: key.namespace,
                    name: key.name,
                });
            }
            return Ok(existing.clone());
        }
        if self.inner.shutdown.is_cancelled() {
            return Err(Error::ShutDown {
                lease: key.to_string(),
            });
        }
        let shared = Arc::new(ElectionShared::new(
            key.clone(),
            config,
            Arc::clone(&self.inner.common),
        ));
        let elector = Elector::new(
            Arc::clone(&shared),
            Arc::clone(&self.inner.store),
            self.inner.shutdown.clone(),
        );
        self.inner.electors.spawn(elector.run());
        let election = Election {
            shared,
            shutdown: self.inner.shutdown.clone(),
        };
        elections.insert(key, election.clone());
        Ok(election)
    }

    /// The Kubernetes API client the runtime uses, for the program's own requests (one client
    /// per process). `None` when the runtime keeps its leases elsewhere
    /// ([`RuntimeBuilder::store`], `LEADER_STANDALONE`).
    pub fn client(&self) -> Option<&kube::Client> {
        self.inner.client.as_ref()
    }

    /// Whether the runtime's builder applied the `LEADER_*` environment variables
    /// ([`RuntimeBuilder::apply_env`]).
    pub fn applied_env(&self) -> bool {
        self.inner.applied_env
    }

    /// This replica's identity, as written to `holderIdentity`.
    pub fn identity(&self) -> &str {
        &self.inner.common.identity
    }

    /// The namespace of leases that name none.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The default timings of the runtime's elections.
    pub fn config(&self) -> &ElectionConfig {
        &self.inner.config
    }

    /// Every election created so far.
    pub fn elections(&self) -> Vec<Election> {
        let elections = self
            .inner
            .elections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        elections.values().cloned().collect()
    }

    /// A token that fires when the runtime starts shutting down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Shuts down gracefully: every leadership token fires, the work is awaited (dropped after
    /// [`ElectionConfig::hard_stop_grace`] at the latest), and held leases are released so another
    /// replica takes over at once. Waiting [`Election::lead`] calls return [`Error::ShutDown`].
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.electors.close();
        self.inner.electors.wait().await;
    }
}

/// Waits for SIGTERM (what Kubernetes sends to stop a pod) or Ctrl+C, logs it, and names the one
/// that came. Pair it with [`Runtime::shutdown`] to release leases when the process is asked to
/// stop.
///
/// # Panics
/// If the signal handlers cannot be installed (outside a tokio runtime with signals enabled).
pub async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let signal = tokio::select! {
        _ = tokio::signal::ctrl_c() => "Ctrl+C",
        _ = terminate.recv() => "SIGTERM",
    };
    tracing::info!("{signal} received: stopping leader work and releasing leases");
    signal
}

/// Settings for a [`Runtime`].
#[derive(Default)]
#[must_use]
pub struct RuntimeBuilder {
    client: Option<kube::Client>,
    store: Option<Arc<dyn LeaseStore>>,
    /// The store is the in-memory one from `LEADER_STANDALONE`: warn when building.
    standalone: bool,
    /// [`RuntimeBuilder::apply_env`] was called.
    applied_env: bool,
    identity: Option<String>,
    namespace: Option<String>,
    config: Option<ElectionConfig>,
    renames: HashMap<String, String>,
    labels: Labels,
    /// Where this replica serves requests ([`RuntimeBuilder::address`]).
    address: Option<Address>,
    /// `None`: the default, on.
    events: Option<bool>,
    /// The pod to mark while leading ([`RuntimeBuilder::pod_deletion_cost`]).
    pod: Option<PodRef>,
    /// For the store made from the client ([`RuntimeBuilder::max_requests_in_flight`]).
    max_requests_in_flight: Option<usize>,
    /// `(lease, service)` pairs ([`RuntimeBuilder::leader_service`]).
    #[cfg(feature = "leader-service")]
    leader_services: Vec<(String, String)>,
}

/// Sets this replica's identity ([`RuntimeBuilder::apply_env`]).
pub const ENV_IDENTITY: &str = "LEADER_IDENTITY";
/// Sets the namespace of leases that name none ([`RuntimeBuilder::apply_env`]).
pub const ENV_NAMESPACE: &str = "LEADER_NAMESPACE";
/// `1` keeps leases in memory, this process the sole leader ([`RuntimeBuilder::apply_env`]).
pub const ENV_STANDALONE: &str = "LEADER_STANDALONE";
/// Sets the address this replica serves requests on ([`RuntimeBuilder::apply_env`]).
pub const ENV_ADDRESS: &str = "LEADER_ADDRESS";
/// The pod's IP, from the downward API ([`RuntimeBuilder::address_from_pod_ip`]).
pub const ENV_POD_IP: &str = "POD_IP";

/// Where a replica serves requests, as given to the builder.
#[derive(Clone, Debug)]
enum Address {
    /// `host:port` as given.
    Given(String),
    /// `$POD_IP` and this port, read when building.
    PodIp(u16),
}

const STANDALONE_WARNING: &str = "LEADER_STANDALONE is set: leases are kept in memory and this \
    process is the sole leader of every lease. For local development only; never in a cluster.";

impl RuntimeBuilder {
    /// Applies the `LEADER_*` environment variables that are set (and not empty) over the
    /// settings made so far; settings made afterwards win over them. `#[leader_main]` applies
    /// them after its own `identity` and `namespace`, so there the variables win; a program that
    /// builds its runtime itself (`#[leader_main(runtime = ...)]`) calls this to keep them.
    ///
    /// | variable | effect |
    /// | --- | --- |
    /// | `LEADER_IDENTITY` | [`identity`](Self::identity) |
    /// | `LEADER_NAMESPACE` | [`namespace`](Self::namespace) |
    /// | `LEADER_ADDRESS` | [`address`](Self::address) |
    /// | `LEADER_STANDALONE` | any value but `0` or `false`: leases are kept in an in-memory store, so this process is the sole leader of every lease; [`build`](Self::build) prints a warning. For trying a program without a cluster, never in one. |
    ///
    /// ```no_run
    /// # async fn build(flag_id: Option<String>) -> leader_runtime::Result<leader_runtime::Runtime> {
    /// use leader_runtime::Runtime;
    ///
    /// // The environment first, then a command-line flag that wins over it.
    /// let mut builder = Runtime::builder().apply_env();
    /// if let Some(id) = flag_id {
    ///     builder = builder.identity(id);
    /// }
    /// builder.build().await
    /// # }
    /// ```
    pub fn apply_env(self) -> Self {
        self.apply_env_from(|name| std::env::var(name).ok())
    }

    /// [`apply_env`](Self::apply_env) over the variables that `var` reads.
    fn apply_env_from(mut self, var: impl Fn(&str) -> Option<String>) -> Self {
        self.applied_env = true;
        let var = |name: &str| {
            var(name)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        if let Some(identity) = var(ENV_IDENTITY) {
            self.identity = Some(identity);
        }
        if let Some(namespace) = var(ENV_NAMESPACE) {
            self.namespace = Some(namespace);
        }
        if let Some(address) = var(ENV_ADDRESS) {
            self.address = Some(Address::Given(address));
        }
        if var(ENV_STANDALONE).is_some_and(|value| value != "0" && value != "false") {
            self = self.store(crate::testing::InMemoryLeaseStore::new());
            self.standalone = true;
        }
        self
    }

    /// Uses the Lease `to` wherever the program asks for lease `from`, for example to run two
    /// deployments of one binary in one namespace, or to honour a `--lease-lock-name` flag for a
    /// lease named in a `#[leader_only]` attribute.
    pub fn rename_lease(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.renames.insert(from.into(), to.into());
        self
    }

    /// The API client to use. Default: [`kube_client`](crate::kube_client) of the configuration
    /// inferred from the environment (in-cluster configuration, then `$KUBECONFIG` or
    /// `~/.kube/config`).
    ///
    /// A client from [`kube::Client::try_from`] or [`kube::Client::try_default`] works, but
    /// leaves Nagle's algorithm on: the first request on each new connection waits about 40 ms,
    /// which a start, a takeover after a crash and a recovery after an API server outage each
    /// pay. [`kube_client`](crate::kube_client) builds the same client without that delay.
    pub fn client(mut self, client: kube::Client) -> Self {
        self.client = Some(client);
        self.store = None;
        self.standalone = false;
        self
    }

    /// Keep leases in `store` instead of the Kubernetes API, for example the in-memory store of
    /// [`testing`](crate::testing).
    pub fn store(mut self, store: impl LeaseStore) -> Self {
        self.store = Some(Arc::new(store));
        self.client = None;
        self.standalone = false;
        self
    }

    /// This replica's identity. Default: `POD_NAME` or the hostname, plus a random suffix.
    ///
    /// Identities must be unique among the candidates of a lease: two processes with the same
    /// identity each take the record as their own, and both lead (client-go behaves the same).
    pub fn identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = Some(identity.into());
        self
    }

    /// The namespace for leases. Default: `POD_NAMESPACE`, then the pod's service-account
    /// namespace, then the kubeconfig context's namespace, then `default`.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Puts `labels` on every lease this replica takes, and keeps them there while it holds it,
    /// as client-go's `NewWithLabels` and controller-runtime's `LeaderElectionLabels` do: set over
    /// the lease's own labels of the same keys, the others kept. Calls add up.
    ///
    /// ```
    /// # use leader_runtime::Runtime;
    /// let builder = Runtime::builder().lease_labels([("app.kubernetes.io/name", "billing")]);
    /// ```
    pub fn lease_labels<K, V>(mut self, labels: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        let labels = labels.into_iter();
        self.labels
            .extend(labels.map(|(key, value)| (key.into(), value.into())));
        self
    }

    /// Whether to record an Event on the lease when this replica becomes leader and when it
    /// stops leading, as client-go's lease lock does with an event recorder: type `Normal`,
    /// reason `LeaderElection`, note `<identity> became leader` / `<identity> stopped leading`
    /// (`kubectl get events`, `kubectl describe lease`). Default: on. Needs the RBAC rule
    /// [`EVENT_RULE`](crate::EVENT_RULE); without it, one warning says so and the election goes
    /// on without events.
    pub fn events(mut self, on: bool) -> Self {
        self.events = Some(on);
        self
    }

    /// Marks pod `pod` in `namespace`, the one this replica runs in, as the last of its
    /// ReplicaSet to remove while this replica leads: its
    /// [`POD_DELETION_COST`](crate::POD_DELETION_COST) annotation is the number of leases it
    /// leads, and goes away when it leads none. In a rolling update the old followers are then
    /// removed before the old leader, so its leases go straight to new pods: one handover per
    /// rollout instead of two or three. Nothing waits for it: takeovers are as fast as without,
    /// and client-go candidates on the same leases need nothing.
    ///
    /// Give it the pod's name and namespace from the downward API (`POD_NAME`,
    /// `POD_NAMESPACE`, as `examples/deploy/` does). Needs the RBAC rule
    /// [`POD_RULE`](crate::POD_RULE) in the pod's namespace; without it, one warning says so and
    /// nothing else changes. Only with the Kubernetes API (not with [`store`](Self::store)).
    pub fn pod_deletion_cost(
        mut self,
        namespace: impl Into<String>,
        pod: impl Into<String>,
    ) -> Self {
        self.pod = Some(PodRef {
            namespace: namespace.into(),
            name: pod.into(),
        });
        self
    }

    /// The address this replica serves requests on, as `host:port` (`10.1.2.3:8080`,
    /// `[fd00::7]:8080`, `web-1.web.shop.svc:8080`). While it holds a lease, it publishes the
    /// address there (the [`HOLDER_ADDRESS_ANNOTATION`](crate::HOLDER_ADDRESS_ANNOTATION)), so
    /// that every replica learns where the leader is from the watch it already has
    /// ([`Election::leader`](crate::Election::leader)): to send writes there, or to tell clients
    /// where to go (feature `axum`: `LeaderOnly`). Default: none is published.
    pub fn address(mut self, address: impl Into<String>) -> Self {
        self.address = Some(Address::Given(address.into()));
        self
    }

    /// [`address`](Self::address) from the pod's IP and `port`: the IP from the `POD_IP`
    /// variable, which the downward API sets (`fieldRef: {fieldPath: status.podIP}`, as
    /// `examples/deploy/` does). [`build`](Self::build) fails when `POD_IP` is not set.
    pub fn address_from_pod_ip(mut self, port: u16) -> Self {
        self.address = Some(Address::PodIp(port));
        self
    }

    /// Keeps the selector-less Service `service` pointing at the leader of lease `lease` (in the
    /// runtime's namespace), so that clients that cannot run this library reach the leader at
    /// `<service>.<namespace>.svc`, to send it writes, say. While this replica leads `lease`,
    /// the Service's one endpoint is this replica's [`address`](Self::address): a new leader
    /// points it at itself before its term's work starts (so the work can count on it), and a
    /// leader that steps down empties it before releasing the lease, but only while it still
    /// points at this very term, so that it never removes a newer leader's endpoint. Calls add
    /// up, one Service per lease (a later call for the same lease replaces the earlier one); the
    /// lease is named as the program names it ([`rename_lease`](Self::rename_lease) applies).
    ///
    /// The Service is yours: create it without a `selector`, with one port without a name and
    /// the port of the address (`ports: [{port: 8080}]`). The runtime keeps one EndpointSlice for
    /// it, [`leader_service_slice_name`](crate::leader_service_slice_name), managed by
    /// [`LEADER_SERVICE_MANAGER`](crate::LEADER_SERVICE_MANAGER). It is best effort: a failed
    /// write is logged (at most every five minutes), the term starts anyway, and the write is
    /// tried again every retry period during the term; the election is never held up longer
    /// than until its first renew.
    ///
    /// Needs this replica's address with an IP as host, as an EndpointSlice holds IPs
    /// ([`address_from_pod_ip`](Self::address_from_pod_ip)); every replica of the lease must
    /// have an address of the same family (IPv4 or IPv6). Needs the RBAC rule
    /// [`SERVICE_RULE`](crate::SERVICE_RULE) in the runtime's namespace; without it, a warning
    /// says so and nothing else changes. Only with the Kubernetes API: with
    /// [`store`](Self::store) it is ignored.
    ///
    /// ```
    /// # use leader_runtime::Runtime;
    /// let builder = Runtime::builder()
    ///     .address_from_pod_ip(8080)
    ///     .leader_service("orders-writer", "orders-leader");
    /// ```
    #[cfg(feature = "leader-service")]
    #[cfg_attr(docsrs, doc(cfg(feature = "leader-service")))]
    pub fn leader_service(mut self, lease: impl Into<String>, service: impl Into<String>) -> Self {
        self.leader_services.push((lease.into(), service.into()));
        self
    }

    /// Sends at most `count` lease requests to the API server at a time, 16 by default
    /// ([`KubeLeaseStore::max_requests_in_flight`] says what the bound saves and when to raise
    /// it: about 1,000 leases per process at 30 ms a request). Only with the Kubernetes API:
    /// with [`store`](Self::store) it is ignored (configure that store instead).
    ///
    /// ```
    /// # use leader_runtime::Runtime;
    /// let builder = Runtime::builder().max_requests_in_flight(64);
    /// ```
    pub fn max_requests_in_flight(mut self, count: usize) -> Self {
        self.max_requests_in_flight = Some(count);
        self
    }

    /// Default timings for the runtime's elections. Default: [`ElectionConfig::default`].
    pub fn config(mut self, config: ElectionConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// Builds the runtime. Must be called within a tokio runtime.
    ///
    /// # Errors
    /// [`Error::NoKubeConfig`] when no client was given and none can be inferred;
    /// [`Error::InvalidName`] or [`Error::InvalidConfig`] for bad settings.
    pub async fn build(self) -> Result<Runtime> {
        let config = self.config.unwrap_or_default();
        config.validate()?;
        let identity = self.identity.unwrap_or_else(identity::default_identity);
        if identity.is_empty() {
            return Err(Error::InvalidName {
                what: "identity",
                value: identity,
                reason: "it is empty".into(),
            });
        }
        for (key, value) in &self.labels {
            crate::names::validate_label(key, value)?;
        }
        let address = match self.address {
            None => None,
            Some(Address::Given(address)) => Some(crate::names::validate_address(address)?),
            Some(Address::PodIp(port)) => Some(address_from_pod_ip(
                std::env::var(ENV_POD_IP).ok().as_deref(),
                port,
            )?),
        };
        if self.standalone {
            eprintln!("WARNING: {STANDALONE_WARNING}");
            tracing::warn!("{STANDALONE_WARNING}");
        }
        let (store, client): (Arc<dyn LeaseStore>, Option<kube::Client>) =
            match (self.store, self.client) {
                (Some(store), _) => (store, None),
                (None, client) => {
                    let client = match client {
                        Some(client) => client,
                        None => default_client()
                            .await
                            .map_err(|source| Error::NoKubeConfig { source })?,
                    };
                    let store = kube_store(client.clone(), &config, self.max_requests_in_flight);
                    (Arc::new(store), Some(client))
                }
            };
        let namespace = self
            .namespace
            .or_else(identity::namespace_from_environment)
            .or_else(|| Some(client.as_ref()?.default_namespace().to_owned()))
            .unwrap_or_else(|| "default".to_owned());
        validate_namespace(&namespace)?;
        let shutdown = CancellationToken::new();
        let pod_cost = match (self.pod, &client) {
            (Some(pod), Some(client)) => {
                validate_namespace(&pod.namespace)?;
                Some(PodDeletionCost::start(
                    client.clone(),
                    pod,
                    shutdown.clone(),
                ))
            }
            _ => None,
        };
        #[cfg(feature = "leader-service")]
        let leader_services = match &client {
            Some(client) if !self.leader_services.is_empty() => {
                let asked = (self.leader_services.into_iter())
                    .map(|(lease, service)| {
                        let lease = self.renames.get(&lease).cloned().unwrap_or(lease);
                        (lease, service)
                    })
                    .collect();
                Some(crate::leader_service::LeaderServices::new(
                    client.clone(),
                    namespace.clone(),
                    asked,
                    address.as_deref(),
                )?)
            }
            _ => None,
        };
        Ok(Runtime {
            inner: Arc::new(Inner {
                store,
                common: Arc::new(Common {
                    stamp: Stamp {
                        labels: self.labels,
                        address,
                    },
                    events: self.events.unwrap_or(true),
                    pod_cost,
                    #[cfg(feature = "leader-service")]
                    leader_services,
                    ..Common::new(identity)
                }),
                client,
                applied_env: self.applied_env,
                namespace,
                config,
                shutdown,
                electors: TaskTracker::new(),
                elections: Mutex::new(HashMap::new()),
                renames: self.renames,
            }),
        })
    }
}

/// The client of the configuration inferred from the environment, as
/// [`kube::Client::try_default`] infers it.
async fn default_client() -> kube::Result<kube::Client> {
    let config = kube::Config::infer()
        .await
        .map_err(kube::Error::InferConfig)?;
    crate::kube_client(config)
}

/// The store a runtime makes from its client: the runtime's retry period for its watches.
fn kube_store(
    client: kube::Client,
    config: &ElectionConfig,
    max_requests_in_flight: Option<usize>,
) -> KubeLeaseStore {
    let store = KubeLeaseStore::new(client).retry_period(config.retry_period);
    match max_requests_in_flight {
        Some(count) => store.max_requests_in_flight(count),
        None => store,
    }
}

/// `ip:port` from the pod IP the downward API put in `POD_IP` (`None`: not set).
fn address_from_pod_ip(pod_ip: Option<&str>, port: u16) -> Result<String> {
    let pod_ip = pod_ip.map(str::trim).filter(|ip| !ip.is_empty());
    let Some(pod_ip) = pod_ip else {
        return Err(Error::InvalidConfig {
            reason: format!(
                "`address_from_pod_ip` needs the pod's IP in `{ENV_POD_IP}`, which is not set: \
                 add `env: [{{name: {ENV_POD_IP}, valueFrom: {{fieldRef: {{fieldPath: \
                 status.podIP}}}}}}]` to the container, or give the address with `address`"
            ),
        });
    };
    let ip: std::net::IpAddr = pod_ip.parse().map_err(|_| Error::InvalidConfig {
        reason: format!("`{ENV_POD_IP}` is `{pod_ip}`, which is not an IP address"),
    })?;
    Ok(std::net::SocketAddr::new(ip, port).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    #[tokio::test]
    async fn the_environment_wins_over_earlier_settings_and_loses_to_later_ones() {
        let vars = env(&[(ENV_IDENTITY, "from-env"), (ENV_NAMESPACE, " jobs ")]);
        let runtime = Runtime::builder()
            .store(crate::testing::InMemoryLeaseStore::new())
            .identity("from-attribute")
            .apply_env_from(&vars)
            .build()
            .await
            .unwrap();
        assert_eq!(
            (runtime.identity(), runtime.namespace()),
            ("from-env", "jobs")
        );
        let runtime = Runtime::builder()
            .store(crate::testing::InMemoryLeaseStore::new())
            .apply_env_from(&vars)
            .identity("from-flag")
            .build()
            .await
            .unwrap();
        assert_eq!(runtime.identity(), "from-flag");
    }

    #[tokio::test]
    async fn empty_variables_are_unset_and_standalone_keeps_leases_in_memory() {
        let runtime = Runtime::builder()
            .identity("kept")
            .apply_env_from(env(&[(ENV_IDENTITY, "  "), (ENV_STANDALONE, "1")]))
            .build()
            .await
            .unwrap();
        assert_eq!(runtime.identity(), "kept");
        assert!(runtime.client().is_none(), "standalone uses no API client");
        let off = RuntimeBuilder::default().apply_env_from(env(&[(ENV_STANDALONE, "false")]));
        assert!(off.store.is_none() && !off.standalone);
    }

    #[tokio::test]
    async fn the_store_made_from_the_client_takes_the_runtime_settings() {
        // A client that is never used: making a store sends no request.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let timings = ElectionConfig {
            retry_period: std::time::Duration::from_secs(3),
            ..ElectionConfig::default()
        };
        let store = format!("{:?}", kube_store(client.clone(), &timings, Some(64)));
        assert!(store.contains("retry_period: 3s"), "{store}");
        assert!(store.contains("max_requests_in_flight: 64"), "{store}");
        let store = format!("{:?}", kube_store(client, &timings, None));
        assert!(store.contains("max_requests_in_flight: 16"), "{store}");
    }

    #[cfg(feature = "leader-service")]
    #[tokio::test]
    async fn a_leader_service_needs_an_ip_address_and_a_service_name() {
        // A client that is never used: building checks the settings before any request.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let build = |address: Option<&str>, service: &str| {
            let mut builder = Runtime::builder()
                .client(client.clone())
                .identity("me")
                .namespace("shop")
                .leader_service("orders", service);
            if let Some(address) = address {
                builder = builder.address(address);
            }
            builder.build()
        };
        let error = build(None, "orders-leader").await.err().unwrap();
        assert!(
            matches!(&error, Error::InvalidConfig { reason } if reason.contains("address")),
            "{error}"
        );
        let error = build(Some("web-1.web:8080"), "orders-leader")
            .await
            .err()
            .unwrap();
        assert!(
            matches!(&error, Error::InvalidConfig { reason } if reason.contains("IP")),
            "{error}"
        );
        let error = build(Some("10.1.2.3:8080"), "Orders.Leader")
            .await
            .err()
            .unwrap();
        assert!(
            matches!(
                &error,
                Error::InvalidName {
                    what: "service name",
                    ..
                }
            ),
            "{error}"
        );
        let runtime = build(Some("[fd00::7]:8080"), "orders-leader")
            .await
            .unwrap();
        let election = runtime.election("orders").unwrap();
        assert!(election.shared.leader_service.is_some());
        assert!(
            runtime
                .election("other")
                .unwrap()
                .shared
                .leader_service
                .is_none()
        );
        // With a store of its own (no Kubernetes API), it is ignored.
        let runtime = Runtime::builder()
            .store(crate::testing::InMemoryLeaseStore::new())
            .leader_service("orders", "orders-leader")
            .build()
            .await
            .unwrap();
        assert!(
            runtime
                .election("orders")
                .unwrap()
                .shared
                .leader_service
                .is_none()
        );
    }

    #[test]
    fn the_address_comes_from_the_pod_ip_with_ipv6_in_brackets() {
        assert_eq!(
            address_from_pod_ip(Some("10.1.2.3"), 8080).unwrap(),
            "10.1.2.3:8080"
        );
        assert_eq!(
            address_from_pod_ip(Some(" fd00::7 "), 80).unwrap(),
            "[fd00::7]:80"
        );
        for missing in [None, Some(""), Some("  ")] {
            let error = address_from_pod_ip(missing, 80).unwrap_err().to_string();
            assert!(
                error.contains("POD_IP") && error.contains("status.podIP"),
                "{error}"
            );
        }
        let error = address_from_pod_ip(Some("web-1"), 80)
            .unwrap_err()
            .to_string();
        assert!(error.contains("not an IP address"), "{error}");
    }
}
