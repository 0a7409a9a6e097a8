//! Where leases are kept: the seam between the election algorithm and the Kubernetes API.
//!
//! The elector only needs a consistent read, a create, a compare-and-swap replace and a feed of
//! changes. [`KubeLeaseStore`] provides them over the API server; the in-memory store in
//! [`testing`](crate::testing) provides them for tests without a cluster.

mod kube;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use k8s_openapi::api::coordination::v1::Lease;
use tokio::sync::watch;

pub use self::kube::{
    DEFAULT_MAX_REQUESTS_IN_FLIGHT, DEFAULT_NAMESPACE_WATCH_ABOVE, EVENT_REPORTER, KubeLeaseStore,
};
use crate::{Error, Result};

/// A boxed, sendable future, as the [`LeaseStore`] methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The namespace and name of a Lease.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseKey {
    /// The namespace the Lease lives in.
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
}

impl LeaseKey {
    /// A key from a namespace and a name.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        LeaseKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for LeaseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The latest state of one Lease as a store's change feed knows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Observation {
    /// The feed cannot vouch for the lease yet (not synced): whoever depends on it must poll
    /// with [`LeaseStore::get`] until it is.
    #[default]
    Unknown,
    /// The feed cannot vouch for the lease because its list or watch failed with this error;
    /// whoever depends on it must poll with [`LeaseStore::get`] until it is back.
    Interrupted(FeedError),
    /// The lease does not exist.
    Absent,
    /// The lease as last written, shared: cloning the observation does not copy the lease.
    Present(Arc<Lease>),
}

impl Observation {
    /// Whether the feed vouches for the lease (it is [`Absent`](Self::Absent) or
    /// [`Present`](Self::Present)).
    pub fn is_known(&self) -> bool {
        matches!(self, Observation::Absent | Observation::Present(_))
    }
}

/// Why a feed is interrupted: the error of its list or watch, shared by every lease it feeds.
#[derive(Clone, Debug)]
pub struct FeedError(Arc<Error>);

impl FeedError {
    /// Wraps the list or watch error.
    pub fn new(error: Error) -> Self {
        FeedError(Arc::new(error))
    }

    /// The list or watch error: [`Error::Forbidden`] when RBAC refuses
    /// it, [`Error::Api`] otherwise.
    pub fn error(&self) -> &Error {
        &self.0
    }
}

impl PartialEq for FeedError {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

/// Storage for Lease objects with optimistic concurrency and a change feed.
///
/// Errors follow the crate's [`Error`]: a lost race on [`create`](Self::create) or
/// [`replace`](Self::replace) is [`Error::Conflict`], and so is replacing
/// a lease that was deleted since it was read (the API server checks the object's uid); missing
/// rights are [`Error::Forbidden`], anything else
/// [`Error::Api`].
pub trait LeaseStore: Send + Sync + 'static {
    /// Reads the lease as it is now (a quorum read), `None` if it does not exist.
    fn get<'a>(&'a self, key: &'a LeaseKey) -> BoxFuture<'a, Result<Option<Lease>>>;

    /// Creates the lease; fails with a conflict if it exists already.
    fn create<'a>(&'a self, key: &'a LeaseKey, lease: Lease) -> BoxFuture<'a, Result<Lease>>;

    /// Replaces the lease if its `metadata.resourceVersion` is still the one in `lease`. Only
    /// replace what was read from the store: an object without a uid would be created instead.
    fn replace<'a>(&'a self, key: &'a LeaseKey, lease: Lease) -> BoxFuture<'a, Result<Lease>>;

    /// A feed of the lease's latest state; the receiver stays current for as long as the store
    /// lives.
    fn subscribe(&self, key: &LeaseKey) -> watch::Receiver<Observation>;

    /// Records `event` about `lease` (as last written by `identity`) where people look for it:
    /// the Kubernetes store creates an Event regarding the Lease. Best effort: the election goes
    /// on whatever this returns. The default records nothing.
    ///
    /// # Errors
    /// [`Error::EventsForbidden`] when RBAC refuses events (the
    /// runtime then stops recording them in that namespace), anything else when recording failed.
    fn record_event(
        &self,
        lease: &Lease,
        identity: &str,
        event: LeaseEvent,
    ) -> BoxFuture<'static, Result<()>> {
        let _ = (lease, identity, event);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// What happened to a replica's leadership, as recorded in Events on the Lease (the words of
/// client-go's lease lock).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LeaseEvent {
    /// The replica became leader: `<identity> became leader`.
    BecameLeader,
    /// The replica stopped leading: `<identity> stopped leading`.
    StoppedLeading,
}

impl LeaseEvent {
    /// The Event's type, as Kubernetes spells it: always `Normal`.
    pub const TYPE: &'static str = "Normal";
    /// The Event's reason, client-go's: `LeaderElection`.
    pub const REASON: &'static str = "LeaderElection";

    /// The Event's message for the replica `identity`: `<identity> became leader`.
    pub fn message(self, identity: &str) -> String {
        match self {
            LeaseEvent::BecameLeader => format!("{identity} became leader"),
            LeaseEvent::StoppedLeading => format!("{identity} stopped leading"),
        }
    }

    /// A short name of what happened, for the Event's `action`: `Acquire` or `Release`.
    pub fn action(self) -> &'static str {
        match self {
            LeaseEvent::BecameLeader => "Acquire",
            LeaseEvent::StoppedLeading => "Release",
        }
    }
}
