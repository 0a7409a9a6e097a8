//! `RuntimeBuilder::pod_deletion_cost` against the real API server: the pod of the replica that
//! leads carries `controller.kubernetes.io/pod-deletion-cost` (the number of leases it leads),
//! and loses it when it leads none. The pods are Pod objects without a node; what the
//! ReplicaSet controller does with the annotation is measured on the test node
//! (`tests/cluster/node/rollouts.rs`).

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, PostParams};
use leader::runtime::{POD_DELETION_COST, Runtime};

use crate::support::{Identity, control_plane};

const SECOND: Duration = Duration::from_secs(1);

/// Waits until `pod` carries `cost` (`None`: no annotation).
async fn wait_for_cost(pods: &Api<Pod>, pod: &str, cost: Option<&str>) {
    let deadline = Instant::now() + 10 * SECOND;
    loop {
        let annotations = pods.get(pod).await.unwrap().metadata.annotations;
        let now = annotations
            .unwrap_or_default()
            .get(POD_DELETION_COST)
            .cloned();
        if now.as_deref() == cost {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{pod}: {POD_DELETION_COST} is {now:?}, not {cost:?}"
        );
        tokio::time::sleep(SECOND / 20).await;
    }
}

#[tokio::test]
async fn the_leaders_pod_carries_the_number_of_leases_it_leads_and_loses_it_with_them() {
    let cluster = control_plane();
    let namespace = cluster.namespace("pod-cost").await;
    let client = cluster.client(Identity::Admin).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    // Pods need their ServiceAccount, which no controller creates on this control plane.
    let account = serde_json::json!({ "metadata": { "name": "default" } });
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
    accounts
        .create(
            &PostParams::default(),
            &serde_json::from_value(account).unwrap(),
        )
        .await
        .unwrap();
    for name in ["first", "second"] {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": { "name": name },
            "spec": {
                "automountServiceAccountToken": false,
                "containers": [{ "name": "app", "image": "app:latest" }],
            }
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }

    let replica = |pod: &'static str| {
        Runtime::builder()
            .client(client.clone())
            .identity(pod)
            .namespace(&namespace)
            .pod_deletion_cost(&namespace, pod)
            .build()
    };
    let first = replica("first").await.unwrap();
    let second = replica("second").await.unwrap();

    // `first` leads two leases: its pod says 2; `second` leads none: no annotation.
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    let hold = |runtime: &Runtime, lease: &str| {
        let election = runtime.election(lease).unwrap();
        async move {
            election
                .lead(|leadership| async move { leadership.cancelled().await })
                .await
        }
    };
    let one = tokio::spawn(hold(&first, "one"));
    let election = first.election("two").unwrap();
    let two = tokio::spawn(async move {
        election
            .lead(|_| async move {
                let _ = finished.await;
            })
            .await
    });
    wait_for_cost(&pods, "first", Some("2")).await;
    let also = tokio::spawn(hold(&second, "two"));
    wait_for_cost(&pods, "second", None).await;

    // `first` finishes its work on "two" and releases it: 1 left; `second` takes it over.
    done.send(()).unwrap();
    two.await.unwrap().unwrap();
    wait_for_cost(&pods, "first", Some("1")).await;
    wait_for_cost(&pods, "second", Some("1")).await;

    // `first` shuts down: its pod is going away; `second` takes "one" as well.
    first.shutdown().await;
    one.await.unwrap().unwrap();
    let also_one = tokio::spawn(hold(&second, "one"));
    wait_for_cost(&pods, "second", Some("2")).await;
    second.shutdown().await;
    also.await.unwrap().unwrap();
    also_one.await.unwrap().unwrap();
}
