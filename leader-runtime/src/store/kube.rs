//! The Kubernetes API as a [`LeaseStore`]: requests go straight to the API server, and the change
//! feeds come from list-and-watch loops the store runs itself.
//!
//! - While a namespace holds few of this process's leases, each of them has a watch of its own
//!   (a field selector on its name), so that other programs' leases in the namespace cost
//!   nothing. Above [`KubeLeaseStore::namespace_watch_above`] leases, one watch of the whole
//!   namespace replaces them, and events about leases nobody here follows are dropped as they
//!   come: only followed leases are kept in memory.
//! - A failed list or watch is retried after the retry period, stretched by a random factor
//!   (client-go's jitter, so that processes do not retry in lockstep), or after the wait a 429
//!   answer asks for if that is longer: never a backoff that grew while the API server was down.
//!   Meanwhile the feeds are [`Observation::Interrupted`] with the error, and show their last
//!   state again once the watch resumes from where it left. `410 Gone` relists at once.
//! - Lists pick their resourceVersion as client-go's reflector does: the first one takes any
//!   version (`resourceVersion=0`), which the API server answers from its watch cache at once
//!   instead of waiting up to 100 ms for the cache to catch up with etcd; later ones take data
//!   not older than what the watch has seen, and the latest after `410 Gone` from a list. A stale
//!   first list cannot mislead an election: every claim is a compare-and-swap, and the watch
//!   then delivers every change since the listed version.
//! - `metadata.managedFields` is dropped from every Lease the store hands out: the election does
//!   not read it, and it is most of a Lease's size. Replacing a lease without it keeps the
//!   server's copy.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams, PostParams, VersionMatch, WatchEvent, WatchParams};
use tokio::sync::{Notify, Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use super::{BoxFuture, FeedError, LeaseEvent, LeaseKey, LeaseStore, Observation};
use crate::{Error, Result, Verb};

/// The default of [`KubeLeaseStore::namespace_watch_above`].
pub const DEFAULT_NAMESPACE_WATCH_ABOVE: usize = 16;

/// The default of [`KubeLeaseStore::max_requests_in_flight`].
pub const DEFAULT_MAX_REQUESTS_IN_FLIGHT: usize = 16;

/// The `reportingController` of the Events the store records.
pub const EVENT_REPORTER: &str = "leader-election";

/// How many Events the store records at a time: a thousand leases taken at once would otherwise
/// open hundreds of connections for their `became leader` Events, and the process would keep
/// the memory of that burst.
const EVENTS_IN_FLIGHT: usize = 4;

/// How long a namespace watch waits for more new leases before relisting for them, so that a
/// burst of elections costs one list.
const RELIST_GATHER: Duration = Duration::from_millis(200);

/// How long the server keeps a watch request open before the store renews it (the API server's
/// own limit is between this and twice it).
const WATCH_TIMEOUT_SECONDS: u32 = 290;

/// A [`LeaseStore`] backed by the Kubernetes API.
///
/// Clones share their watches; the watches stop when the last clone is dropped.
#[derive(Clone)]
pub struct KubeLeaseStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for KubeLeaseStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeLeaseStore")
            .field("retry_period", &self.inner.retry_period)
            .field("namespace_watch_above", &self.inner.namespace_watch_above)
            .field("max_requests_in_flight", &self.inner.max_requests_in_flight)
            .finish_non_exhaustive()
    }
}

struct Inner {
    client: kube::Client,
    /// Failed lists and watches are retried after this, jittered.
    retry_period: Duration,
    /// Namespaces with more followed leases than this get one watch for all of them.
    namespace_watch_above: usize,
    /// How many lease requests (get, create, replace) may be in flight at once.
    max_requests_in_flight: usize,
    /// Their permits: over HTTP/1.1, each request in flight holds a connection.
    requests: Arc<Semaphore>,
    /// Permits for recording Events (see [`EVENTS_IN_FLIGHT`]), apart from the lease requests'
    /// so that a burst of Events never delays a renew.
    events: Arc<Semaphore>,
    /// kube's event recorder for each identity that records events (one in practice).
    recorders: Mutex<HashMap<String, Recorder>>,
    /// The namespaces of followed leases, each shared with its watch tasks.
    namespaces: Mutex<HashMap<String, Arc<Mutex<Namespace>>>>,
    /// Cancelled when the last clone of the store is dropped; stops every watch task.
    stop: CancellationToken,
}

