//! What a replica says when the API server goes out of reach and comes back, at the default log
//! level: the `periodic` example (`#[leader_main]`, no subscriber of its own, so the runtime
//! prints to stderr) and the `election` example (a `tracing` subscriber at `warn`). The outage
//! is a kube-apiserver restart on a private control plane (about 12 s without an answer).

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{
    FAST_TIMINGS, Identity, PrivatePlane, Process, Server, Stream, control_plane, example_binary,
};

const SECOND: Duration = Duration::from_secs(1);
/// The leases each example follows: `election` takes several, `periodic` one.
fn leases(example: &str) -> &'static str {
    if example == "election" {
        "first,second,third"
    } else {
        "first"
    }
}
const UNREACHABLE: &str = "cannot reach the API server";
const BACK: &str = "the API server is reachable again";

/// `example` following its leases on `private`, with nothing about logging in its environment.
fn start(example: &str, private: &PrivatePlane, namespace: &str) -> Process {
    let mut command = Command::new(example_binary(example));
    command
        .arg("--kubeconfig")
        .arg(private.plane.kubeconfig(Identity::Admin))
        .args(["--id", example, "--lease-lock-namespace", namespace])
        .args(["--lease-lock-name", leases(example)])
        .args(FAST_TIMINGS)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1");
    Process::start(command)
}

/// Waits until the start-up lines `example` writes to stderr before the outage (`election` logs
/// each term it begins; `periodic`, without a subscriber, logs nothing then) have been read:
/// stdout and stderr are read by two threads, so a stderr line written before a stdout line may
/// be read after it, and would then count as said during the outage.
async fn wait_for_start_up_lines(replica: &mut Process, example: &str) {
    if example != "election" {
        return;
    }
    let terms = leases(example).split(',').count();
    let deadline = Instant::now() + 20 * SECOND;
    while replica.matching(Stream::Err, "became leader").len() < terms {
        assert!(
            Instant::now() < deadline,
            "{example}: not every term's start was logged within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_server_is_said_within_seconds_once_and_its_return_too() {
    let private = PrivatePlane::start_beside(&control_plane()).await;
    let mut replicas = Vec::new();
    for example in ["periodic", "election"] {
        let namespace = private.plane.namespace(example).await;
        let mut replica = start(example, &private, &namespace);
        for lease in leases(example).split(',') {
            let leading = format!("{example}: leading {lease} (");
            replica.wait_for(Stream::Out, &leading, 20 * SECOND).await;
        }
        wait_for_start_up_lines(&mut replica, example).await;
        replicas.push((example, replica));
    }
    let outage = Instant::now();
    private.restart(Server::ApiServer).await;
    for (example, replica) in &mut replicas {
        let said = replica
            .wait_after(outage, Stream::Err, UNREACHABLE, 20 * SECOND)
            .await;
        let back = replica
            .wait_after(said, Stream::Err, BACK, 30 * SECOND)
            .await;
        eprintln!(
            "logging: {example} said it {:?} into the outage, and that it was back {:?} in",
            said - outage,
            back - outage
        );
        // Within seconds: the first failed renew comes within a retry period (1 s here).
        assert!(said - outage < 5 * SECOND, "{example}: {:?}", said - outage);
        // Once for the process, not per lease nor per retry (a retry a second for 10 s), and
        // no line per failed request from anyone: what else is said meanwhile is at most three
        // lines per lease (its term ends, the holder is seen again, a term begins).
        let during = replica.since(outage, Stream::Err);
        let count = |text: &str| during.iter().filter(|line| line.contains(text)).count();
        assert_eq!(count(UNREACHABLE), 1, "{example}: {during:#?}");
        assert_eq!(count(BACK), 1, "{example}: {during:#?}");
        let leases = leases(example).split(',').count();
        assert!(during.len() <= 2 + 3 * leases, "{example}: {during:#?}");
        replica.signal("TERM");
        assert!(replica.exited_successfully(10 * SECOND).await, "{example}");
    }
}
