//! Access to the local control plane that `tests/control-plane/launcher` started for this run.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// The environment variable the launcher sets to its state directory.
const STATE_DIR_VAR: &str = "LEADER_TEST_CONTROL_PLANE";

const HOW_TO_FIX: &str = "The integration tests need the local control plane (a real kube-apiserver \
and etcd on 127.0.0.1). Run them with `make test`, which builds it (minutes, the first time) and \
starts it; or start one by hand with `make control-plane`, export the variables it prints, and \
run `cargo test --test cluster` in that shell.";

/// Who a client talks to the API server as.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Identity {
    /// In `system:masters`: may do anything.
    Admin,
    /// An authenticated user without any RBAC rights.
    Unprivileged,
}

/// The running control plane of this test run.
pub(crate) struct ControlPlane {
    state_dir: PathBuf,
}

/// The control plane of this run; panics with instructions when there is none.
pub(crate) fn control_plane() -> ControlPlane {
    let Some(state_dir) = std::env::var_os(STATE_DIR_VAR) else {
        panic!("{STATE_DIR_VAR} is not set. {HOW_TO_FIX}");
    };
    let state_dir = PathBuf::from(state_dir);
    let ready = state_dir.join("control-plane.json");
    assert!(
        ready.is_file(),
        "{STATE_DIR_VAR} points at {}, which holds no running control plane (no control-plane.json). {HOW_TO_FIX}",
        state_dir.display()
    );
    ControlPlane { state_dir }
}

impl ControlPlane {
    /// The kubeconfig file for `identity`.
    pub(crate) fn kubeconfig(&self, identity: Identity) -> PathBuf {
        let file = match identity {
            Identity::Admin => "admin.kubeconfig",
            Identity::Unprivileged => "unprivileged.kubeconfig",
        };
        self.state_dir.join(file)
    }

    /// A client that talks to the API server as `identity`.
    pub(crate) async fn client(&self, identity: Identity) -> Client {
        client_from_kubeconfig(&self.kubeconfig(identity)).await
    }

    /// Creates a namespace with a unique name starting with `prefix`, for one test to work in.
    pub(crate) async fn namespace(&self, prefix: &str) -> String {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let namespaces: Api<Namespace> = Api::all(self.client(Identity::Admin).await);
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|error| panic!("creating namespace {name}: {error}"));
        name
    }
}

async fn client_from_kubeconfig(path: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(path)
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|error| panic!("loading {}: {error}", path.display()));
    Client::try_from(config).expect("building a kube client")
}
