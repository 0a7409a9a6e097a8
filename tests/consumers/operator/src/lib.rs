//! A small operator's leader-only work, kept in a library so that its tests can call it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use leader::{Leadership, leader_only};

/// Counts the ConfigMaps of the namespace once a minute, on one replica at a time.
#[leader_only(lease = "configmap-census", every = "60s")]
pub async fn census(leadership: Leadership, client: kube::Client, namespace: String) {
    let configmaps: Api<ConfigMap> = Api::namespaced(client, &namespace);
    match configmaps.list_metadata(&ListParams::default()).await {
        Ok(list) => println!(
            "{} (term {}): {} ConfigMaps in {namespace}",
            leadership.identity(),
            leadership.fencing_token(),
            list.items.len()
        ),
        Err(error) => eprintln!("listing ConfigMaps: {error}"),
    }
}

/// Hands out invoice numbers; only the leader may, and each term's numbers carry its fencing
/// token so that a stale leader's numbers are told apart.
#[leader_only(lease = "invoice-numbers")]
pub async fn next_invoice(leadership: Leadership, counter: Arc<AtomicU64>) -> String {
    let number = counter.fetch_add(1, Ordering::SeqCst);
    format!("{}-{number}", leadership.fencing_token())
}
