//! `KubeLeaseStore` against the real API server: its requests, its errors and its change feed.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams, PostParams};
use leader::runtime::store::{KubeLeaseStore, LeaseKey, LeaseStore, Observation};
use leader::runtime::{Error, RBAC_RULE};
use tokio::sync::watch;

use crate::support::{Identity, control_plane, lease};

fn with_holder(mut lease: Lease, holder: &str) -> Lease {
    lease.spec.get_or_insert_default().holder_identity = Some(holder.into());
    lease
}

fn holder(observation: &Observation) -> Option<&str> {
    match observation {
        Observation::Present(lease) => lease.spec.as_ref()?.holder_identity.as_deref(),
        _ => None,
    }
}

/// Waits until the feed shows what `wanted` accepts.
async fn wait_for(
    feed: &mut watch::Receiver<Observation>,
    what: &str,
    wanted: impl FnMut(&Observation) -> bool,
) {
    let outcome = tokio::time::timeout(Duration::from_secs(10), feed.wait_for(wanted)).await;
    match outcome.map(|seen| seen.is_ok()) {
        Ok(true) => {}
        Ok(false) => panic!("the feed closed while waiting for {what}"),
        Err(_) => panic!("no {what} within 10 s; the feed shows {:?}", *feed.borrow()),
    }
}

#[tokio::test]
async fn get_create_and_replace_with_their_errors() {
    let cluster = control_plane();
    let namespace = cluster.namespace("store-crud").await;
    let client = cluster.client(Identity::Admin).await;
    let store = KubeLeaseStore::new(client.clone());
    let key = LeaseKey::new(&namespace, "crud");

    assert_eq!(store.get(&key).await.unwrap(), None);
    let created = store.create(&key, lease("crud", "a")).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap(), Some(created.clone()));

    let again = store.create(&key, lease("crud", "b")).await.unwrap_err();
    assert!(again.is_conflict(), "{again:?}");

    let replaced = store
        .replace(&key, with_holder(created.clone(), "b"))
        .await
        .unwrap();
    assert_ne!(
        replaced.metadata.resource_version,
        created.metadata.resource_version
    );
    assert_eq!(store.get(&key).await.unwrap(), Some(replaced.clone()));

    let stale = store
        .replace(&key, with_holder(created, "c"))
        .await
        .unwrap_err();
    assert!(stale.is_conflict(), "{stale:?}");

    // Leases allow create-on-update, so a replace never answers 404 for a lease that is missing
    // but its namespace is not. What keeps a deleted lease from coming back is the uid of the
    // object read before: its precondition fails with a conflict.
    let leases: Api<Lease> = Api::namespaced(client, &namespace);
    leases
        .delete("crud", &DeleteParams::default())
        .await
        .unwrap();
    let deleted = store
        .replace(&key, with_holder(replaced.clone(), "d"))
        .await
        .unwrap_err();
    assert!(deleted.is_conflict(), "{deleted:?}");
    assert_eq!(store.get(&key).await.unwrap(), None);

    // A 404 comes when the namespace is missing too.
    let nowhere = LeaseKey::new(format!("{namespace}-gone"), "crud");
    let missing = store
        .replace(&nowhere, lease("crud", "e"))
        .await
        .unwrap_err();
    assert!(missing.is_not_found(), "{missing:?}");
}

#[tokio::test]
async fn a_feed_follows_a_lease_from_absent_to_present_to_deleted() {
    let cluster = control_plane();
    let namespace = cluster.namespace("store-feed").await;
    let client = cluster.client(Identity::Admin).await;
    let store = KubeLeaseStore::new(client.clone());
    let key = LeaseKey::new(&namespace, "followed");

    let mut feed = store.subscribe(&key);
    wait_for(&mut feed, "Absent after the first list", |seen| {
        *seen == Observation::Absent
    })
    .await;

    let created = store.create(&key, lease("followed", "a")).await.unwrap();
    wait_for(&mut feed, "holder a", |seen| holder(seen) == Some("a")).await;

    store
        .replace(&key, with_holder(created, "b"))
        .await
        .unwrap();
    wait_for(&mut feed, "holder b", |seen| holder(seen) == Some("b")).await;

    let leases: Api<Lease> = Api::namespaced(client, &namespace);
    leases
        .delete("followed", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(&mut feed, "Absent after the delete", |seen| {
        *seen == Observation::Absent
    })
    .await;
}

#[tokio::test]
async fn one_watch_serves_every_lease_of_a_namespace_and_every_clone() {
    let cluster = control_plane();
    let namespace = cluster.namespace("store-shared").await;
    let client = cluster.client(Identity::Admin).await;
    let store = KubeLeaseStore::new(client.clone());
    let (one, two) = (
        LeaseKey::new(&namespace, "one"),
        LeaseKey::new(&namespace, "two"),
    );

    let mut feed_one = store.subscribe(&one);
    let mut feed_two = store.clone().subscribe(&two);
    let leases: Api<Lease> = Api::namespaced(client, &namespace);
    leases
        .create(&PostParams::default(), &lease("one", "x"))
        .await
        .unwrap();
    leases
        .create(&PostParams::default(), &lease("two", "y"))
        .await
        .unwrap();
    wait_for(&mut feed_one, "lease one", |seen| holder(seen) == Some("x")).await;
    wait_for(&mut feed_two, "lease two", |seen| holder(seen) == Some("y")).await;

    // A clone subscribing later is served at once from what the shared watch knows.
    let late = store.clone().subscribe(&one);
    assert_eq!(holder(&late.borrow()), Some("x"));
}

#[tokio::test]
async fn an_identity_without_rights_gets_an_explained_refusal() {
    let cluster = control_plane();
    let namespace = cluster.namespace("store-forbidden").await;
    let store = KubeLeaseStore::new(cluster.client(Identity::Unprivileged).await);
    let key = LeaseKey::new(&namespace, "any");

    let error = store.get(&key).await.unwrap_err();
    assert!(matches!(error, Error::Forbidden { .. }), "{error:?}");
    let text = error.to_string();
    let refusal = "`leader-test-unprivileged` may not get leases.coordination.k8s.io";
    for part in [refusal, &format!("namespace `{namespace}`"), RBAC_RULE] {
        assert!(text.contains(part), "{part:?} missing from {text}");
    }

    // Without list and watch rights the feed never claims to know anything.
    let feed = store.subscribe(&key);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(*feed.borrow(), Observation::Unknown);
}

#[tokio::test]
async fn dropping_the_last_clone_stops_the_watch() {
    let cluster = control_plane();
    let namespace = cluster.namespace("store-drop").await;
    let store = KubeLeaseStore::new(cluster.client(Identity::Admin).await);
    let clone = store.clone();
    let mut feed = store.subscribe(&LeaseKey::new(&namespace, "any"));
    wait_for(&mut feed, "Absent", |seen| *seen == Observation::Absent).await;

    drop(store);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !feed.is_closed(),
        "a clone still lives, so the watch must too"
    );
    drop(clone);
    // The watch task owned the last sender: the feed closes once it has stopped.
    let closed = tokio::time::timeout(Duration::from_secs(5), feed.changed()).await;
    assert!(
        matches!(closed, Ok(Err(_))),
        "the watch did not stop: {closed:?}"
    );
}