impl Inner {
    fn new(
        client: kube::Client,
        retry_period: Duration,
        namespace_watch_above: usize,
        max_requests_in_flight: usize,
    ) -> Self {
        Inner {
            client,
            retry_period,
            namespace_watch_above,
            max_requests_in_flight,
            requests: Arc::new(Semaphore::new(max_requests_in_flight.max(1))),
            events: Arc::new(Semaphore::new(EVENTS_IN_FLIGHT)),
            recorders: Mutex::default(),
            namespaces: Mutex::default(),
            stop: CancellationToken::new(),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl KubeLeaseStore {
    /// A store that talks to the API server through `client`. Failed watches are retried after
    /// 2 s (client-go's default retry period), jittered; `Runtime::builder()` passes its own
    /// retry period instead.
    pub fn new(client: kube::Client) -> Self {
        let retry_period = crate::ElectionConfig::default().retry_period;
        KubeLeaseStore {
            inner: Arc::new(Inner::new(
                client,
                retry_period,
                DEFAULT_NAMESPACE_WATCH_ABOVE,
                DEFAULT_MAX_REQUESTS_IN_FLIGHT,
            )),
        }
    }

    /// Retries failed lists and watches after `retry_period`, stretched by a random factor in
    /// `[1, 2.2)` as client-go stretches its retry period.
    ///
    /// Configure a store before sharing it: configuring a clone makes it a store of its own.
    #[must_use]
    pub fn retry_period(mut self, retry_period: Duration) -> Self {
        self.inner_mut().retry_period = retry_period;
        self
    }

    /// Follows the leases of a namespace with one watch per lease while there are at most
    /// `count` of them (16 by default), with one watch of the whole namespace above that.
    ///
    /// Configure a store before sharing it: configuring a clone makes it a store of its own.
    #[must_use]
    pub fn namespace_watch_above(mut self, count: usize) -> Self {
        self.inner_mut().namespace_watch_above = count;
        self
    }

    /// Sends at most `count` lease requests (get, create, replace) at a time, 16 by default (0
    /// counts as 1); the others wait their turn, first come first served. Over HTTP/1.1 each
    /// request in flight holds a connection, with its TLS and HTTP buffers (about 40 KB), and the
    /// memory of a burst stays with the process after it, so a thousand leases starting or renewing
    /// at once would cost tens of megabytes without the bound. At 30 ms a request (an API server
    /// across a network), 16 in flight renew about 1,000 leases per 2 s retry period; raise it for
    /// more leases than that in one process, or for a slower API server: a renew waiting its turn
    /// counts against its renew deadline.
    ///
    /// Configure a store before sharing it: configuring a clone makes it a store of its own.
    #[must_use]
    pub fn max_requests_in_flight(mut self, count: usize) -> Self {
        let count = count.max(1);
        let inner = self.inner_mut();
        inner.max_requests_in_flight = count;
        inner.requests = Arc::new(Semaphore::new(count));
        self
    }

    /// The settings of this handle alone: shared ones are copied into a store of its own.
    fn inner_mut(&mut self) -> &mut Inner {
        if Arc::get_mut(&mut self.inner).is_none() {
            let Inner {
                client,
                retry_period,
                namespace_watch_above,
                max_requests_in_flight,
                ..
            } = &*self.inner;
            let own = Inner::new(
                client.clone(),
                *retry_period,
                *namespace_watch_above,
                *max_requests_in_flight,
            );
            self.inner = Arc::new(own);
        }
        Arc::get_mut(&mut self.inner).expect("not shared: made just above")
    }

    /// Waits for a request permit (see [`max_requests_in_flight`](Self::max_requests_in_flight)).
    async fn permit(&self) -> tokio::sync::OwnedSemaphorePermit {
        Arc::clone(&self.inner.requests)
            .acquire_owned()
            .await
            .expect("the request semaphore is never closed")
    }

    /// The event recorder of the replica `identity`.
    fn recorder(&self, identity: &str) -> Recorder {
        let mut recorders = lock(&self.inner.recorders);
        let recorder = recorders.entry(identity.to_owned()).or_insert_with(|| {
            let reporter = Reporter {
                controller: EVENT_REPORTER.to_owned(),
                instance: Some(identity.to_owned()),
            };
            Recorder::new(self.inner.client.clone(), reporter)
        });
        recorder.clone()
    }

    fn api(&self, namespace: &str) -> Api<Lease> {
        Api::namespaced(self.inner.client.clone(), namespace)
    }

    /// The state of `namespace`, created on first use.
    fn namespace(&self, namespace: &str) -> Arc<Mutex<Namespace>> {
        let mut namespaces = lock(&self.inner.namespaces);
        namespaces
            .entry(namespace.to_owned())
            .or_insert_with(|| Arc::new(Mutex::new(Namespace::default())))
            .clone()
    }

    /// Runs a list-and-watch loop for `scope` of `namespace` until `stop` fires.
    fn spawn_watch(
        &self,
        namespace: &str,
        state: &Arc<Mutex<Namespace>>,
        scope: Scope,
        stop: CancellationToken,
    ) {
        let span = match &scope {
            Scope::Lease(name) => tracing::debug_span!("lease_watch", namespace, lease = %name),
            Scope::Namespace { .. } => tracing::debug_span!("lease_watch", namespace),
        };
        let watch = Watch {
            api: self.api(namespace),
            namespace: namespace.to_owned(),
            state: Arc::clone(state),
            scope,
            retry_period: self.inner.retry_period,
        };
        tokio::spawn(stop.run_until_cancelled_owned(watch.run()).instrument(span));
    }
}

impl LeaseStore for KubeLeaseStore {
    fn get<'a>(&'a self, key: &'a LeaseKey) -> BoxFuture<'a, Result<Option<Lease>>> {
        Box::pin(async move {
            let _permit = self.permit().await;
            let result = self.api(&key.namespace).get_opt(&key.name).await;
            let lease =
                result.map_err(|error| map_error(Verb::Get, &key.namespace, &key.name, error))?;
            Ok(lease.map(slim))
        })
    }

    fn create<'a>(&'a self, key: &'a LeaseKey, lease: Lease) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(async move {
            let _permit = self.permit().await;
            let result = self
                .api(&key.namespace)
                .create(&PostParams::default(), &lease)
                .await;
            let lease = result
                .map_err(|error| map_error(Verb::Create, &key.namespace, &key.name, error))?;
            Ok(slim(lease))
        })
    }

