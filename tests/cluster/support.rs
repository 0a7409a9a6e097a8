//! Access to the local control plane that `tests/control-plane/launcher` started for this run.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
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

/// A Lease object named `name`, held by `holder` for 15 s, ready to create.
pub(crate) fn lease(name: &str, holder: &str) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        }),
    }
}

pub(crate) async fn client_from_kubeconfig(path: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(path)
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|error| panic!("loading {}: {error}", path.display()));
    Client::try_from(config).expect("building a kube client")
}

/// Timings short enough to watch expiry happen in a test: 4 s lease, 3 s renew deadline, 1 s retry.
pub(crate) const FAST_TIMINGS: [&str; 6] = [
    "--lease-duration",
    "4s",
    "--renew-deadline",
    "3s",
    "--retry-period",
    "1s",
];

/// A candidate process: `examples/election.rs` (or the client-go peer, see
/// [`Candidate::start_as`]) running against the control plane.
pub(crate) struct Candidate {
    pub(crate) id: String,
    /// Which program this candidate runs.
    pub(crate) implementation: Implementation,
    child: std::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<(std::time::Instant, String)>,
    /// Every line read so far, with when it was read.
    pub(crate) seen: Vec<(std::time::Instant, String)>,
}

impl Candidate {
    /// Starts a candidate named `id` for `leases` in `namespace`, with extra `options`.
    pub(crate) fn start(
        cluster: &ControlPlane,
        id: &str,
        namespace: &str,
        leases: &[String],
        options: &[&str],
    ) -> Self {
        Self::start_as(
            Implementation::Rust,
            cluster,
            id,
            namespace,
            leases,
            options,
        )
    }

    /// Starts a candidate running `implementation`: the same flags and the same output lines
    /// either way. The Go peer takes one lease only.
    pub(crate) fn start_as(
        implementation: Implementation,
        cluster: &ControlPlane,
        id: &str,
        namespace: &str,
        leases: &[String],
        options: &[&str],
    ) -> Self {
        let binary = match implementation {
            Implementation::Rust => example_binary("election"),
            Implementation::Go => {
                assert_eq!(
                    leases.len(),
                    1,
                    "the client-go peer runs one election; asked for {leases:?}"
                );
                cluster.peer_binary()
            }
        };
        let args = Self::args(cluster, id, namespace, leases, options);
        let stderr = std::process::Stdio::inherit();
        Self::launch(binary, implementation, id, &args, stderr)
    }

    /// [`Candidate::start`] with the process's standard error written to `log` instead of the
    /// test's, for long runs whose candidates log a lot.
    pub(crate) fn start_logging_to(
        cluster: &ControlPlane,
        id: &str,
        namespace: &str,
        leases: &[String],
        options: &[&str],
        log: &Path,
    ) -> Self {
        let file = std::fs::File::create(log)
            .unwrap_or_else(|error| panic!("creating {}: {error}", log.display()));
        let args = Self::args(cluster, id, namespace, leases, options);
        let binary = example_binary("election");
        Self::launch(binary, Implementation::Rust, id, &args, file.into())
    }

    /// Starts `examples/<example>.rs` as a candidate: any example that takes client-go's example
    /// flags and prints the same lines as `examples/election.rs` (`periodic` does).
    pub(crate) fn start_example(
        example: &str,
        cluster: &ControlPlane,
        id: &str,
        namespace: &str,
        lease: &str,
        options: &[&str],
    ) -> Self {
        let leases = [lease.to_owned()];
        let binary = example_binary(example);
        let args = Self::args(cluster, id, namespace, &leases, options);
        let stderr = std::process::Stdio::inherit();
        Self::launch(binary, Implementation::Rust, id, &args, stderr)
    }

    /// The command line of a candidate: the admin's kubeconfig, the identity, the namespace,
    /// the leases, then `options`.
    fn args(
        cluster: &ControlPlane,
        id: &str,
        namespace: &str,
        leases: &[String],
        options: &[&str],
    ) -> Vec<std::ffi::OsString> {
        let kubeconfig = cluster.kubeconfig(Identity::Admin);
        let mut args = vec!["--kubeconfig".into(), kubeconfig.into_os_string()];
        let flags = [
            "--id",
            id,
            "--lease-lock-namespace",
            namespace,
            "--lease-lock-name",
            &leases.join(","),
        ];
        args.extend(flags.iter().chain(options).map(Into::into));
        args
    }

