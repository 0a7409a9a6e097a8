//! The Kubernetes API as a [`LeaseStore`]: requests go straight to the API server, and the change
//! feed is one `kube::runtime::watcher` per namespace, shared by every lease in it.

use std::collections::HashMap;
use std::mem;
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_leases};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

use super::{BoxFuture, LeaseKey, LeaseStore, Observation};
use crate::{Error, Result, Verb};

/// A [`LeaseStore`] backed by the Kubernetes API.
///
/// Clones share one watch per namespace; the watches stop when the last clone is dropped.
#[derive(Clone)]
pub struct KubeLeaseStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: kube::Client,
    /// The namespaces watched so far, each shared with its watch task.
    namespaces: Mutex<HashMap<String, Arc<Mutex<Namespace>>>>,
    /// Cancelled when the last clone of the store is dropped; stops every watch task.
    stop: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl KubeLeaseStore {
    /// A store that talks to the API server through `client`.
    pub fn new(client: kube::Client) -> Self {
        let inner = Inner {
            client,
            namespaces: Mutex::default(),
            stop: CancellationToken::new(),
        };
        KubeLeaseStore {
            inner: Arc::new(inner),
        }
    }

    fn api(&self, namespace: &str) -> Api<Lease> {
        Api::namespaced(self.inner.client.clone(), namespace)
    }

    /// The state of `namespace`, starting its watch on first use.
    fn namespace(&self, namespace: &str) -> Arc<Mutex<Namespace>> {
        let mut namespaces = lock(&self.inner.namespaces);
        if let Some(state) = namespaces.get(namespace) {
            return state.clone();
        }
        let state = Arc::new(Mutex::new(Namespace::default()));
        namespaces.insert(namespace.to_owned(), state.clone());
        let span = tracing::info_span!("lease_watch", namespace);
        let task = watch_namespace(self.api(namespace), namespace.to_owned(), state.clone());
        tokio::spawn(
            self.inner
                .stop
                .clone()
                .run_until_cancelled_owned(task)
                .instrument(span),
        );
        state
    }
}

impl LeaseStore for KubeLeaseStore {
    fn get<'a>(&'a self, key: &'a LeaseKey) -> BoxFuture<'a, Result<Option<Lease>>> {
        Box::pin(async move {
            let result = self.api(&key.namespace).get_opt(&key.name).await;
            result.map_err(|error| map_error(Verb::Get, &key.namespace, &key.name, error))
        })
    }

    fn create<'a>(&'a self, key: &'a LeaseKey, lease: Lease) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(async move {
            let result = self
                .api(&key.namespace)
                .create(&PostParams::default(), &lease)
                .await;
            result.map_err(|error| map_error(Verb::Create, &key.namespace, &key.name, error))
        })
    }

    fn replace<'a>(&'a self, key: &'a LeaseKey, lease: Lease) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(async move {
            let api = self.api(&key.namespace);
            let result = api.replace(&key.name, &PostParams::default(), &lease).await;
            result.map_err(|error| map_error(Verb::Update, &key.namespace, &key.name, error))
        })
    }

    /// The feed of `key`'s lease. Starts the namespace's watch on first use, so it must be called
    /// within a Tokio runtime.
    fn subscribe(&self, key: &LeaseKey) -> watch::Receiver<Observation> {
        let namespace = self.namespace(&key.namespace);
        let mut state = lock(&namespace);
        state.feed(&key.name).subscribe()
    }
}

/// What the watch of one namespace knows.
#[derive(Default)]
struct Namespace {
    /// A feed for every lease subscribed to or seen (deleted leases nobody follows are dropped).
    feeds: HashMap<String, watch::Sender<Observation>>,
    phase: Phase,
}

/// How far the feeds of a namespace can be trusted.
enum Phase {
    /// Listing, at the start or again after a failure: the leases listed so far. The feeds show
    /// `Unknown`.
    Listing(HashMap<String, Lease>),
    /// The feeds show the truth.
    Synced,
    /// The watch failed after it was synced and the feeds show `Unknown`. Their last truth is kept
    /// here (a missing name is `Absent`): the watcher resumes from the last resourceVersion seen,
    /// so the first event after the failure brings them back without a new list.
    Interrupted(HashMap<String, Observation>),
}

