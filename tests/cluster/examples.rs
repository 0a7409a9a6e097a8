//! The examples as users run them: three replicas of the compiled `examples/periodic.rs`, checked
//! through their output and the Lease object; and the command lines of client-go's tutorial,
//! in each form Go's `flag` package accepts, given to `election`, `periodic` and `controller`.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;

use crate::support::{Candidate, ControlPlane, FAST_TIMINGS, Identity, control_plane};

const LEASE: &str = "periodic-lock";
const SECOND: Duration = Duration::from_secs(1);

fn start(cluster: &ControlPlane, namespace: &str, id: &str, timings: &[&str]) -> Candidate {
    Candidate::start_example("periodic", cluster, id, namespace, LEASE, timings)
}

async fn holder(cluster: &ControlPlane, namespace: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(cluster.client(Identity::Admin).await, namespace);
    let lease = leases.get_opt(LEASE).await.unwrap()?;
    lease
        .spec?
        .holder_identity
        .filter(|holder| !holder.is_empty())
}

/// Three replicas; returns them and the index of the one that leads, once it has worked.
async fn three_replicas(
    cluster: &ControlPlane,
    namespace: &str,
    timings: &[&str],
) -> (Vec<Candidate>, usize) {
    let mut fleet: Vec<Candidate> = (1..=3)
        .map(|i| start(cluster, namespace, &format!("instance-{i}"), timings))
        .collect();
    let deadline = Instant::now() + 20 * SECOND;
    let leader_id = loop {
        if let Some(holder) = holder(cluster, namespace).await {
            break holder;
        }
        assert!(Instant::now() < deadline, "no holder within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let leader = fleet
        .iter()
        .position(|c| c.id == leader_id)
        .expect("the holder is a replica");
    fleet[leader]
        .wait_for(&format!("{leader_id}: working (fencing token"), 10 * SECOND)
        .await;
    (fleet, leader)
}

/// The first of the remaining replicas to print that it leads, and when.
async fn next_leader(replicas: &mut [Candidate], limit: Duration) -> (String, Instant) {
    let [a, b] = replicas else {
        panic!("two replicas left")
    };
    let text = format!("leading {LEASE}");
    tokio::select! {
        at = a.wait_for(&text, limit) => (a.id.clone(), at),
        at = b.wait_for(&text, limit) => (b.id.clone(), at),
    }
}

#[tokio::test]
async fn periodic_work_runs_on_one_replica_and_the_others_name_it() {
    let cluster = control_plane();
    let namespace = cluster.namespace("periodic-one").await;
    let (mut fleet, leader) = three_replicas(&cluster, &namespace, &FAST_TIMINGS).await;
    let leader_id = fleet[leader].id.clone();
    for (_, replica) in fleet.iter_mut().enumerate().filter(|(i, _)| *i != leader) {
        replica
            .wait_for(&format!("new leader of {LEASE}: {leader_id}"), 10 * SECOND)
            .await;
    }
    tokio::time::sleep(4 * SECOND).await; // a few periods (3 s) and renews (1 s)
    for (i, replica) in fleet.iter_mut().enumerate() {
        let worked = replica.printed(": working (fencing token");
        assert_eq!(worked, i == leader, "{}: {:?}", replica.id, replica.seen);
    }
    assert_eq!(
        holder(&cluster, &namespace).await.as_deref(),
        Some(leader_id.as_str())
    );
}

#[tokio::test]
async fn periodic_graceful_stop_hands_over_at_once() {
    let cluster = control_plane();
    let namespace = cluster.namespace("periodic-graceful").await;
    // Production timings (15 s lease): only the release can explain a handover within a second.
    let (mut fleet, leader) = three_replicas(&cluster, &namespace, &[]).await;
    let stopping = fleet.remove(leader);
    let stopped_at = Instant::now();
    stopping.signal("TERM");
    let (next, at) = next_leader(&mut fleet, 10 * SECOND).await;
    let handover = at - stopped_at;
    eprintln!("periodic: graceful handover to {next} took {handover:?}");
    assert!(handover < SECOND, "handover took {handover:?}");
    assert_eq!(
        holder(&cluster, &namespace).await.as_deref(),
        Some(next.as_str())
    );
    drop(stopping);
}

#[tokio::test]
async fn periodic_crash_hands_over_after_the_lease_expires() {
    let cluster = control_plane();
    let namespace = cluster.namespace("periodic-crash").await;
    let (mut fleet, leader) = three_replicas(&cluster, &namespace, &FAST_TIMINGS).await;
    tokio::time::sleep(2 * SECOND).await;
    let mut killed = fleet.remove(leader);
    let killed_at = Instant::now();
    killed.signal("KILL");
    assert!(!killed.wait(), "killed");
    let (next, at) = next_leader(&mut fleet, 20 * SECOND).await;
    let after_kill = at - killed_at;
    eprintln!("periodic: crash handover to {next} took {after_kill:?} after the kill");
    // The last renew came at most one retry period (1 s) before the kill, and the lease lasts 4 s
    // from when followers saw it.
    assert!(
        after_kill >= Duration::from_secs(3),
        "taken over only {after_kill:?} after the kill"
    );
    assert!(
        after_kill <= Duration::from_secs(5) + Duration::from_millis(500),
        "took {after_kill:?}"
    );
    assert_eq!(
        holder(&cluster, &namespace).await.as_deref(),
        Some(next.as_str())
    );
}

/// `#[leader_main(runtime = ...)]` keeps the documented environment when the program's builder
/// applies it (`RuntimeBuilder::apply_env`), as `examples/periodic.rs` does: `LEADER_STANDALONE`
/// and `LEADER_IDENTITY` reach the runtime, and a flag wins over its variable.
#[tokio::test]
async fn periodic_honours_the_leader_variables_and_flags_win_over_them() {
    use std::io::{BufRead, BufReader};
    for (flags, expected) in [
        (&[][..], "from-env: working (fencing token 0)"),
        (
            &["--id", "from-flag"][..],
            "from-flag: working (fencing token 0)",
        ),
    ] {
        let mut child = std::process::Command::new(crate::support::example_binary("periodic"))
            .args(flags)
            .env("LEADER_STANDALONE", "1")
            .env("LEADER_IDENTITY", "from-env")
            .env("KUBECONFIG", "/nonexistent/no-cluster-needed")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("starting the periodic example");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (found, line) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let line = stdout.lines().map_while(Result::ok);
            let _ = found.send(line.into_iter().find(|line| line.contains("working")));
        });
        let line = line.recv_timeout(20 * SECOND).ok().flatten();
        child.kill().unwrap();
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(line.as_deref(), Some(expected), "stderr: {stderr}");
        assert!(
            stderr.contains("WARNING: LEADER_STANDALONE is set"),
            "{stderr}"
        );
        assert!(!stderr.contains("did not apply"), "{stderr}");
    }
}

