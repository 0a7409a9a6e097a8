//! Testing aids: an in-memory lease store, so code that runs only on the leader can be tested
//! without a cluster.
//!
//! Several [`Runtime`](crate::Runtime)s sharing one [`InMemoryLeaseStore`] behave like replicas
//! sharing an API server: they elect one leader per lease with the same algorithm, and with
//! tokio's paused clock (`#[tokio::test(start_paused = true)]`) lease expiry takes no real time.
//!
//! ```
//! use leader_runtime::{Runtime, testing::InMemoryLeaseStore, store::LeaseKey};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> leader_runtime::Result<()> {
//! let store = InMemoryLeaseStore::new();
//! let runtime = Runtime::builder().store(store.clone()).identity("a").namespace("jobs").build().await?;
//! runtime.election("cleanup")?.lead(|_| async {}).await?;
//! runtime.shutdown().await;
//! let lease = store.lease(&LeaseKey::new("jobs", "cleanup")).expect("created");
//! assert_eq!(lease.spec.unwrap().holder_identity.as_deref(), Some("")); // released on shutdown
//! # Ok(())
//! # }
//! ```
//!
//! This store proves nothing about the Kubernetes API itself; the runtime's own tests check the
//! real store against a real API server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use k8s_openapi::api::coordination::v1::Lease;
use tokio::sync::watch;

use crate::store::{BoxFuture, FeedError, LeaseEvent, LeaseKey, LeaseStore, Observation};
use crate::{Error, Result, Verb};

/// A fault the in-memory store can simulate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The API server cannot be reached: requests fail, and change feeds are interrupted.
    Unreachable,
    /// Requests are refused for lack of RBAC rights.
    Forbidden,
    /// Requests are never answered, while the change feed keeps working (a stalled API server
    /// behind a watch connection that is still open).
    Hang,
    /// RBAC refuses to record events, while everything about leases works (a Role without
    /// [`EVENT_RULE`](crate::EVENT_RULE)).
    EventsForbidden,
    /// The API server is overloaded: requests are answered `429 Too Many Requests`, asking to
    /// retry after `retry_after` (in whole seconds, as the API server says it), while change
    /// feeds keep working.
    TooManyRequests {
        /// The wait the answer asks for.
        retry_after: std::time::Duration,
    },
}

/// Leases kept in memory, with resourceVersions, conflicts and change feeds like the API server's.
///
/// Clones share everything. [`connection`](Self::connection) gives a handle on the same leases
/// with faults of its own, like a second replica with its own network path to the API server.
#[derive(Clone, Default)]
pub struct InMemoryLeaseStore {
    leases: Arc<Mutex<Leases>>,
    connection: Arc<Connection>,
}

#[derive(Default)]
struct Leases {
    leases: HashMap<LeaseKey, Lease>,
    /// The messages of the events recorded about each lease, in order.
    events: HashMap<LeaseKey, Vec<String>>,
    last_version: u64,
    requests: u64,
    /// Every connection's feeds, told about every write.
    connections: Vec<Weak<Connection>>,
}

/// One handle's view: its fault and its change feeds.
#[derive(Default)]
struct Connection {
    fault: Mutex<Option<Fault>>,
    feeds: Mutex<HashMap<LeaseKey, watch::Sender<Observation>>>,
}

impl Connection {
    fn fault(&self) -> Option<Fault> {
        *lock(&self.fault)
    }

    /// Brings this connection's feed of `key` up to date with `lease`.
    fn notify(&self, key: &LeaseKey, lease: Option<&Lease>) {
        let feeds = lock(&self.feeds);
        let Some(feed) = feeds.get(key) else { return };
        let observation = self.observation(key, lease);
        feed.send_if_modified(|current| {
            let changed = *current != observation;
            *current = observation;
            changed
        });
    }

    fn observation(&self, key: &LeaseKey, lease: Option<&Lease>) -> Observation {
        match (self.fault(), lease) {
            (Some(Fault::Unreachable), _) => {
                let error = unreachable(Verb::Watch, key);
                Observation::Interrupted(FeedError::new(error))
            }
            (_, Some(lease)) => Observation::Present(Arc::new(lease.clone())),
            (_, None) => Observation::Absent,
        }
    }

