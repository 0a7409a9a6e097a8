//! The operator's leader-only functions tested as the README shows: simulated replicas over an
//! in-memory store, on tokio's paused clock, with this crate's own choice of Kubernetes version.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use k8s_openapi::api::coordination::v1::Lease;
use leader::runtime::Runtime;
use leader::runtime::store::LeaseKey;
use leader::runtime::testing::InMemoryLeaseStore;
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