    /// Starts `examples/<example>.rs` with exactly `args`; `id` names it in failure messages.
    pub(crate) fn start_with_args(example: &str, id: &str, args: &[String]) -> Self {
        let args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        let stderr = std::process::Stdio::inherit();
        Self::launch(
            example_binary(example),
            Implementation::Rust,
            id,
            &args,
            stderr,
        )
    }

    fn launch(
        binary: PathBuf,
        implementation: Implementation,
        id: &str,
        args: &[std::ffi::OsString],
        stderr: std::process::Stdio,
    ) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(&binary)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|error| panic!("starting {}: {error}", binary.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if sender.send((std::time::Instant::now(), line)).is_err() {
                    return;
                }
            }
        });
        Candidate {
            id: id.to_owned(),
            implementation,
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits up to `limit` for a line containing `text`; returns when it was read.
    pub(crate) async fn wait_for(
        &mut self,
        text: &str,
        limit: std::time::Duration,
    ) -> std::time::Instant {
        if let Some((at, _)) = self.seen.iter().find(|(_, line)| line.contains(text)) {
            return *at;
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some((at, line))) => {
                    let found = line.contains(text);
                    self.seen.push((at, line));
                    if found {
                        return at;
                    }
                }
                Ok(None) => panic!(
                    "{} exited without printing {text:?}; it printed {:#?}",
                    self.id, self.seen
                ),
                Err(_) => panic!(
                    "{} did not print {text:?} within {limit:?}; it printed {:#?}",
                    self.id, self.seen
                ),
            }
        }
    }

    /// Takes in the lines printed so far without waiting.
    pub(crate) fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    /// Whether a line containing `text` has been read.
    pub(crate) fn printed(&mut self, text: &str) -> bool {
        self.drain();
        self.seen.iter().any(|(_, line)| line.contains(text))
    }

    /// Sends a signal (`TERM`, `KILL`, `STOP`, `CONT`) to the process.
    pub(crate) fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(
            status.success(),
            "kill -{signal} {} failed",
            self.child.id()
        );
    }

    /// Reads the rest of the output of a process that has exited or is exiting, until its
    /// stdout closes; panics if that takes longer than `limit`.
    pub(crate) async fn read_to_end(&mut self, limit: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => self.seen.push(line),
                Ok(None) => return,
                Err(_) => panic!(
                    "{} kept its stdout open for {limit:?}; it printed {:#?}",
                    self.id, self.seen
                ),
            }
        }
    }

    /// Waits for the process to exit and returns whether it exited successfully.
    pub(crate) fn wait(&mut self) -> bool {
        self.child
            .wait()
            .expect("waiting for a candidate")
            .success()
    }
}

impl Drop for Candidate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The path of a compiled example; `cargo test` builds examples before it runs tests.
pub(crate) fn example_binary(name: &str) -> PathBuf {
    let test_binary = std::env::current_exe().expect("locating the test binary");
    let profile_dir = test_binary
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let binary = profile_dir.join("examples").join(name);
    assert!(
        binary.is_file(),
        "{} is missing; build the examples first (`cargo test` does, or `cargo build --examples`)",
        binary.display()
    );
    binary
}

/// Which program a [`Candidate`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Implementation {
    /// `examples/election.rs`, on this crate's runtime.
    Rust,
    /// `tests/control-plane/peer`, on client-go's `tools/leaderelection` with a `LeaseLock`.
    Go,
}

impl std::fmt::Display for Implementation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Implementation::Rust => "Rust",
            Implementation::Go => "Go",
        })
    }
}

impl ControlPlane {
    /// The client-go peer, which `tests/control-plane/build.sh` builds next to kube-apiserver
    /// (the launcher records where that is in control-plane.json).
    pub(crate) fn peer_binary(&self) -> PathBuf {
        let state = self.state_dir.join("control-plane.json");
        let text = std::fs::read_to_string(&state)
            .unwrap_or_else(|error| panic!("reading {}: {error}", state.display()));
        let json: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|error| panic!("parsing {}: {error}", state.display()));
        let Some(apiserver) = json["kube_apiserver_bin"].as_str() else {
            panic!("{} has no kube_apiserver_bin", state.display());
        };
        let binary = Path::new(apiserver).with_file_name("peer");
        assert!(
            binary.is_file(),
            "the client-go peer {} is missing: this control plane comes from a build without it. \
             Rebuild with `tests/control-plane/build.sh` (it builds tests/control-plane/peer) and \
             run the tests through the launcher it prints (`make test` does both).",
            binary.display()
        );
        binary
    }
}