    /// Fails a request if a fault is set.
    fn check(&self, verb: Verb, key: &LeaseKey) -> Result<()> {
        match self.fault() {
            None | Some(Fault::Hang | Fault::EventsForbidden) => Ok(()),
            Some(Fault::TooManyRequests { retry_after }) => {
                Err(too_many_requests(verb, key, retry_after))
            }
            Some(Fault::Unreachable) => Err(unreachable(verb, key)),
            Some(Fault::Forbidden) => Err(Error::Forbidden {
                verb,
                namespace: key.namespace.clone(),
                user: "in-memory".into(),
                message: "refused (simulated)".into(),
            }),
        }
    }
}

impl Leases {
    /// Tells every connection's feed of `key` the current state.
    fn notify(&mut self, key: &LeaseKey) {
        let lease = self.leases.get(key);
        self.connections
            .retain(|connection| match connection.upgrade() {
                Some(connection) => {
                    connection.notify(key, lease);
                    true
                }
                None => false,
            });
    }

    /// Stores `lease` under `key` with a new resourceVersion and tells the feeds.
    fn write(&mut self, key: &LeaseKey, mut lease: Lease) -> Lease {
        self.last_version += 1;
        lease.metadata.resource_version = Some(self.last_version.to_string());
        lease.metadata.name = Some(key.name.clone());
        lease.metadata.namespace = Some(key.namespace.clone());
        self.leases.insert(key.clone(), lease.clone());
        self.notify(key);
        lease
    }
}

impl InMemoryLeaseStore {
    /// An empty store.
    pub fn new() -> Self {
        InMemoryLeaseStore::default()
    }

    /// Another handle on the same leases, with its own faults and feeds.
    pub fn connection(&self) -> Self {
        InMemoryLeaseStore {
            leases: Arc::clone(&self.leases),
            connection: Arc::default(),
        }
    }

    fn leases(&self) -> MutexGuard<'_, Leases> {
        lock(&self.leases)
    }

    /// Never returns while this connection has [`Fault::Hang`].
    async fn hang_if_set(&self) {
        if self.connection.fault() == Some(Fault::Hang) {
            std::future::pending::<()>().await;
        }
    }

    /// Counts a request and fails it if this connection has a fault.
    fn request(&self, verb: Verb, key: &LeaseKey) -> Result<MutexGuard<'_, Leases>> {
        let mut leases = self.leases();
        leases.requests += 1;
        self.connection.check(verb, key)?;
        Ok(leases)
    }

    /// The lease as stored now.
    pub fn lease(&self, key: &LeaseKey) -> Option<Lease> {
        self.leases().leases.get(key).cloned()
    }

    /// Changes a stored lease behind the runtime's back, as `kubectl edit` would. Returns whether
    /// the lease existed. `change` runs under the store's lock: it must not use the store.
    pub fn edit(&self, key: &LeaseKey, change: impl FnOnce(&mut Lease)) -> bool {
        let mut leases = self.leases();
        let Some(mut lease) = leases.leases.get(key).cloned() else {
            return false;
        };
        change(&mut lease);
        leases.write(key, lease);
        true
    }

    /// Stores `lease` as it is, creating or overwriting, for example a record with odd values.
    pub fn put(&self, key: &LeaseKey, lease: Lease) {
        self.leases().write(key, lease);
    }

    /// Deletes a lease. Returns whether it existed.
    pub fn delete(&self, key: &LeaseKey) -> bool {
        let mut leases = self.leases();
        let existed = leases.leases.remove(key).is_some();
        leases.notify(key);
        existed
    }

    /// Makes every following request through this connection (and its clones) fail with
    /// `fault`, or, with `None`, work again.
    pub fn set_fault(&self, fault: Option<Fault>) {
        let leases = self.leases();
        *lock(&self.connection.fault) = fault;
        let keys: Vec<LeaseKey> = lock(&self.connection.feeds).keys().cloned().collect();
        for key in &keys {
            self.connection.notify(key, leases.leases.get(key));
        }
    }

    /// The messages of the leader-election events recorded about a lease, oldest first
    /// (`<identity> became leader`, `<identity> stopped leading`).
    pub fn events(&self, key: &LeaseKey) -> Vec<String> {
        self.leases().events.get(key).cloned().unwrap_or_default()
    }

    /// How many get, create and replace requests the store has answered, over all connections.
    pub fn requests(&self) -> u64 {
        self.leases().requests
    }
}