// ---------------------------------------------------------------------------------------------
// client-go's command line.

/// The examples that take client-go's example flags, with the lease each uses by default.
const CLIENT_GO_EXAMPLES: [(&str, &str); 3] = [
    ("election", "my-leader-election-lock"),
    ("periodic", "my-leader-election-lock"),
    ("controller", "configmap-controller"),
];

/// The ways Go's `flag` package takes a flag with a value.
#[derive(Clone, Copy, Debug)]
enum Form {
    /// `--flag=value`
    DoubleDashEquals,
    /// `--flag value`
    DoubleDashSpace,
    /// `-flag value`
    SingleDashSpace,
    /// `-flag=value`
    SingleDashEquals,
}

impl Form {
    const ALL: [Form; 4] = [
        Form::DoubleDashEquals,
        Form::DoubleDashSpace,
        Form::SingleDashSpace,
        Form::SingleDashEquals,
    ];

    fn write(self, flags: &[(&str, &str)]) -> Vec<String> {
        let mut args = Vec::new();
        for (flag, value) in flags {
            match self {
                Form::DoubleDashEquals => args.push(format!("--{flag}={value}")),
                Form::DoubleDashSpace => args.extend([format!("--{flag}"), (*value).to_owned()]),
                Form::SingleDashSpace => args.extend([format!("-{flag}"), (*value).to_owned()]),
                Form::SingleDashEquals => args.push(format!("-{flag}={value}")),
            }
        }
        args
    }
}

/// Waits until `replica` prints that it leads `lease` and the Lease in `namespace` names it, then
/// stops it with SIGTERM and checks that it exits with status 0.
async fn leads_then_stops(
    cluster: &ControlPlane,
    replica: &mut Candidate,
    namespace: &str,
    lease: &str,
) {
    replica
        .wait_for(&format!("instance-1: leading {lease} ("), 20 * SECOND)
        .await;
    let leases: Api<Lease> = Api::namespaced(cluster.client(Identity::Admin).await, namespace);
    let held = leases.get(lease).await.unwrap();
    let holder = held.spec.and_then(|spec| spec.holder_identity);
    assert_eq!(holder.as_deref(), Some("instance-1"), "{}", replica.id);
    replica.signal("TERM");
    replica.read_to_end(10 * SECOND).await;
    assert!(
        replica.wait(),
        "{}: exit status 0 after SIGTERM",
        replica.id
    );
}

/// client-go's tutorial runs its program as `go run main.go --kubeconfig=PATH --id=instance-1`;
/// each example takes that command line as it is, and leads its default lease in the
/// kubeconfig context's namespace (`default`), one after the other.
#[tokio::test]
async fn each_example_takes_the_command_line_of_client_gos_tutorial() {
    let cluster = control_plane();
    let kubeconfig = cluster.kubeconfig(Identity::Admin);
    let kubeconfig = format!("--kubeconfig={}", kubeconfig.display());
    for (example, lease) in CLIENT_GO_EXAMPLES {
        let args = [kubeconfig.clone(), "--id=instance-1".into()];
        let mut replica = Candidate::start_with_args(example, example, &args);
        leads_then_stops(&cluster, &mut replica, "default", lease).await;
    }
}