impl ControlPlane {
    /// The control plane whose launcher keeps its state in `state_dir` (a private one, say,
    /// started by a test with `launcher serve`).
    pub(crate) fn at(state_dir: PathBuf) -> Self {
        ControlPlane { state_dir }
    }

    /// The launcher's `control-plane.json`: addresses, process ids, restart counts.
    pub(crate) fn info(&self) -> serde_json::Value {
        let state = self.state_dir.join("control-plane.json");
        let text = std::fs::read_to_string(&state)
            .unwrap_or_else(|error| panic!("reading {}: {error}", state.display()));
        serde_json::from_str(&text)
            .unwrap_or_else(|error| panic!("parsing {}: {error}", state.display()))
    }

    /// The directory of the launcher, kube-apiserver and the other binaries
    /// `tests/control-plane/build.sh` built.
    pub(crate) fn bin_dir(&self) -> PathBuf {
        let info = self.info();
        let Some(apiserver) = info["kube_apiserver_bin"].as_str() else {
            panic!("control-plane.json has no kube_apiserver_bin");
        };
        Path::new(apiserver)
            .parent()
            .expect("kube_apiserver_bin names a file")
            .to_owned()
    }
}

impl Candidate {
    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (and if so, whether successfully), without waiting.
    pub(crate) fn try_wait(&mut self) -> Option<bool> {
        self.child
            .try_wait()
            .expect("checking on a candidate")
            .map(|status| status.success())
    }
}

// ----- the test node -----

const NODE_HOW_TO_FIX: &str = "The node tests need a real node next to the control plane \
(kubelet, containerd, kube-controller-manager and kube-scheduler, started by \
`tests/control-plane/launcher --node`, as root). Run them with `make test`, which builds the node \
and its images (minutes, the first time) and starts it; or start one by hand with `make node` and \
run `cargo test --test cluster` inside its network namespace, as `make node` prints.";

/// The test node of this run: a kubelet and containerd next to the control plane, in a network
/// namespace of the run's own, where the tests run too. Described by the launcher's `node.json`.
/// The admin's kubeconfig is the control plane's (`ControlPlane::kubeconfig(Identity::Admin)`).
pub(crate) struct Node {
    info: serde_json::Value,
    admin_kubeconfig: PathBuf,
}

impl ControlPlane {
    /// The test node of this run; panics with instructions when there is none.
    pub(crate) fn node(&self) -> Node {
        let path = self.state_dir.join("node.json");
        let Ok(text) = std::fs::read_to_string(&path) else {
            panic!(
                "{STATE_DIR_VAR} points at a control plane without a node (no {}). \
                 {NODE_HOW_TO_FIX}",
                path.display()
            );
        };
        let info = serde_json::from_str(&text)
            .unwrap_or_else(|error| panic!("parsing {}: {error}", path.display()));
        Node {
            info,
            admin_kubeconfig: self.kubeconfig(Identity::Admin),
        }
    }
}

impl Node {
    fn field(&self, key: &str) -> &serde_json::Value {
        let value = &self.info[key];
        assert!(!value.is_null(), "node.json has no `{key}`");
        value
    }

    /// The node's name (its address: kubelet runs with `--hostname-override` set to it).
    pub(crate) fn name(&self) -> &str {
        self.field("node_name").as_str().expect("a string")
    }

    /// The address the API server listens on for pods; pods need it in
    /// `KUBERNETES_SERVICE_HOST`, since the node runs no kube-proxy for the `kubernetes` Service.
    pub(crate) fn api_server_host(&self) -> &str {
        self.field("api_server_host").as_str().expect("a string")
    }

    /// The API server's port, for `KUBERNETES_SERVICE_PORT`.
    pub(crate) fn api_server_port(&self) -> u16 {
        let port = self.field("api_server_port").as_u64().expect("a number");
        port.try_into().expect("a port")
    }

    /// The reference of an image imported into the node (`pause`, `periodic`, `peer`); pods use
    /// it with `imagePullPolicy: Never`.
    pub(crate) fn image(&self, name: &str) -> String {
        let images = self.field("images");
        let Some(reference) = images[name].as_str() else {
            panic!("the node has no image `{name}`; it has {images}");
        };
        reference.to_owned()
    }

