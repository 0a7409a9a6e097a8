//! A kube-rs `Controller` that runs on one replica only: what controller-runtime's
//! `LeaderElection: true` gives a Go operator, with `#[leader_only]`.
//!
//! The controller reconciles the ConfigMaps labelled `leader.example/reconcile=true` in the
//! lease's namespace. Each reconcile stamps the object with the replica's identity and the term's
//! fencing token (annotations `leader.example/reconciled-by`, `leader.example/fencing-token`),
//! the keys of its data (`leader.example/data-keys`) and how many writes it has had
//! (`leader.example/writes`). Run three instances against a cluster (or the local control plane
//! from `make control-plane`), each in its own terminal:
//!
//! ```text
//! cargo run --example controller -- --kubeconfig=$HOME/.kube/config --id=instance-1 \
//!     --lease-lock-name=configmap-controller --lease-lock-namespace=default
//! ```
//!
//! (then `--id=instance-2` and `--id=instance-3`), and give it something to reconcile:
//!
//! ```text
//! kubectl create configmap demo --from-literal=color=blue
//! kubectl label configmap demo leader.example/reconcile=true
//! kubectl get configmap demo -o yaml
//! ```
//!
//! One instance prints `instance-1: leading configmap-controller (fencing token 0)`, `instance-1:
//! controller started (fencing token 0)` and `instance-1: reconciled demo (fencing token 0, write
//! 1)`, and the ConfigMap carries `leader.example/reconciled-by: instance-1`; the others print
//! `instance-2: new leader of configmap-controller: instance-1` and reconcile nothing. Ctrl+C on
//! the leader stops its controller (graceful shutdown: reconciles in flight finish) and releases
//! the lease; another instance leads at once, starts a controller of its own with a fresh watch
//! and stamps every ConfigMap with its identity and its higher fencing token. `kill -9` on the
//! leader makes the others wait until the lease expires (15 s).
//!
//! The pattern, for a controller of your own:
//!
//! - a `#[leader_only]` function that takes `Leadership` builds a new `Controller` on each call,
//!   so each term starts with a fresh watch and an empty cache (nothing stale from an earlier
//!   term), and stops it with `graceful_shutdown_on(leadership.cancelled())` when the term ends;
//!   `main` calls it in a loop to campaign again;
//! - `graceful_shutdown_on` wants a `'static` future: `leadership.cancelled()` (or, with a
//!   `CancellationToken` parameter, `token.cancelled_owned()`) owns what it waits on, where
//!   `token.cancelled()` borrows the token and does not compile there;
//! - the controller uses the runtime's `kube::Client` (`Runtime::client()`): one client, one
//!   connection pool, per process;
//! - writes are fenced: a reconcile writes nothing once a later leader's fencing token is on the
//!   object, and its patch carries the `resourceVersion` it read, so a write based on an older
//!   version of the object fails with a conflict instead of landing. Together, no write of an
//!   earlier leader lands after one of a later leader (`tests/cluster/controller.rs` checks it
//!   over every version of every object).
//!
//! Flags take every form Go's `flag` package does (`--id=instance-1`, `--id instance-1`,
//! `-id instance-1`); `--help` lists them. `--selector` picks other ConfigMaps;
//! `--lease-duration`, `--renew-deadline` and `--retry-period` (`15s`, `500ms`) set the timings;
//! `LEADER_IDENTITY` and `LEADER_NAMESPACE` work as with `#[leader_main]` (a flag wins).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use leader::runtime::Runtime;
use leader::{Leadership, leader_main, leader_only};

#[path = "support/flags.rs"]
mod flags;
#[path = "support/report.rs"]
mod report;

/// The lease named in the attribute; `--lease-lock-name` renames it at run time.
const LEASE: &str = "configmap-controller";

/// The replica that wrote the object last.
const RECONCILED_BY: &str = "leader.example/reconciled-by";
/// The fencing token of the term in which it was written.
const FENCING_TOKEN: &str = "leader.example/fencing-token";
/// The keys of the object's data, comma-separated, as the controller saw them.
const DATA_KEYS: &str = "leader.example/data-keys";
/// How many times the controller has written the object.
const WRITES: &str = "leader.example/writes";

/// A kube-rs Controller over the ConfigMaps of the lease's namespace, running on the replica
/// that leads the lease.
#[derive(Parser, Debug)]
struct Options {
    #[command(flatten)]
    client_go: flags::ClientGoFlags,
    /// Name of the lease
    #[arg(long, value_name = "NAME", default_value = LEASE)]
    lease_lock_name: String,
    /// Label selector of the ConfigMaps to reconcile
    #[arg(
        long,
        value_name = "SELECTOR",
        default_value = "leader.example/reconcile=true"
    )]
    selector: String,
}

/// The command line, parsed once (by `runtime_from_flags`, before `main`'s body runs).
fn options() -> &'static Options {
    static OPTIONS: OnceLock<Options> = OnceLock::new();
    OPTIONS.get_or_init(flags::parse)
}

