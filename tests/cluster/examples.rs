//! The attribute-based examples as users run them: three replicas of the compiled
//! `examples/periodic.rs`, checked through their output and the Lease object.

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