    /// Sends `signal` (`SIGKILL`) to a pod's container through containerd, as a crash or the
    /// kernel's OOM killer would end it: kubelet is not asked, and restarts the container.
    /// `container_id` is the pod status's `containerID` (`containerd://<id>`).
    pub(crate) fn kill_container(&self, container_id: &str, signal: &str) {
        let id = container_id
            .strip_prefix("containerd://")
            .unwrap_or_else(|| panic!("{container_id} is not a containerd container"));
        let ctr = self.field("ctr").as_str().expect("a path");
        let address = self.field("containerd_address").as_str().expect("a path");
        let output = std::process::Command::new(ctr)
            .args(["--address", address, "--namespace", "k8s.io"])
            .args(["tasks", "kill", "--signal", signal, id])
            .output()
            .unwrap_or_else(|error| panic!("running {ctr}: {error}"));
        assert!(
            output.status.success(),
            "ctr tasks kill --signal {signal} {id}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Runs kubectl as the admin with `args`, feeding it `stdin`; see [`kubectl`].
    pub(crate) fn kubectl_with_input(&self, args: &[&str], stdin: &str) -> String {
        kubectl(&self.admin_kubeconfig, args, stdin)
    }

    /// [`Node::kubectl_with_input`] with nothing on standard input.
    pub(crate) fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl_with_input(args, "")
    }
}

impl ControlPlane {
    /// Runs kubectl as `identity` with `args`; see [`kubectl`].
    pub(crate) fn kubectl(&self, identity: Identity, args: &[&str]) -> String {
        kubectl(&self.kubeconfig(identity), args, "")
    }
}

/// Runs kubectl with `kubeconfig` and `args`, feeding it `stdin`; returns its standard output and
/// panics with its standard error if it fails. The kubectl is `$KUBECTL` (`make test` sets it to
/// the one `tests/control-plane/kubectl.sh` installs), else `kubectl` on `PATH`.
pub(crate) fn kubectl(kubeconfig: &Path, args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let program = std::env::var_os("KUBECTL").unwrap_or_else(|| "kubectl".into());
    let mut child = std::process::Command::new(&program)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| {
            panic!(
                "running {}: {error}. Set KUBECTL to a kubectl (`tests/control-plane/kubectl.sh` \
                 installs one and prints its path; `make test` does that)",
                Path::new(&program).display()
            )
        });
    let mut input = child.stdin.take().expect("piped stdin");
    input
        .write_all(stdin.as_bytes())
        .expect("writing to kubectl");
    drop(input);
    let output = child.wait_with_output().expect("waiting for kubectl");
    assert!(
        output.status.success(),
        "kubectl {} failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    String::from_utf8(output.stdout).expect("kubectl prints UTF-8")
}

// ---------------------------------------------------------------------------------------------
// A private control plane, for tests that restart its servers.

/// A server of a [`PrivatePlane`] to restart.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Server {
    ApiServer,
    Etcd,
}

/// `launcher serve --stop-on-stdin-eof` as a child: it tears its control plane down when this
/// struct drops the pipe to its stdin, or when this process dies in any way.
pub(crate) struct PrivatePlane {
    child: Child,
    stdin: Option<ChildStdin>,
    _stdout: ChildStdout,
    /// Its servers, as the shared control plane's.
    pub(crate) plane: ControlPlane,
}

impl PrivatePlane {
    /// Starts one with the launcher of this run's control plane, off the async threads; returns
    /// once it is ready.
    pub(crate) async fn start_beside(cluster: &ControlPlane) -> PrivatePlane {
        let launcher = cluster.bin_dir().join("launcher");
        tokio::task::spawn_blocking(move || PrivatePlane::start(&launcher))
            .await
            .expect("starting the private control plane")
    }

