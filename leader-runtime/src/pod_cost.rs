//! Keeps a leading replica's pod the last its ReplicaSet removes. In a rolling update the
//! Deployment scales the old ReplicaSet down one pod at a time; which pod goes first is the
//! ReplicaSet controller's choice, and it takes pods with a lower
//! `controller.kubernetes.io/pod-deletion-cost` first. While this replica leads, its pod carries
//! the number of leases it leads there (the others carry none, that is 0), so the old followers
//! go first and the leader last: when it releases its leases, only new pods are left to take
//! them, one handover per rollout instead of one to an old pod that is removed next. Takeovers
//! are never delayed, and candidates of other implementations (client-go's) on the same leases
//! need nothing.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{Level, debug};

use crate::POD_RULE;
use crate::report::say;

/// The annotation the ReplicaSet controller reads when it picks pods to remove.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// How long to wait before writing again after a failed write.
const RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// The pod a replica runs in, for [`RuntimeBuilder::pod_deletion_cost`](crate::RuntimeBuilder::pod_deletion_cost).
#[derive(Clone, Debug)]
pub(crate) struct PodRef {
    pub(crate) namespace: String,
    pub(crate) name: String,
}

/// How many leases this replica leads, written to its pod by a task of its own.
pub(crate) struct PodDeletionCost {
    leading: watch::Sender<usize>,
}

impl PodDeletionCost {
    /// Starts the task that keeps `pod`'s annotation up to date, until `shutdown`.
    pub(crate) fn start(client: kube::Client, pod: PodRef, shutdown: CancellationToken) -> Self {
        let (leading, changes) = watch::channel(0);
        tokio::spawn(async move {
            tokio::select! {
                () = keep(client, pod, changes) => {}
                () = shutdown.cancelled() => {}
            }
        });
        PodDeletionCost { leading }
    }

    /// A term began on one of this replica's leases.
    pub(crate) fn term_began(&self) {
        self.leading.send_modify(|count| *count += 1);
    }

    /// A term ended.
    pub(crate) fn term_ended(&self) {
        self.leading
            .send_modify(|count| *count = count.saturating_sub(1));
    }
}

/// Writes the number of leases led to the pod whenever it changes; gives up for good (said once)
/// when RBAC refuses it or the pod does not exist.
async fn keep(client: kube::Client, pod: PodRef, mut leading: watch::Receiver<usize>) {
    let pods: Api<Pod> = Api::namespaced(client, &pod.namespace);
    // What the pod carries as far as this task knows: unknown at first (an earlier container in
    // the same pod may have left a cost), so the first value is always written.
    let mut written = None;
    loop {
        let wanted = *leading.borrow_and_update();
        if written != Some(wanted) {
            let value = match wanted {
                0 => k8s_openapi::serde_json::Value::Null,
                count => count.to_string().into(),
            };
            let patch = k8s_openapi::serde_json::json!({
                "metadata": { "annotations": { POD_DELETION_COST: value } }
            });
            let patched = pods
                .patch(&pod.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await;
            match patched {
                Ok(_) => {
                    debug!(pod = %pod.name, cost = wanted, "pod deletion cost written");
                    written = Some(wanted);
                }
                Err(kube::Error::Api(status)) if status.code == 403 || status.code == 404 => {
                    let why = if status.code == 403 {
                        format!(
                            "RBAC does not let it patch pods in namespace `{}`; bind it to a Role \
                             with the rule {{{POD_RULE}}}",
                            pod.namespace
                        )
                    } else {
                        format!("no pod `{}` in namespace `{}`", pod.name, pod.namespace)
                    };
                    let message = format!(
                        "not marking this replica's pod as the last to remove while it leads \
                         ({POD_DELETION_COST}): {why} (API server said: {})",
                        status.message
                    );
                    say(Level::WARN, &message, None);
                    return;
                }
                Err(error) => {
                    debug!(%error, pod = %pod.name, "writing the pod deletion cost failed; retrying");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            }
        }
        if leading.changed().await.is_err() {
            return;
        }
    }
}