impl Default for Phase {
    fn default() -> Self {
        Phase::Listing(HashMap::new())
    }
}

impl Namespace {
    /// The feed of `name`, created with what is known of it if there is none yet.
    fn feed(&mut self, name: &str) -> &watch::Sender<Observation> {
        let known = match self.phase {
            Phase::Synced => Observation::Absent,
            Phase::Listing(_) | Phase::Interrupted(_) => Observation::Unknown,
        };
        self.feeds
            .entry(name.to_owned())
            .or_insert_with(|| watch::Sender::new(known))
    }

    /// Applies one item of the watcher's stream to the feeds.
    fn handle(&mut self, event: Result<Event<Lease>, watcher::Error>, namespace: &str) {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                let error = watch_error(namespace, error);
                warn!(error = %error, "lease watch failed; feeds are unknown until it recovers");
                if let Phase::Synced = self.phase {
                    let last = self.feeds.iter().map(|(name, feed)| {
                        (name.clone(), feed.send_replace(Observation::Unknown))
                    });
                    self.phase = Phase::Interrupted(last.collect());
                } else {
                    self.feeds
                        .values()
                        .for_each(|feed| publish(feed, Observation::Unknown));
                }
                return;
            }
        };
        match event {
            Event::Init => self.phase = Phase::Listing(HashMap::new()),
            Event::InitApply(lease) => {
                if let (Phase::Listing(listed), Some(name)) =
                    (&mut self.phase, lease.metadata.name.clone())
                {
                    listed.insert(name, lease);
                }
            }
            Event::InitDone => {
                let Phase::Listing(mut listed) = mem::replace(&mut self.phase, Phase::Synced)
                else {
                    return;
                };
                for (name, feed) in &self.feeds {
                    publish(
                        feed,
                        listed
                            .remove(name)
                            .map_or(Observation::Absent, Observation::Present),
                    );
                }
                for (name, lease) in listed {
                    self.feeds
                        .insert(name, watch::Sender::new(Observation::Present(lease)));
                }
                self.feeds.retain(|_, feed| {
                    feed.receiver_count() > 0 || *feed.borrow() != Observation::Absent
                });
                info!(leases = self.feeds.len(), "lease watch synced");
            }
            Event::Apply(lease) | Event::Delete(lease) if lease.metadata.name.is_none() => {
                debug!("skipping a lease without a name");
            }
            Event::Apply(lease) => {
                self.resume();
                let name = lease.metadata.name.clone().unwrap_or_default();
                debug!(lease = %name, "lease applied");
                if let Phase::Listing(listed) = &mut self.phase {
                    listed.insert(name, lease);
                } else {
                    publish(self.feed(&name), Observation::Present(lease));
                }
            }
            Event::Delete(lease) => {
                self.resume();
                let name = lease.metadata.name.unwrap_or_default();
                debug!(lease = %name, "lease deleted");
                if let Phase::Listing(listed) = &mut self.phase {
                    listed.remove(&name);
                } else if let Some(feed) = self.feeds.get(&name) {
                    publish(feed, Observation::Absent);
                    if feed.receiver_count() == 0 {
                        self.feeds.remove(&name);
                    }
                }
            }
        }
    }

    /// After an interruption, an event shows the watch is back: the feeds show their last truth.
    fn resume(&mut self) {
        if let Phase::Interrupted(last) = &mut self.phase {
            for (name, feed) in &self.feeds {
                publish(feed, last.remove(name).unwrap_or(Observation::Absent));
            }
            self.phase = Phase::Synced;
            info!("lease watch resumed");
        }
    }
}

/// Sets a feed, waking its receivers only if the observation changed.
fn publish(feed: &watch::Sender<Observation>, observation: Observation) {
    feed.send_if_modified(|current| {
        let changed = *current != observation;
        if changed {
            *current = observation;
        }
        changed
    });
}