    /// Starts one with `launcher`; blocks until it is ready.
    fn start(launcher: &Path) -> PrivatePlane {
        let mut child = Command::new(launcher)
            .args(["serve", "--stop-on-stdin-eof"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("starting {}: {error}", launcher.display()));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let mut reader = BufReader::new(stdout);
        let prefix = "export LEADER_TEST_CONTROL_PLANE=";
        let mut line = String::new();
        let state_dir = loop {
            line.clear();
            let read = reader
                .read_line(&mut line)
                .expect("reading the launcher's exports");
            assert!(read > 0, "the private launcher exited before it was ready");
            if let Some(dir) = line.trim_end().strip_prefix(prefix) {
                break PathBuf::from(dir);
            }
        };
        PrivatePlane {
            child,
            stdin,
            _stdout: reader.into_inner(),
            plane: ControlPlane::at(state_dir),
        }
    }

    /// Asks the launcher to restart kube-apiserver or etcd, and returns once it reports the
    /// restarted server ready, with when it saw the report (within 50 ms).
    pub(crate) async fn restart(&self, server: Server) -> Instant {
        let (signal, counter) = match server {
            Server::ApiServer => ("USR1", "kube_apiserver_restarts"),
            Server::Etcd => ("USR2", "etcd_restarts"),
        };
        let info = self.plane.info();
        let before = info[counter].as_u64().expect("a restart count");
        let launcher = info["launcher_pid"].as_u64().expect("launcher_pid");
        let status = Command::new("kill")
            .args([format!("-{signal}"), launcher.to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} {launcher} failed");
        let deadline = Instant::now() + Duration::from_secs(90);
        while self.plane.info()[counter].as_u64() == Some(before) {
            assert!(
                Instant::now() < deadline,
                "the launcher did not report {counter} > {before} within 90 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Instant::now()
    }
}

impl Drop for PrivatePlane {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Processes whose stdout and stderr are read line by line.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stream {
    Out,
    Err,
}

/// A line of output and when it was read.
pub(crate) type Line = (Instant, Stream, String);

/// A child process whose stdout and stderr are read line by line; killed when dropped, so that
/// no candidate outlives a failed test.
pub(crate) struct Process {
    child: Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<Line>,
    seen: Vec<Line>,
}

impl Process {
    /// Starts `command` with its stdout and stderr piped and read.
    pub(crate) fn start(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("starting {command:?}: {error}"));
        let (sender, lines) = tokio::sync::mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        read_lines(stdout, Stream::Out, sender.clone());
        read_lines(stderr, Stream::Err, sender);
        Process {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits up to `limit` for a line on `stream` containing `text`; returns when it was read.
    pub(crate) async fn wait_for(
        &mut self,
        stream: Stream,
        text: &str,
        limit: Duration,
    ) -> Instant {
        self.wait_after(None, stream, text, limit).await
    }

    /// Like [`wait_for`](Self::wait_for), for a line read after `since` only.
    pub(crate) async fn wait_after(
        &mut self,
        since: impl Into<Option<Instant>>,
        stream: Stream,
        text: &str,
        limit: Duration,
    ) -> Instant {
        let since = since.into();
        let found = |line: &Line| {
            line.1 == stream && line.2.contains(text) && since.is_none_or(|since| line.0 >= since)
        };
        if let Some(line) = self.seen.iter().find(|line| found(line)) {
            return line.0;
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    let at = found(&line).then_some(line.0);
                    self.seen.push(line);
                    if let Some(at) = at {
                        return at;
                    }
                }
                Ok(None) => panic!(
                    "the candidate exited without printing {text:?} on {stream:?}; it printed {:#?}",
                    self.seen
                ),
                Err(_) => panic!(
                    "the candidate did not print {text:?} on {stream:?} within {limit:?}; it \
                     printed {:#?}",
                    self.seen
                ),
            }
        }
    }

    /// The lines read so far on `stream` that contain `text`.
    pub(crate) fn matching(&mut self, stream: Stream, text: &str) -> Vec<String> {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        let lines = self.seen.iter().filter(|line| line.1 == stream);
        lines
            .filter(|line| line.2.contains(text))
            .map(|line| line.2.clone())
            .collect()
    }

    /// The lines read on `stream` since `since`.
    pub(crate) fn since(&mut self, since: Instant, stream: Stream) -> Vec<String> {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        let lines = self
            .seen
            .iter()
            .filter(|line| line.1 == stream && line.0 >= since);
        lines.map(|line| line.2.clone()).collect()
    }

    pub(crate) fn printed(&mut self, stream: Stream, text: &str) -> bool {
        !self.matching(stream, text).is_empty()
    }

    /// Sends a signal (`TERM`, `KILL`) to the process.
    pub(crate) fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args([format!("-{signal}"), pid])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits up to `limit` for the process to exit; whether it exited successfully.
    pub(crate) async fn exited_successfully(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the candidate") {
                return status.success();
            }
            assert!(Instant::now() < deadline, "the candidate did not exit");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends each line of `output` to `sender` from a thread of its own, without terminal colours.
fn read_lines(
    output: impl Read + Send + 'static,
    stream: Stream,
    sender: tokio::sync::mpsc::UnboundedSender<Line>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines() {
            let Ok(line) = line else { return };
            if sender
                .send((Instant::now(), stream, strip_colours(&line)))
                .is_err()
            {
                return;
            }
        }
    });
}

/// `line` without ANSI escape sequences (`ESC [ ... letter`).
fn strip_colours(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// A directory removed with everything in it when this is dropped.
pub(crate) struct RemoveOnDrop(pub(crate) PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