/// `--kubeconfig`, `--id`, `--lease-lock-name` and `--lease-lock-namespace` in each form Go
/// takes, `--id` twice: every example leads the named lease in the named namespace as
/// `instance-1`.
#[tokio::test]
async fn each_example_takes_client_gos_flags_in_every_form_go_accepts() {
    let cluster = control_plane();
    let namespace = cluster.namespace("client-go-flags").await;
    let kubeconfig = cluster.kubeconfig(Identity::Admin);
    let kubeconfig = kubeconfig.to_str().expect("a UTF-8 path");
    let mut replicas = Vec::new();
    for (example, _) in CLIENT_GO_EXAMPLES {
        for (i, form) in Form::ALL.into_iter().enumerate() {
            let lease = format!("{example}-{i}");
            let args = form.write(&[
                ("kubeconfig", kubeconfig),
                // Given twice: the last one wins, as in Go.
                ("id", "instance-0"),
                ("id", "instance-1"),
                ("lease-lock-name", &lease),
                ("lease-lock-namespace", &namespace),
            ]);
            let name = format!("{example} {}", args.join(" "));
            replicas.push((Candidate::start_with_args(example, &name, &args), lease));
        }
    }
    for (replica, lease) in &mut replicas {
        leads_then_stops(&cluster, replica, &namespace, lease).await;
    }
}

/// Runs a compiled example with `args` to its end; returns its exit code, stdout and stderr.
fn run_to_end(example: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let output = std::process::Command::new(crate::support::example_binary(example))
        .args(args)
        .env("KUBECONFIG", "/nonexistent/no-cluster-needed")
        .output()
        .unwrap_or_else(|error| panic!("running {example}: {error}"));
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("UTF-8");
    (
        output.status.code(),
        text(output.stdout),
        text(output.stderr),
    )
}

/// A flag the example does not know, in either dash form, or a value it cannot read, stops it
/// before it does anything: clap's message on stderr and exit status 2, as for a Go program.
#[test]
fn an_unknown_flag_or_a_bad_value_fails_with_claps_message_and_status_2() {
    for (example, _) in CLIENT_GO_EXAMPLES {
        for (args, message) in [
            (
                &["--id=instance-1", "--bogus=1"][..],
                "unexpected argument '--bogus' found",
            ),
            (
                &["-id", "instance-1", "-bogus", "1"][..],
                "unexpected argument '--bogus' found",
            ),
            (
                &["--lease-duration=15"][..],
                "invalid value '15' for '--lease-duration <DURATION>'",
            ),
        ] {
            let (code, stdout, stderr) = run_to_end(example, args);
            assert_eq!(code, Some(2), "{example} {args:?}: {stdout}{stderr}");
            assert!(stderr.contains(message), "{example} {args:?}: {stderr}");
            assert!(
                stderr.contains("try '--help'"),
                "{example} {args:?}: {stderr}"
            );
        }
    }
}

/// `election --count N --lease-lock-name NAME` runs elections on `NAME-0` .. `NAME-(N-1)` (as
/// `benches/go-electors` takes it); with a list of names `--count` is a mistake, status 2.
#[tokio::test]
async fn election_count_runs_one_election_per_numbered_name() {
    let (code, stdout, stderr) = run_to_end("election", &["--count=2", "--lease-lock-name=a,b"]);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("--count takes a single --lease-lock-name"),
        "{stderr}"
    );

    let cluster = control_plane();
    let namespace = cluster.namespace("example-count").await;
    let leases = ["numbered".to_owned()];
    let mut replica = Candidate::start(&cluster, "counter", &namespace, &leases, &["--count=3"]);
    for name in ["numbered-0", "numbered-1", "numbered-2"] {
        replica
            .wait_for(&format!("leading {name} "), 10 * SECOND)
            .await;
    }
    let api: Api<Lease> = Api::namespaced(cluster.client(Identity::Admin).await, &namespace);
    let names: Vec<String> = (api.list(&Default::default()).await.unwrap().items)
        .into_iter()
        .filter_map(|lease| lease.metadata.name)
        .collect();
    assert_eq!(names, ["numbered-0", "numbered-1", "numbered-2"]);
}

/// `--help` (and Go's `-help`, and `-h`) lists every flag and exits with status 0.
#[test]
fn help_lists_the_flags_of_each_example() {
    let common = [
        "--kubeconfig <PATH>",
        "--id <ID>",
        "--lease-lock-name <NAME",
        "--lease-lock-namespace <NAMESPACE>",
        "--lease-duration <DURATION>",
        "--renew-deadline <DURATION>",
        "--retry-period <DURATION>",
        "--help",
    ];
    let own: [&[&str]; 3] = [
        &["--work-interval <DURATION>", "--timestamps"],
        &["--health-port <PORT>"],
        &["--selector <SELECTOR>"],
    ];
    for ((example, _), own) in CLIENT_GO_EXAMPLES.into_iter().zip(own) {
        for help in ["--help", "-help", "-h"] {
            let (code, stdout, stderr) = run_to_end(example, &[help]);
            assert_eq!(code, Some(0), "{example} {help}: {stderr}");
            for flag in common.iter().chain(own) {
                assert!(
                    stdout.contains(flag),
                    "{example} {help} lacks {flag}:\n{stdout}"
                );
            }
        }
    }
}
