//! `KubeLeaseStore` against the real API server: its requests, its errors and its change feed.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams, PostParams};
use leader::runtime::store::{KubeLeaseStore, LeaseKey, LeaseStore, Observation};
use leader::runtime::{Error, LEASE_RULE, Verb};
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
async fn clones_share_the_watches_and_a_late_subscriber_is_served_at_once() {
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

/// Above `namespace_watch_above` followed leases, one watch of the namespace feeds them all;
/// leases followed later are listed for, and other programs' leases are dropped as they come.
#[tokio::test]
async fn many_leases_share_one_namespace_watch_that_ignores_other_leases() {
    let cluster = control_plane();
    let namespace = cluster.namespace("store-namespace-watch").await;
    let client = cluster.client(Identity::Admin).await;
    let store = KubeLeaseStore::new(client.clone()).namespace_watch_above(2);
    let leases: Api<Lease> = Api::namespaced(client, &namespace);
    for name in ["a", "b", "c", "d", "other"] {
        let holder = format!("holder-of-{name}");
        leases
            .create(&PostParams::default(), &lease(name, &holder))
            .await
            .unwrap();
    }
    let mut feeds: Vec<_> = ["a", "b", "c"]
        .into_iter()
        .map(|name| store.subscribe(&LeaseKey::new(&namespace, name)))
        .collect();
    for (feed, name) in feeds.iter_mut().zip(["a", "b", "c"]) {
        let holder_name = format!("holder-of-{name}");
        wait_for(feed, name, |seen| holder(seen) == Some(&holder_name)).await;
    }
    // Followed after the switch to the namespace watch: listed for within a moment.
    let mut late = store.subscribe(&LeaseKey::new(&namespace, "d"));
    wait_for(&mut late, "d", |seen| holder(seen) == Some("holder-of-d")).await;

    // Changes to followed leases arrive; changes to another program's lease wake nobody.
    let other = leases.get("other").await.unwrap();
    leases
        .replace(
            "other",
            &PostParams::default(),
            &with_holder(other, "someone"),
        )
        .await
        .unwrap();
    let c = leases.get("c").await.unwrap();
    leases
        .replace("c", &PostParams::default(), &with_holder(c, "new-holder"))
        .await
        .unwrap();
    wait_for(&mut feeds[2], "c changed", |seen| {
        holder(seen) == Some("new-holder")
    })
    .await;
    assert!(!feeds[0].has_changed().unwrap() && !feeds[1].has_changed().unwrap());
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
    for part in [refusal, &format!("namespace `{namespace}`"), LEASE_RULE] {
        assert!(text.contains(part), "{part:?} missing from {text}");
    }

    // Without list and watch rights the feed never claims to know anything, and says why.
    let mut feed = store.subscribe(&key);
    wait_for(&mut feed, "the list refused", |seen| {
        matches!(seen, Observation::Interrupted(error)
            if matches!(error.error(), Error::Forbidden { verb: Verb::List, .. }))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!feed.borrow().is_known());
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