impl LeaseStore for InMemoryLeaseStore {
    fn get<'a>(&'a self, key: &'a LeaseKey) -> BoxFuture<'a, Result<Option<Lease>>> {
        Box::pin(async move {
            self.hang_if_set().await;
            let leases = self.request(Verb::Get, key)?;
            Ok(leases.leases.get(key).cloned())
        })
    }

    fn create<'a>(&'a self, key: &'a LeaseKey, lease: Lease) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(async move {
            self.hang_if_set().await;
            let mut leases = self.request(Verb::Create, key)?;
            if leases.leases.contains_key(key) {
                return Err(conflict(Verb::Create, key));
            }
            Ok(leases.write(key, lease))
        })
    }

    fn replace<'a>(&'a self, key: &'a LeaseKey, lease: Lease) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(async move {
            self.hang_if_set().await;
            let mut leases = self.request(Verb::Update, key)?;
            // A deleted lease fails the API server's uid precondition: a conflict, like a stale one.
            let current = leases
                .leases
                .get(key)
                .and_then(|current| current.metadata.resource_version.as_ref());
            if current.is_none() || current != lease.metadata.resource_version.as_ref() {
                return Err(conflict(Verb::Update, key));
            }
            Ok(leases.write(key, lease))
        })
    }

    fn record_event(
        &self,
        lease: &Lease,
        identity: &str,
        event: LeaseEvent,
    ) -> BoxFuture<'static, Result<()>> {
        let key = LeaseKey::new(
            lease.metadata.namespace.clone().unwrap_or_default(),
            lease.metadata.name.clone().unwrap_or_default(),
        );
        let recorded = match self.connection.fault() {
            Some(Fault::Forbidden | Fault::EventsForbidden) => Err(Error::EventsForbidden {
                namespace: key.namespace.clone(),
                user: "in-memory".into(),
                message: "refused (simulated)".into(),
            }),
            Some(Fault::Unreachable) => Err(unreachable(Verb::Create, &key)),
            _ => {
                let mut leases = self.leases();
                leases
                    .events
                    .entry(key)
                    .or_default()
                    .push(event.message(identity));
                Ok(())
            }
        };
        Box::pin(std::future::ready(recorded))
    }

    fn subscribe(&self, key: &LeaseKey) -> watch::Receiver<Observation> {
        let mut leases = self.leases();
        let registered = leases
            .connections
            .iter()
            .any(|c| std::ptr::eq(c.as_ptr(), Arc::as_ptr(&self.connection)));
        if !registered {
            leases.connections.push(Arc::downgrade(&self.connection));
        }
        let observation = self.connection.observation(key, leases.leases.get(key));
        let mut feeds = lock(&self.connection.feeds);
        feeds
            .entry(key.clone())
            .or_insert_with(|| watch::channel(observation).0)
            .subscribe()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a request through an unreachable connection fails with.
fn unreachable(verb: Verb, key: &LeaseKey) -> Error {
    Error::Api {
        verb,
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        message: "connection refused (simulated)".into(),
        source: None,
    }
}

/// What a request to an overloaded API server fails with, as the Kubernetes store reports it.
fn too_many_requests(verb: Verb, key: &LeaseKey, retry_after: std::time::Duration) -> Error {
    let mut status =
        kube::core::Status::failure("too many requests (simulated)", "TooManyRequests")
            .with_code(429);
    status.details = Some(kube::core::response::StatusDetails {
        name: key.name.clone(),
        group: "coordination.k8s.io".into(),
        kind: "leases".into(),
        uid: String::new(),
        causes: Vec::new(),
        retry_after_seconds: u32::try_from(retry_after.as_secs()).unwrap_or(u32::MAX),
    });
    Error::Api {
        verb,
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        message: "the API server answered 429 TooManyRequests: too many requests (simulated)"
            .into(),
        source: Some(Box::new(kube::Error::Api(status.boxed()))),
    }
}

fn conflict(verb: Verb, key: &LeaseKey) -> Error {
    Error::Conflict {
        verb,
        namespace: key.namespace.clone(),
        name: key.name.clone(),
    }
}
