//! The Lease API as the election runtime relies on it: create, read, compare-and-swap update,
//! watch, and RBAC refusals.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};

use crate::support::{Identity, control_plane, lease};

fn holder(lease: &Lease) -> Option<&str> {
    lease.spec.as_ref()?.holder_identity.as_deref()
}

#[tokio::test]
async fn create_read_and_update_a_lease() {
    let cluster = control_plane();
    let namespace = cluster.namespace("lease-crud").await;
    let leases: Api<Lease> = Api::namespaced(cluster.client(Identity::Admin).await, &namespace);

    let created = leases
        .create(&PostParams::default(), &lease("crud", "a"))
        .await
        .unwrap();
    assert_eq!(holder(&created), Some("a"));

    let mut read = leases.get("crud").await.unwrap();
    assert_eq!(
        read.metadata.resource_version,
        created.metadata.resource_version
    );

    read.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let updated = leases
        .replace("crud", &PostParams::default(), &read)
        .await
        .unwrap();
    assert_eq!(holder(&updated), Some("b"));
    assert_ne!(
        updated.metadata.resource_version,
        created.metadata.resource_version
    );

    let duplicate = leases
        .create(&PostParams::default(), &lease("crud", "c"))
        .await
        .unwrap_err();
    assert!(
        matches!(duplicate, kube::Error::Api(ref status) if status.code == 409 && status.reason == "AlreadyExists"),
        "{duplicate:?}"
    );
}

#[tokio::test]
async fn a_stale_resource_version_gets_a_conflict() {
    let cluster = control_plane();
    let namespace = cluster.namespace("lease-conflict").await;
    let leases: Api<Lease> = Api::namespaced(cluster.client(Identity::Admin).await, &namespace);
    let created = leases
        .create(&PostParams::default(), &lease("cas", "a"))
        .await
        .unwrap();

    let mut first = created.clone();
    first.spec.as_mut().unwrap().holder_identity = Some("first".into());
    leases
        .replace("cas", &PostParams::default(), &first)
        .await
        .unwrap();

    let mut stale = created;
    stale.spec.as_mut().unwrap().holder_identity = Some("stale".into());
    let error = leases
        .replace("cas", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert!(
        matches!(error, kube::Error::Api(ref status) if status.code == 409 && status.reason == "Conflict"),
        "{error:?}"
    );
    assert_eq!(holder(&leases.get("cas").await.unwrap()), Some("first"));
}

#[tokio::test]
async fn a_watch_sees_an_update_arrive() {
    let cluster = control_plane();
    let namespace = cluster.namespace("lease-watch").await;
    let leases: Api<Lease> = Api::namespaced(cluster.client(Identity::Admin).await, &namespace);
    let created = leases
        .create(&PostParams::default(), &lease("watched", "a"))
        .await
        .unwrap();
    let since = created.metadata.resource_version.clone().unwrap();

    let mut events = leases
        .watch(&WatchParams::default(), &since)
        .await
        .unwrap()
        .boxed();
    let mut changed = created;
    changed.spec.as_mut().unwrap().holder_identity = Some("b".into());
    leases
        .replace("watched", &PostParams::default(), &changed)
        .await
        .unwrap();

    let event = tokio::time::timeout(Duration::from_secs(10), events.try_next())
        .await
        .expect("no watch event within 10 s")
        .unwrap()
        .expect("watch ended");
    match event {
        WatchEvent::Modified(lease) => assert_eq!(holder(&lease), Some("b")),
        other => panic!("expected Modified, got {other:?}"),
    }
}

#[tokio::test]
async fn an_identity_without_rights_is_forbidden() {
    let cluster = control_plane();
    let namespace = cluster.namespace("lease-forbidden").await;
    let leases: Api<Lease> =
        Api::namespaced(cluster.client(Identity::Unprivileged).await, &namespace);

    let get = leases.get("any").await.unwrap_err();
    assert!(
        matches!(get, kube::Error::Api(ref status) if status.code == 403),
        "{get:?}"
    );
    let create = leases
        .create(&PostParams::default(), &lease("any", "x"))
        .await
        .unwrap_err();
    match create {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 403);
            assert!(
                status.message.contains("leader-test-unprivileged"),
                "{}",
                status.message
            );
        }
        other => panic!("expected Forbidden, got {other:?}"),
    }
}