#[leader_main(runtime = runtime_from_flags)]
async fn main() -> leader::Result<()> {
    let runtime = leader::installed_runtime().expect("started by #[leader_main]");
    let me = runtime.identity().to_owned();
    let Some(client) = runtime.client().cloned() else {
        eprintln!("{me}: the controller needs a cluster, and LEADER_STANDALONE runs without one");
        std::process::exit(1);
    };
    tokio::spawn(report::leadership(runtime.election(LEASE)?, me.clone()));
    let configmaps: Api<ConfigMap> = Api::namespaced(client, runtime.namespace());
    loop {
        // One term per call: returns when the term ends, then campaigns again.
        match control(configmaps.clone(), options().selector.clone()).await {
            Err(error @ leader::Error::ShutDown { .. }) => return Err(error),
            Err(error) => eprintln!("{me}: {error}"),
            Ok(()) => {}
        }
    }
}

/// Runs the controller for one term of leadership: a new `Controller`, with a fresh watch, that
/// shuts down gracefully when the term ends.
#[leader_only(lease = "configmap-controller")]
async fn control(leadership: Leadership, configmaps: Api<ConfigMap>, selector: String) {
    let me = leadership.identity().to_owned();
    let token = leadership.fencing_token();
    println!("{me}: controller started (fencing token {token})");
    let term = Arc::new(Term {
        configmaps: configmaps.clone(),
        leadership: leadership.clone(),
    });
    Controller::new(configmaps, watcher::Config::default().labels(&selector))
        // An owned, 'static future: `leadership.token().cancelled()` borrows and would not do.
        .graceful_shutdown_on(leadership.cancelled())
        .run(reconcile, error_policy, term)
        .for_each(|result| {
            if let Err(error) = result {
                report_error(&me, &error);
            }
            std::future::ready(())
        })
        .await;
    println!("{me}: controller stopped (fencing token {token})");
}

/// What every reconcile of one term shares.
struct Term {
    configmaps: Api<ConfigMap>,
    leadership: Leadership,
}

/// Stamps `object` with this term's identity and fencing token, and the keys of its data.
async fn reconcile(object: Arc<ConfigMap>, term: Arc<Term>) -> Result<Action, kube::Error> {
    let leadership = &term.leadership;
    let token = leadership.fencing_token();
    // `is_leading` reads the clock: after a pause past the term's deadline, no further write.
    if !leadership.is_leading() {
        return Ok(Action::await_change());
    }
    let annotations = object.annotations();
    let written_with = annotations
        .get(FENCING_TOKEN)
        .and_then(|t| t.parse::<i32>().ok());
    if written_with.is_some_and(|theirs| theirs > token) {
        // A later leader has written the object: this term is over, whatever it believes.
        return Ok(Action::await_change());
    }
    let data_keys = object.data.iter().flat_map(BTreeMap::keys);
    let wanted = [
        (RECONCILED_BY, leadership.identity().to_owned()),
        (FENCING_TOKEN, token.to_string()),
        (DATA_KEYS, data_keys.cloned().collect::<Vec<_>>().join(",")),
    ];
    if wanted
        .iter()
        .all(|(key, value)| annotations.get(*key) == Some(value))
    {
        return Ok(Action::await_change());
    }
    let writes = annotations.get(WRITES).and_then(|n| n.parse::<u64>().ok());
    let writes = writes.unwrap_or(0) + 1;
    let mut stamp: serde_json::Map<_, _> = wanted
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.into()))
        .collect();
    stamp.insert(WRITES.to_owned(), writes.to_string().into());
    // The resourceVersion read makes the patch conditional: if the object has changed since
    // (another leader's write, say), the API server answers 409 Conflict and nothing lands.
    let patch = serde_json::json!({
        "metadata": {
            "resourceVersion": object.meta().resource_version,
            "annotations": stamp,
        }
    });
    let name = object.name_any();
    let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
    let write = term.configmaps.patch(&name, &params, &patch);
    // Bounded by the term: a reconcile does not wait on a slow API server past the term's end
    // (should the abandoned write land after all, the resourceVersion keeps it safe).
    let Ok(written) = tokio::time::timeout_at(leadership.valid_until(), write).await else {
        return Ok(Action::await_change());
    };
    written?;
    let me = leadership.identity();
    println!("{me}: reconciled {name} (fencing token {token}, write {writes})");
    Ok(Action::await_change())
}

/// After a failed reconcile: a conflict means the object changed, and the watch brings the new
/// version (and another reconcile) by itself; retry other failures after a second.
fn error_policy(_object: Arc<ConfigMap>, error: &kube::Error, _term: Arc<Term>) -> Action {
    match error {
        kube::Error::Api(status) if status.code == 409 => Action::await_change(),
        _ => Action::requeue(std::time::Duration::from_secs(1)),
    }
}

/// Prints a failed reconcile or a watch error, but not the conflicts that fencing expects.
fn report_error(me: &str, error: &controller::Error<kube::Error, watcher::Error>) {
    match error {
        controller::Error::ReconcilerFailed(kube::Error::Api(status), _) if status.code == 409 => {}
        controller::Error::ReconcilerFailed(source, object) => {
            eprintln!("{me}: reconciling {object}: {source}");
        }
        error => eprintln!("{me}: {error}"),
    }
}

/// Builds the runtime from client-go's example flags, over the `LEADER_*` environment variables
/// (a flag wins over its variable).
async fn runtime_from_flags() -> leader::Result<Runtime> {
    let options = options();
    let builder = options
        .client_go
        .apply(Runtime::builder().apply_env())
        .await;
    builder
        .rename_lease(LEASE, &options.lease_lock_name)
        .build()
        .await
}