    fn replace<'a>(&'a self, key: &'a LeaseKey, lease: Lease) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(async move {
            let _permit = self.permit().await;
            let api = self.api(&key.namespace);
            let result = api.replace(&key.name, &PostParams::default(), &lease).await;
            let lease = result
                .map_err(|error| map_error(Verb::Update, &key.namespace, &key.name, error))?;
            Ok(slim(lease))
        })
    }

    /// Creates an `events.k8s.io/v1` Event regarding the Lease through kube's event recorder
    /// (which patches the Event's series instead when the same one repeats within minutes), at
    /// most 4 at a time: further ones wait their turn.
    fn record_event(
        &self,
        lease: &Lease,
        identity: &str,
        event: LeaseEvent,
    ) -> BoxFuture<'static, Result<()>> {
        let recorder = self.recorder(identity);
        let regarding = ObjectReference {
            api_version: Some("coordination.k8s.io/v1".to_owned()),
            kind: Some("Lease".to_owned()),
            name: lease.metadata.name.clone(),
            namespace: lease.metadata.namespace.clone(),
            uid: lease.metadata.uid.clone(),
            ..ObjectReference::default()
        };
        let note = event.message(identity);
        let events = Arc::clone(&self.inner.events);
        Box::pin(async move {
            let _permit = events
                .acquire_owned()
                .await
                .expect("the event semaphore is never closed");
            let published = recorder
                .publish(
                    &Event {
                        type_: EventType::Normal,
                        reason: LeaseEvent::REASON.to_owned(),
                        note: Some(note.clone()),
                        action: event.action().to_owned(),
                        secondary: None,
                    },
                    &regarding,
                )
                .await;
            let namespace = regarding.namespace.unwrap_or_default();
            published.map_err(|error| match &error {
                kube::Error::Api(status) if status.code == 403 => Error::EventsForbidden {
                    user: forbidden_user(&status.message)
                        .unwrap_or("this identity")
                        .to_owned(),
                    message: status.message.clone(),
                    namespace,
                },
                _ => Error::Api {
                    verb: Verb::Create,
                    message: format!("recording the Event `{note}`: {}", with_causes(&error)),
                    name: regarding.name.unwrap_or_default(),
                    namespace,
                    source: Some(Box::new(error)),
                },
            })
        })
    }

    /// The feed of `key`'s lease. Starts the watch that feeds it, so it must be called within a
    /// Tokio runtime.
    fn subscribe(&self, key: &LeaseKey) -> watch::Receiver<Observation> {
        let state = self.namespace(&key.namespace);
        let mut namespace = lock(&state);
        if let Some(feed) = namespace.feeds.get(&key.name) {
            return feed.sender.subscribe();
        }
        let feed = Feed::new();
        let receiver = feed.sender.subscribe();
        namespace.feeds.insert(key.name.clone(), feed);
        match &namespace.namespace_watch {
            // The namespace watch lists again for the new lease.
            Some(watch) => watch.relist.notify_one(),
            None if namespace.feeds.len() > self.inner.namespace_watch_above => {
                debug!(
                    namespace = %key.namespace,
                    leases = namespace.feeds.len(),
                    "following the leases of the namespace with one watch"
                );
                let relist = Arc::new(Notify::new());
                let stop = self.inner.stop.child_token();
                namespace.namespace_watch = Some(NamespaceWatch {
                    relist: Arc::clone(&relist),
                    synced: false,
                });
                let scope = Scope::Namespace { relist };
                drop(namespace);
                self.spawn_watch(&key.namespace, &state, scope, stop);
            }
            None => {
                let stop = self.inner.stop.child_token();
                namespace
                    .lease_watches
                    .insert(key.name.clone(), stop.clone());
                drop(namespace);
                let scope = Scope::Lease(key.name.clone());
                self.spawn_watch(&key.namespace, &state, scope, stop);
            }
        }
        receiver
    }
}

