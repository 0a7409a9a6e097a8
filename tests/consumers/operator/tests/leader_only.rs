//! The operator's leader-only functions tested as the README shows: simulated replicas over an
//! in-memory store, on tokio's paused clock, with this crate's own choice of Kubernetes version.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use k8s_openapi::api::coordination::v1::Lease;
use leader::runtime::store::LeaseKey;
use leader::runtime::testing::InMemoryLeaseStore;
use leader::runtime::{Route, Runtime};
use leader::with_runtime;
use leader_consumer_operator::next_invoice;

#[tokio::test(start_paused = true)]
async fn invoice_numbers_carry_the_fencing_token_of_their_leader() {
    let store = InMemoryLeaseStore::new();
    let a = Runtime::builder()
        .store(store.clone())
        .identity("a")
        .namespace("billing")
        .build()
        .await
        .unwrap();
    let b = Runtime::builder()
        .store(store.clone())
        .identity("b")
        .namespace("billing")
        .build()
        .await
        .unwrap();
    let counter = Arc::new(AtomicU64::new(100));
    let first = with_runtime(&a, next_invoice(Arc::clone(&counter)))
        .await
        .unwrap();
    let second = with_runtime(&b, next_invoice(Arc::clone(&counter)))
        .await
        .unwrap();
    assert_eq!((first.as_str(), second.as_str()), ("0-100", "1-101"));

    // The store's Lease is this crate's `k8s_openapi` type: one k8s-openapi in the build.
    let lease: Lease = store
        .lease(&LeaseKey::new("billing", "invoice-numbers"))
        .unwrap();
    assert_eq!(lease.spec.unwrap().lease_transitions, Some(1));
    a.shutdown().await;
    b.shutdown().await;
}

/// A follower knows where the leader serves, from the Lease, to send writes there.
#[tokio::test(start_paused = true)]
async fn a_follower_knows_the_leaders_address() {
    let store = InMemoryLeaseStore::new();
    let replica = |identity: &'static str, address: &'static str| {
        Runtime::builder()
            .store(store.clone())
            .identity(identity)
            .namespace("billing")
            .address(address)
            .build()
    };
    let (a, b) = (
        replica("a", "10.0.0.1:8080").await.unwrap(),
        replica("b", "10.0.0.2:8080").await.unwrap(),
    );
    let election = a.election("invoice-numbers").unwrap();
    let leading =
        tokio::spawn(async move { election.lead(|leadership| leadership.cancelled()).await });
    let follower = b.election("invoice-numbers").unwrap();
    let mut leaders = follower.leader_changes();
    while leaders.borrow_and_update().is_none() {
        leaders.changed().await.unwrap();
    }
    let leader = follower.leader().unwrap();
    assert_eq!(
        (leader.identity.as_str(), leader.address.as_deref()),
        ("a", Some("10.0.0.1:8080"))
    );
    assert!(
        matches!(follower.route(), Route::Leader { address, .. } if address == "10.0.0.1:8080")
    );
    a.shutdown().await;
    leading.await.unwrap().unwrap(); // the term ended with the shutdown
    b.shutdown().await;
}
