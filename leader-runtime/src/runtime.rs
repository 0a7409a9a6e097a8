//! The shared runtime: one store (one API client, one watch per namespace) and any number of
//! independent elections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::election::{Election, ElectionShared};
use crate::elector::Elector;
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

struct Inner {
    store: Arc<dyn LeaseStore>,
    identity: String,
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
            self.inner.identity.clone(),
            config,
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

    /// This replica's identity, as written to `holderIdentity`.
    pub fn identity(&self) -> &str {
        &self.inner.identity
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

/// Waits for SIGTERM (what Kubernetes sends to stop a pod) or Ctrl+C, and names the one that came.
/// Pair it with [`Runtime::shutdown`] to release leases when the process is asked to stop.
///
/// # Panics
/// If the signal handlers cannot be installed (outside a tokio runtime with signals enabled).
pub async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "Ctrl+C",
        _ = terminate.recv() => "SIGTERM",
    }
}

/// Settings for a [`Runtime`].
#[derive(Default)]
#[must_use]
pub struct RuntimeBuilder {
    client: Option<kube::Client>,
    store: Option<Arc<dyn LeaseStore>>,
    identity: Option<String>,
    namespace: Option<String>,
    config: Option<ElectionConfig>,
    renames: HashMap<String, String>,
}

impl RuntimeBuilder {
    /// Uses the Lease `to` wherever the program asks for lease `from`, for example to run two
    /// deployments of one binary in one namespace, or to honour a `--lease-lock-name` flag for a
    /// lease named in a `#[leader_only]` attribute.
    pub fn rename_lease(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.renames.insert(from.into(), to.into());
        self
    }

    /// The API client to use. Default: inferred from the environment (in-cluster configuration,
    /// then `$KUBECONFIG` or `~/.kube/config`).
    pub fn client(mut self, client: kube::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Keep leases in `store` instead of the Kubernetes API, for example the in-memory store of
    /// [`testing`](crate::testing).
    pub fn store(mut self, store: impl LeaseStore) -> Self {
        self.store = Some(Arc::new(store));
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
        let (store, client_namespace): (Arc<dyn LeaseStore>, Option<String>) =
            match (self.store, self.client) {
                (Some(store), _) => (store, None),
                (None, client) => {
                    let client = match client {
                        Some(client) => client,
                        None => kube::Client::try_default()
                            .await
                            .map_err(|source| Error::NoKubeConfig { source })?,
                    };
                    let namespace = client.default_namespace().to_owned();
                    (Arc::new(KubeLeaseStore::new(client)), Some(namespace))
                }
            };
        let namespace = self
            .namespace
            .or_else(identity::namespace_from_environment)
            .or(client_namespace)
            .unwrap_or_else(|| "default".to_owned());
        validate_namespace(&namespace)?;
        Ok(Runtime {
            inner: Arc::new(Inner {
                store,
                identity,
                namespace,
                config,
                shutdown: CancellationToken::new(),
                electors: TaskTracker::new(),
                elections: Mutex::new(HashMap::new()),
                renames: self.renames,
            }),
        })
    }
}