/// What the watches of one namespace feed.
#[derive(Default)]
struct Namespace {
    /// The feed of every followed lease.
    feeds: HashMap<String, Feed>,
    /// The watch of each followed lease, while there is no namespace watch yet.
    lease_watches: HashMap<String, CancellationToken>,
    /// The watch of the whole namespace, once there are many followed leases.
    namespace_watch: Option<NamespaceWatch>,
}

struct NamespaceWatch {
    /// Asks the watch to list again, for leases followed since its last list.
    relist: Arc<Notify>,
    /// Whether it has listed once: from then on it feeds every lease, and the lease watches are
    /// gone.
    synced: bool,
}

/// One lease's feed.
struct Feed {
    sender: watch::Sender<Observation>,
    /// While the feed is interrupted: what it showed before, shown again once the watch resumes
    /// from where it left (moved here, so that a lease is kept once).
    held: Option<Observation>,
}

impl Feed {
    fn new() -> Self {
        Feed {
            sender: watch::Sender::new(Observation::Unknown),
            held: None,
        }
    }

    /// Shows `observation`, waking the receivers only if it changed.
    fn show(&mut self, observation: Observation) {
        self.held = None;
        self.sender.send_if_modified(|current| {
            let changed = *current != observation;
            if changed {
                *current = observation;
            }
            changed
        });
    }

    /// Shows the feed interrupted by `error`, holding what it showed before.
    fn interrupt(&mut self, error: &FeedError) {
        let before = self
            .sender
            .send_replace(Observation::Interrupted(error.clone()));
        if before.is_known() {
            self.held = Some(before);
        }
    }

    /// Shows again what the feed showed before it was interrupted.
    fn resume(&mut self) {
        if let Some(held) = self.held.take() {
            self.sender.send_replace(held);
        }
    }
}

/// What one list-and-watch loop covers.
enum Scope {
    /// One lease, by name.
    Lease(String),
    /// Every followed lease of the namespace.
    Namespace { relist: Arc<Notify> },
}

impl Namespace {
    /// Whether `scope` feeds `name`'s feed now: a lease watch feeds its lease until the
    /// namespace watch has listed once, and the namespace watch feeds every lease from then on.
    fn feeds(&self, scope: &Scope, name: &str) -> bool {
        let synced = self
            .namespace_watch
            .as_ref()
            .is_some_and(|watch| watch.synced);
        match scope {
            Scope::Lease(lease) => lease == name && !synced,
            Scope::Namespace { .. } => synced,
        }
    }

    /// The feeds that `scope` feeds now.
    fn fed_by(&mut self, scope: &Scope) -> Vec<&mut Feed> {
        let names: Vec<String> = (self.feeds.keys())
            .filter(|name| self.feeds(scope, name))
            .cloned()
            .collect();
        let feeds = self.feeds.iter_mut();
        feeds
            .filter(|(name, _)| names.contains(name))
            .map(|(_, feed)| feed)
            .collect()
    }

    /// A list of `scope` came back with `leases`: every feed it covers shows its lease, or
    /// `Absent`; other programs' leases are dropped. The first list of a namespace watch makes
    /// it the source of every feed, and stops the lease watches.
    fn listed(&mut self, scope: &Scope, leases: Vec<Lease>) {
        if let (Scope::Namespace { .. }, Some(watch)) = (scope, &mut self.namespace_watch)
            && !watch.synced
        {
            watch.synced = true;
            for (_, stop) in self.lease_watches.drain() {
                stop.cancel();
            }
        }
        let mut listed: HashMap<String, Lease> = leases
            .into_iter()
            .filter_map(|lease| Some((lease.metadata.name.clone()?, lease)))
            .collect();
        for feed_name in self.feeds.keys().cloned().collect::<Vec<_>>() {
            if !self.feeds(scope, &feed_name) {
                continue;
            }
            let observation = listed
                .remove(&feed_name)
                .map_or(Observation::Absent, |lease| {
                    Observation::Present(Arc::new(slim(lease)))
                });
            if let Some(feed) = self.feeds.get_mut(&feed_name) {
                feed.show(observation);
            }
        }
    }

    /// A watch event about `name`: shown if `scope` feeds it, dropped otherwise (another
    /// program's lease in a watched namespace).
    fn changed(&mut self, scope: &Scope, name: &str, observation: Observation) {
        if self.feeds(scope, name)
            && let Some(feed) = self.feeds.get_mut(name)
        {
            feed.show(observation);
        }
    }