/// Runs the watch of one namespace, with the watcher's own backoff and relisting, until the
/// store's stop token fires.
async fn watch_namespace(api: Api<Lease>, namespace: String, state: Arc<Mutex<Namespace>>) {
    let mut events =
        std::pin::pin!(watch_leases(api, watcher::Config::default()).default_backoff());
    while let Some(event) = events.next().await {
        lock(&state).handle(event, &namespace);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The crate's error for a failed request on the lease `namespace/name`.
fn map_error(verb: Verb, namespace: &str, name: &str, error: kube::Error) -> Error {
    let (namespace, name) = (namespace.to_owned(), name.to_owned());
    let kube::Error::Api(status) = &error else {
        let message = error.to_string();
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

/// The crate's error for a failed list or watch of the leases in `namespace`.
fn watch_error(namespace: &str, error: watcher::Error) -> Error {
    match error {
        watcher::Error::InitialListFailed(error) => map_error(Verb::List, namespace, "", error),
        watcher::Error::WatchStartFailed(error) | watcher::Error::WatchFailed(error) => {
            map_error(Verb::Watch, namespace, "", error)
        }
        watcher::Error::WatchError(status) => {
            map_error(Verb::Watch, namespace, "", kube::Error::Api(status))
        }
        error @ watcher::Error::NoResourceVersion => Error::Api {
            verb: Verb::Watch,
            namespace: namespace.to_owned(),
            name: String::new(),
            message: error.to_string(),
            source: Some(Box::new(error)),
        },
    }
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

    fn lease(name: Option<&str>, holder: &str) -> Lease {
        let mut lease = Lease::default();
        lease.metadata.name = name.map(str::to_owned);
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            ..Default::default()
        });
        lease
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
        for part in [user, "namespace `ns`", crate::RBAC_RULE, REFUSAL] {
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
        let gone = watch_error(
            "ns",
            watcher::Error::WatchError(status(410, "Expired", "old")),
        );
        assert!(gone.to_string().contains("410 Expired: old"), "{gone}");
    }

    #[test]
    fn feeds_follow_lists_events_failures_and_relists() {
        let mut namespace = Namespace::default();
        let mut a = namespace.feed("a").subscribe();
        assert_eq!(*a.borrow(), Observation::Unknown);
        namespace.handle(Ok(Event::Init), "ns");
        namespace.handle(Ok(Event::InitApply(lease(Some("a"), "x"))), "ns");
        namespace.handle(Ok(Event::InitApply(lease(None, "nameless"))), "ns");
        namespace.handle(Ok(Event::InitDone), "ns");
        let present = Observation::Present(lease(Some("a"), "x"));
        assert_eq!(*a.borrow_and_update(), present);
        assert_eq!(
            *namespace.feed("b").subscribe().borrow(),
            Observation::Absent
        );

        // The same object again wakes nobody.
        namespace.handle(Ok(Event::Apply(lease(Some("a"), "x"))), "ns");
        assert!(!a.has_changed().unwrap());

        // A failure makes everything unknown; the resumed watch brings back the last truth.
        let failure = watcher::Error::WatchError(status(500, "InternalError", "boom"));
        namespace.handle(Err(failure), "ns");
        assert_eq!(*a.borrow_and_update(), Observation::Unknown);
        namespace.handle(Ok(Event::Apply(lease(Some("b"), "y"))), "ns");
        assert_eq!(*a.borrow_and_update(), present);
        namespace.handle(Ok(Event::Delete(lease(None, "nameless"))), "ns");

        // A relist without `a` means that it was deleted while the watch was away.
        namespace.handle(Err(watcher::Error::NoResourceVersion), "ns");
        namespace.handle(Ok(Event::Init), "ns");
        namespace.handle(Ok(Event::InitDone), "ns");
        assert_eq!(*a.borrow_and_update(), Observation::Absent);
        let names: Vec<_> = namespace.feeds.keys().collect();
        assert_eq!(
            names,
            ["a"],
            "absent leases that nobody follows are forgotten"
        );
    }
}
