//! The operator's `main`: the runtime is built from flags and the `LEADER_*` variables, and its
//! API client is shared with the work.

use leader::leader_main;
use leader::runtime::Runtime;

async fn build_runtime() -> leader::Result<Runtime> {
    let mut builder = Runtime::builder().apply_env();
    if let Some(id) = std::env::args().nth(1) {
        builder = builder.identity(id);
    }
    // In a pod (downward API): the leader's pod is removed last in a rollout, and the leader
    // publishes where it serves, so that followers can send writes there.
    if let (Ok(namespace), Ok(pod)) = (std::env::var("POD_NAMESPACE"), std::env::var("POD_NAME")) {
        builder = builder.pod_deletion_cost(namespace, pod);
    }
    if std::env::var_os(leader::runtime::ENV_POD_IP).is_some() {
        builder = builder.address_from_pod_ip(8080);
    }
    builder.build().await
}

#[leader_main(runtime = build_runtime)]
async fn main() -> leader::Result<()> {
    let runtime = leader::current_runtime().expect("started by #[leader_main]");
    let client = runtime
        .client()
        .cloned()
        .expect("a cluster, not LEADER_STANDALONE");
    let namespace = runtime.namespace().to_owned();
    leader_consumer_operator::census(client, namespace).await
}