    /// The list or watch of `scope` failed with `error`.
    fn interrupted(&mut self, scope: &Scope, error: &FeedError) {
        for feed in self.fed_by(scope) {
            feed.interrupt(error);
        }
    }

    /// The watch of `scope` goes on from where it left.
    fn resumed(&mut self, scope: &Scope) {
        for feed in self.fed_by(scope) {
            feed.resume();
        }
    }
}

/// One list-and-watch loop.
struct Watch {
    api: Api<Lease>,
    namespace: String,
    state: Arc<Mutex<Namespace>>,
    scope: Scope,
    retry_period: Duration,
}

/// Where a watch loop goes on from.
enum Resume {
    /// List first: at the start, after `410 Gone`, or when asked to.
    List(ListFrom),
    /// Watch from this resourceVersion.
    From(String),
}

/// Which version of the leases a list asks for (client-go's reflector picks them the same way).
#[derive(Debug, PartialEq)]
enum ListFrom {
    /// Any version (`resourceVersion=0`): the API server's watch cache answers at once. The
    /// first list, when nothing has been seen that it could be older than.
    Any,
    /// A version not older than this resourceVersion, the last one seen: after `410 Gone` from
    /// a watch, or to list for newly followed leases.
    NotOlderThan(String),
    /// The latest version, read from etcd: after a list at a version the server no longer has
    /// (`410 Gone`) or does not have yet (`ResourceVersionTooLarge`).
    Latest,
}

impl ListFrom {
    fn params(&self, params: ListParams) -> ListParams {
        match self {
            Self::Any => params.match_any(),
            Self::NotOlderThan(version) => params.at(version).matching(VersionMatch::NotOlderThan),
            Self::Latest => params,
        }
    }

    /// What to list from after a list from `self` failed with `error`.
    fn after_failure(self, error: &kube::Error) -> Self {
        let kube::Error::Api(status) = error else {
            return self;
        };
        let unavailable = status.code == 410
            || status.details.as_ref().is_some_and(|details| {
                details
                    .causes
                    .iter()
                    .any(|cause| cause.reason == "ResourceVersionTooLarge")
            });
        if unavailable { Self::Latest } else { self }
    }
}

impl Watch {
    /// Lists, then watches from the list's resourceVersion, for as long as the task runs.
    async fn run(self) {
        let mut resume = Resume::List(ListFrom::Any);
        loop {
            let version = match resume {
                Resume::From(version) => version,
                Resume::List(from) => match self.list(&from).await {
                    Ok(version) => version,
                    Err(error) => {
                        let from = from.after_failure(&error);
                        let error = map_error(Verb::List, &self.namespace, self.lease(), error);
                        self.failed(error).await;
                        resume = Resume::List(from);
                        continue;
                    }
                },
            };
            resume = self.watch(version).await;
        }
    }

    /// The lease a lease watch follows; empty for a namespace watch.
    fn lease(&self) -> &str {
        match &self.scope {
            Scope::Lease(name) => name,
            Scope::Namespace { .. } => "",
        }
    }

    fn list_params(&self, from: &ListFrom) -> ListParams {
        let params = match &self.scope {
            Scope::Lease(name) => ListParams::default().fields(&format!("metadata.name={name}")),
            Scope::Namespace { .. } => ListParams::default(),
        };
        from.params(params)
    }

    fn watch_params(&self) -> WatchParams {
        let params = WatchParams::default().timeout(WATCH_TIMEOUT_SECONDS);
        match &self.scope {
            Scope::Lease(name) => params.fields(&format!("metadata.name={name}")),
            Scope::Namespace { .. } => params,
        }
    }

    /// Lists the leases of the scope and shows them; returns the list's resourceVersion.
    async fn list(&self, from: &ListFrom) -> kube::Result<String> {
        let list = self.api.list(&self.list_params(from)).await?;
        let version = list.metadata.resource_version.clone().unwrap_or_default();
        debug!(leases = list.items.len(), "listed");
        lock(&self.state).listed(&self.scope, list.items);
        Ok(version)
    }

    /// Watches from `version` until the stream ends or fails; says where to go on from.
    async fn watch(&self, mut version: String) -> Resume {
        let stream = match self.api.watch(&self.watch_params(), &version).await {
            Ok(stream) => stream,
            Err(error) => {
                let gone = matches!(&error, kube::Error::Api(status) if status.code == 410);
                self.failed(map_error(Verb::Watch, &self.namespace, self.lease(), error))
                    .await;
                return if gone {
                    Resume::List(ListFrom::NotOlderThan(version))
                } else {
                    Resume::From(version)
                };
            }
        };
        // The server accepted the watch: it sends every change since `version`.
        lock(&self.state).resumed(&self.scope);
        let mut stream = std::pin::pin!(stream);
        let relist = match &self.scope {
            Scope::Namespace { relist } => Some(Arc::clone(relist)),
            Scope::Lease(_) => None,
        };
        loop {
            let event = tokio::select! {
                event = stream.next() => event,
                () = notified(relist.as_deref()) => {
                    // Gather the other leases of a burst, then list once for all of them.
                    tokio::time::sleep(RELIST_GATHER).await;
                    return Resume::List(ListFrom::NotOlderThan(version));
                }
            };
            let event = match event {
                // The server closed the watch (its timeout): go on from where it left.
                None => return Resume::From(version),
                Some(Ok(event)) => event,
                Some(Err(error)) => {
                    self.failed(map_error(Verb::Watch, &self.namespace, self.lease(), error))
                        .await;
                    return Resume::From(version);
                }
            };
            let (name, observation) = match event {
                WatchEvent::Added(lease) | WatchEvent::Modified(lease) => {
                    version = lease.metadata.resource_version.clone().unwrap_or(version);
                    let Some(name) = lease.metadata.name.clone() else {
                        continue;
                    };
                    (name, Observation::Present(Arc::new(slim(lease))))
                }
                WatchEvent::Deleted(lease) => {
                    version = lease.metadata.resource_version.clone().unwrap_or(version);
                    let Some(name) = lease.metadata.name else {
                        continue;
                    };
                    (name, Observation::Absent)
                }
                WatchEvent::Bookmark(bookmark) => {
                    version = bookmark.metadata.resource_version;
                    continue;
                }
                WatchEvent::Error(status) if status.code == 410 => {
                    debug!("the watch's resourceVersion is gone (410): listing again");
                    return Resume::List(ListFrom::NotOlderThan(version));
                }
                WatchEvent::Error(status) => {
                    let error = map_error(
                        Verb::Watch,
                        &self.namespace,
                        self.lease(),
                        kube::Error::Api(status),
                    );
                    self.failed(error).await;
                    return Resume::From(version);
                }
            };
            lock(&self.state).changed(&self.scope, &name, observation);
        }
    }

    /// Shows the feeds interrupted by `error` and waits before the next try: the retry period,
    /// jittered, or longer if the API server asked for it.
    async fn failed(&self, error: Error) {
        debug!(%error, "lease list or watch failed");
        let wait = crate::report::retry_after(&error)
            .unwrap_or_default()
            .max(crate::config::jittered(self.retry_period));
        lock(&self.state).interrupted(&self.scope, &FeedError::new(error));
        tokio::time::sleep(wait).await;
    }
}

async fn notified(notify: Option<&Notify>) {
    match notify {
        Some(notify) => notify.notified().await,
        None => std::future::pending().await,
    }
}

/// The lease without `metadata.managedFields`: the election does not read it, and it is most of
/// what a Lease weighs. Replacing a lease without it keeps the server's copy.
fn slim(mut lease: Lease) -> Lease {
    lease.metadata.managed_fields = None;
    lease
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The crate's error for a failed request on the lease `namespace/name` (`name` is empty for
/// the list and watch of a namespace).
fn map_error(verb: Verb, namespace: &str, name: &str, error: kube::Error) -> Error {
    let (namespace, name) = (namespace.to_owned(), name.to_owned());
    let kube::Error::Api(status) = &error else {
        let message = with_causes(&error);
        return Error::Api {
            verb,
            namespace,
            name,
            message,
            source: Some(Box::new(error)),
        };
    };
    match status.code {
        403 => {
            let user = forbidden_user(&status.message)
                .unwrap_or("this identity")
                .to_owned();
            Error::Forbidden {
                verb,
                namespace,
                user,
                message: status.message.clone(),
            }
        }
        409 if matches!(verb, Verb::Create | Verb::Update) => Error::Conflict {
            verb,
            namespace,
            name,
        },
        // On create, a 404 means the namespace is missing, not the lease.
        404 if matches!(verb, Verb::Get | Verb::Update) => Error::NotFound { namespace, name },
        code => {
            let message = format!(
                "the API server answered {code} {}: {}",
                status.reason, status.message
            );
            Error::Api {
                verb,
                namespace,
                name,
                message,
                source: Some(Box::new(error)),
            }
        }
    }
}

/// `error` followed by its causes, as `error: cause: cause`; transport errors keep the reason
/// (`Connection refused`, a certificate problem) in their causes.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let text = next.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = next.source();
    }
    message
}

/// The user an RBAC refusal names: `User "alice" cannot get resource ...` gives `alice`.
fn forbidden_user(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once("User \"")?;
    let (user, _) = rest.split_once('"')?;
    (!user.is_empty()).then_some(user)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
    use kube::core::Status;

    use super::*;

    const REFUSAL: &str = "leases.coordination.k8s.io \"a\" is forbidden: \
        User \"leader-test-unprivileged\" cannot get resource \"leases\" \
        in API group \"coordination.k8s.io\" in the namespace \"ns\"";

    fn status(code: u16, reason: &str, message: &str) -> Box<Status> {
        Status::failure(message, reason).with_code(code).boxed()
    }

    /// `map_error` for the lease `ns/a`, from an API server answer.
    fn mapped(verb: Verb, code: u16, reason: &str, message: &str) -> Error {
        map_error(
            verb,
            "ns",
            "a",
            kube::Error::Api(status(code, reason, message)),
        )
    }

    fn lease(name: &str, holder: &str) -> Lease {
        let mut lease = Lease::default();
        lease.metadata.name = Some(name.to_owned());
        lease.metadata.managed_fields = Some(vec![ManagedFieldsEntry::default()]);
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            ..Default::default()
        });
        lease
    }

    fn present(name: &str, holder: &str) -> Observation {
        Observation::Present(Arc::new(slim(lease(name, holder))))
    }

    /// A namespace following `names`, with a namespace watch if `namespace_watch`.
    fn namespace(
        names: &[&str],
        namespace_watch: bool,
    ) -> (Namespace, Vec<watch::Receiver<Observation>>) {
        let mut state = Namespace::default();
        let receivers = names
            .iter()
            .map(|name| {
                let feed = Feed::new();
                let receiver = feed.sender.subscribe();
                state.feeds.insert((*name).to_owned(), feed);
                state
                    .lease_watches
                    .insert((*name).to_owned(), CancellationToken::new());
                receiver
            })
            .collect();
        if namespace_watch {
            state.namespace_watch = Some(NamespaceWatch {
                relist: Arc::default(),
                synced: false,
            });
        }
        (state, receivers)
    }

    fn namespace_scope() -> Scope {
        Scope::Namespace {
            relist: Arc::default(),
        }
    }

    #[test]
    fn the_user_is_parsed_from_an_rbac_refusal() {
        assert_eq!(forbidden_user(REFUSAL), Some("leader-test-unprivileged"));
        let account = "User \"system:serviceaccount:apps:worker\" cannot list resource";
        assert_eq!(
            forbidden_user(account),
            Some("system:serviceaccount:apps:worker")
        );
        assert_eq!(forbidden_user("forbidden by policy"), None);
        assert_eq!(forbidden_user("User \"unterminated"), None);
    }

    #[test]
    fn a_403_is_forbidden_and_names_verb_user_namespace_and_rule() {
        let error = mapped(Verb::Get, 403, "Forbidden", REFUSAL);
        assert!(matches!(error, Error::Forbidden { .. }), "{error:?}");
        let text = error.to_string();
        let user = "`leader-test-unprivileged` may not get leases.coordination.k8s.io";
        for part in [user, "namespace `ns`", crate::LEASE_RULE, REFUSAL] {
            assert!(text.contains(part), "{part:?} missing from {text}");
        }
        let unnamed = mapped(Verb::Watch, 403, "Forbidden", "denied").to_string();
        assert!(
            unnamed.starts_with("forbidden: `this identity` may not watch"),
            "{unnamed}"
        );
    }

    #[test]
    fn conflicts_and_missing_leases_get_their_own_errors() {
        let exists = mapped(Verb::Create, 409, "AlreadyExists", "exists").to_string();
        assert!(exists.ends_with("(conflict on create)"), "{exists}");
        let stale = mapped(Verb::Update, 409, "Conflict", "modified").to_string();
        assert!(stale.ends_with("(conflict on update)"), "{stale}");
        assert!(mapped(Verb::Update, 404, "NotFound", "gone").is_not_found());
        // Creating in a missing namespace is a 404 too, but the lease is not what is missing.
        let no_namespace = mapped(Verb::Create, 404, "NotFound", "namespaces \"ns\" not found");
        assert!(
            matches!(no_namespace, Error::Api { .. }),
            "{no_namespace:?}"
        );
    }

    #[test]
    fn other_failures_keep_status_and_source() {
        let error = mapped(Verb::Update, 500, "InternalError", "etcd is down");
        let expected = "update lease `ns/a` failed: the API server answered 500 InternalError: \
                        etcd is down";
        assert_eq!(error.to_string(), expected);
        assert!(std::error::Error::source(&error).is_some());
        let transport = map_error(Verb::Get, "ns", "a", kube::Error::TlsRequired);
        assert!(matches!(transport, Error::Api { .. }), "{transport:?}");
        assert!(std::error::Error::source(&transport).is_some());
    }

    #[test]
    fn a_lease_watch_feeds_its_lease_through_lists_events_failures_and_resumption() {
        let (mut state, mut feeds) = namespace(&["a"], false);
        let a = Scope::Lease("a".into());
        assert_eq!(*feeds[0].borrow(), Observation::Unknown);
        state.listed(&a, vec![lease("a", "x")]);
        assert_eq!(*feeds[0].borrow_and_update(), present("a", "x"));
        if let Observation::Present(lease) = &*feeds[0].borrow() {
            assert_eq!(
                lease.metadata.managed_fields, None,
                "managedFields are dropped"
            );
        }

        // The same object again wakes nobody.
        state.changed(&a, "a", present("a", "x"));
        assert!(!feeds[0].has_changed().unwrap());

        // A failure interrupts the feed with the error; the resumed watch shows the last state.
        let error = FeedError::new(mapped(Verb::Watch, 500, "InternalError", "boom"));
        state.interrupted(&a, &error);
        assert_eq!(
            *feeds[0].borrow_and_update(),
            Observation::Interrupted(error)
        );
        state.resumed(&a);
        assert_eq!(*feeds[0].borrow_and_update(), present("a", "x"));

        // A list without the lease: it was deleted.
        state.listed(&a, Vec::new());
        assert_eq!(*feeds[0].borrow_and_update(), Observation::Absent);
    }

    #[test]
    fn a_namespace_watch_takes_over_from_the_lease_watches_and_drops_other_leases() {
        let (mut state, mut feeds) = namespace(&["a", "b"], true);
        let namespace = namespace_scope();
        let lease_a = Scope::Lease("a".into());
        let stops: Vec<CancellationToken> = state.lease_watches.values().cloned().collect();
        state.listed(&lease_a, vec![lease("a", "x")]);
        // Until it has listed, the namespace watch feeds nothing.
        let error = FeedError::new(mapped(Verb::List, 500, "InternalError", "boom"));
        state.interrupted(&namespace, &error);
        assert_eq!(*feeds[0].borrow_and_update(), present("a", "x"));

        state.listed(&namespace, vec![lease("b", "y"), lease("other", "z")]);
        assert!(
            stops.iter().all(CancellationToken::is_cancelled),
            "lease watches stop"
        );
        assert_eq!(*feeds[0].borrow_and_update(), Observation::Absent);
        assert_eq!(*feeds[1].borrow_and_update(), present("b", "y"));
        assert_eq!(state.feeds.len(), 2, "other programs' leases are not kept");

        // A late event of a stopped lease watch is ignored; the namespace watch's are shown,
        // except about leases nobody follows.
        state.changed(&lease_a, "a", present("a", "stale"));
        assert!(!feeds[0].has_changed().unwrap());
        state.changed(&namespace, "a", present("a", "w"));
        assert_eq!(*feeds[0].borrow_and_update(), present("a", "w"));
        state.changed(&namespace, "other", Observation::Absent);
        assert_eq!(state.feeds.len(), 2);
    }

    #[test]
    fn lists_ask_for_versions_as_client_go_s_reflector_does() {
        let version = |from: &ListFrom| {
            let params = from.params(ListParams::default());
            (params.resource_version, params.version_match)
        };
        // The first list: any version, which the API server's watch cache answers at once.
        assert_eq!(
            version(&ListFrom::Any),
            (Some("0".into()), Some(VersionMatch::NotOlderThan))
        );
        assert_eq!(
            version(&ListFrom::NotOlderThan("42".into())),
            (Some("42".into()), Some(VersionMatch::NotOlderThan))
        );
        assert_eq!(version(&ListFrom::Latest), (None, None));

        // A version the server no longer has, or not yet: the latest, from etcd.
        let api = |status: Status| kube::Error::Api(status.boxed());
        let gone = api(Status::failure("too old resource version", "Expired").with_code(410));
        let too_large = api(Status::failure("Too large resource version", "Timeout")
            .with_code(504)
            .with_details(kube::core::response::StatusDetails {
                name: String::new(),
                group: String::new(),
                kind: String::new(),
                uid: String::new(),
                causes: vec![kube::core::response::StatusCause {
                    reason: "ResourceVersionTooLarge".into(),
                    message: "Too large resource version".into(),
                    field: String::new(),
                }],
                retry_after_seconds: 1,
            }));
        let unavailable = api(Status::failure("unavailable", "ServiceUnavailable").with_code(503));
        let from = || ListFrom::NotOlderThan("42".into());
        assert_eq!(from().after_failure(&gone), ListFrom::Latest);
        assert_eq!(from().after_failure(&too_large), ListFrom::Latest);
        assert_eq!(from().after_failure(&unavailable), from());
        assert_eq!(ListFrom::Any.after_failure(&unavailable), ListFrom::Any);
    }
}
