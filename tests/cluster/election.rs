//! The election across real processes on a real API server: one leader among many, graceful and
//! crash failover, many leases per process, fencing tokens, hand edits, and RBAC refusals.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher;
use leader::runtime::{ElectionConfig, LeaseStatus, Runtime};

use crate::support::{Candidate, ControlPlane, FAST_TIMINGS, Identity, control_plane};

const SECOND: Duration = Duration::from_secs(1);

fn names(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

async fn holder(cluster: &ControlPlane, namespace: &str, name: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(cluster.client(Identity::Admin).await, namespace);
    let lease = leases.get_opt(name).await.unwrap()?;
    lease
        .spec?
        .holder_identity
        .filter(|holder| !holder.is_empty())
}

/// Starts `count` candidates and returns them with the index of the one that leads `lease`.
async fn start_fleet(
    cluster: &ControlPlane,
    namespace: &str,
    lease: &str,
    count: usize,
    options: &[&str],
) -> (Vec<Candidate>, usize) {
    let mut fleet: Vec<Candidate> = (1..=count)
        .map(|i| {
            Candidate::start(
                cluster,
                &format!("instance-{i}"),
                namespace,
                &[lease.to_owned()],
                options,
            )
        })
        .collect();
    let leader_id = loop {
        if let Some(holder) = holder(cluster, namespace, lease).await {
            break holder;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let leader = fleet
        .iter()
        .position(|c| c.id == leader_id)
        .expect("the holder is one of ours");
    fleet[leader]
        .wait_for(&format!("leading {lease}"), 10 * SECOND)
        .await;
    (fleet, leader)
}

/// When the first of two followers printed that it leads `lock`.
async fn first_to_lead(followers: &mut [Candidate], limit: Duration) -> Instant {
    let [first, second] = followers else {
        panic!("expected two followers")
    };
    tokio::select! {
        at = first.wait_for("leading lock", limit) => at,
        at = second.wait_for("leading lock", limit) => at,
    }
}

#[tokio::test]
async fn three_processes_elect_exactly_one_leader_and_the_others_report_it() {
    let cluster = control_plane();
    let namespace = cluster.namespace("three").await;
    let (mut fleet, leader) = start_fleet(&cluster, &namespace, "lock", 3, &FAST_TIMINGS).await;
    let leader_id = fleet[leader].id.clone();
    for (i, candidate) in fleet.iter_mut().enumerate() {
        if i != leader {
            candidate
                .wait_for(&format!("new leader of lock: {leader_id}"), 10 * SECOND)
                .await;
        }
    }
    // Several renew periods later, still exactly one.
    tokio::time::sleep(3 * SECOND).await;
    for (i, candidate) in fleet.iter_mut().enumerate() {
        assert_eq!(
            candidate.printed("leading lock"),
            i == leader,
            "{}: {:?}",
            candidate.id,
            candidate.seen
        );
    }
    assert_eq!(
        holder(&cluster, &namespace, "lock").await.as_deref(),
        Some(leader_id.as_str())
    );
}

#[tokio::test]
async fn a_graceful_stop_hands_over_at_once() {
    let cluster = control_plane();
    let namespace = cluster.namespace("graceful").await;
    // Default timings (15 s lease): a handover well under a second can only come from the release.
    let (mut fleet, leader) = start_fleet(&cluster, &namespace, "lock", 3, &[]).await;
    tokio::time::sleep(SECOND).await;
    let stopped_at = Instant::now();
    fleet[leader].signal("TERM");
    // Keep the old leader's handle alive: dropping it would SIGKILL the process.
    let _stopping = fleet.remove(leader);
    let mut followers = fleet;
    let taken_at = first_to_lead(&mut followers, 10 * SECOND).await;
    let handover = taken_at - stopped_at;
    eprintln!("graceful handover took {handover:?}");
    assert!(handover < SECOND, "handover took {handover:?}");
}

#[tokio::test]
async fn after_sigkill_another_leads_once_the_lease_expires_and_not_before() {
    let cluster = control_plane();
    let namespace = cluster.namespace("crash").await;
    let (mut fleet, leader) = start_fleet(&cluster, &namespace, "lock", 3, &FAST_TIMINGS).await;
    let leader_id = fleet[leader].id.clone();

    // Track, on this machine's clock, when the leader's record last changed.
    let leases: Api<Lease> = Api::namespaced(cluster.client(Identity::Admin).await, &namespace);
    let config = watcher::Config::default().fields("metadata.name=lock");
    let (changes, mut last_change) = tokio::sync::watch::channel((Instant::now(), None::<String>));
    let tracker = tokio::spawn(async move {
        let mut events = watcher::watcher(leases, config).boxed();
        while let Some(event) = events.try_next().await.unwrap() {
            if let watcher::Event::Apply(lease) | watcher::Event::InitApply(lease) = event {
                let holder = lease.spec.and_then(|spec| spec.holder_identity);
                changes.send_replace((Instant::now(), holder));
            }
        }
    });
    tokio::time::sleep(3 * SECOND).await;

    fleet[leader].signal("KILL");
    let killed_at = Instant::now();
    assert!(!fleet[leader].wait(), "killed");
    let (last_renew_seen, _) = *last_change.borrow_and_update();
    // Keep the old leader's handle alive: dropping it would SIGKILL the process.
    let _stopping = fleet.remove(leader);
    let mut followers = fleet;
    let taken_at = first_to_lead(&mut followers, 20 * SECOND).await;
    tracker.abort();
    let lease_duration = Duration::from_secs(4);
    let retry_period = SECOND;
    let after_kill = taken_at - killed_at;
    let after_last_renew = taken_at - last_renew_seen;
    eprintln!(
        "{leader_id} killed; taken over {after_kill:?} after the kill, {after_last_renew:?} after its last renew"
    );
    assert!(
        after_kill <= lease_duration + retry_period,
        "took {after_kill:?} after the kill"
    );
    // Candidates see the last renew at about the moment this test does; allow for the two watches
    // delivering it a few milliseconds apart.
    assert!(
        after_last_renew + Duration::from_millis(100) >= lease_duration,
        "taken {after_last_renew:?} after the last renew"
    );
}

#[tokio::test]
async fn fifty_leases_in_each_of_three_processes_have_one_leader_each() {
    let cluster = control_plane();
    let namespace = cluster.namespace("fifty").await;
    let leases = names("task", 50);
    let mut fleet: Vec<Candidate> = (1..=3)
        .map(|i| {
            Candidate::start(
                &cluster,
                &format!("instance-{i}"),
                &namespace,
                &leases,
                &FAST_TIMINGS,
            )
        })
        .collect();
    let api: Api<Lease> = Api::namespaced(cluster.client(Identity::Admin).await, &namespace);
    let deadline = Instant::now() + 30 * SECOND;
    let holders = loop {
        let holders: BTreeMap<String, String> = api
            .list(&Default::default())
            .await
            .unwrap()
            .into_iter()
            .filter_map(|lease| {
                Some((
                    lease.metadata.name?,
                    lease.spec?.holder_identity.filter(|h| !h.is_empty())?,
                ))
            })
            .collect();
        if holders.len() == leases.len() || Instant::now() > deadline {
            break holders;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(holders.len(), 50, "leases with a holder: {holders:?}");
    tokio::time::sleep(2 * SECOND).await;
    for lease in &leases {
        let claimants: BTreeSet<&str> = fleet
            .iter_mut()
            .filter_map(|candidate| {
                candidate
                    .printed(&format!("leading {lease} "))
                    .then_some(candidate.id.as_str())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .collect();
        assert_eq!(claimants.len(), 1, "{lease} claimed by {claimants:?}");
        assert!(
            claimants.contains(holders[lease].as_str()),
            "{lease}: API says {}, output says {claimants:?}",
            holders[lease]
        );
    }
    let per_process: BTreeMap<&str, usize> =
        holders
            .values()
            .fold(BTreeMap::new(), |mut counts, holder| {
                *counts.entry(holder.as_str()).or_default() += 1;
                counts
            });
    eprintln!("leases per process: {per_process:?}");
}

#[tokio::test]
async fn fencing_tokens_strictly_increase_over_twenty_forced_handovers() {
    let cluster = control_plane();
    let namespace = cluster.namespace("fencing").await;
    let lease = vec!["lock".to_owned()];
    let mut current = Candidate::start(&cluster, "gen-0", &namespace, &lease, &FAST_TIMINGS);
    current.wait_for("leading lock", 10 * SECOND).await;
    let mut tokens = vec![fencing_token(&mut current)];
    for generation in 1..=20 {
        let mut next = Candidate::start(
            &cluster,
            &format!("gen-{generation}"),
            &namespace,
            &lease,
            &FAST_TIMINGS,
        );
        next.wait_for("new leader of lock", 10 * SECOND).await;
        current.signal("TERM");
        assert!(current.wait(), "graceful exit");
        next.wait_for("leading lock", 10 * SECOND).await;
        tokens.push(fencing_token(&mut next));
        current = next;
    }
    assert!(
        tokens.windows(2).all(|pair| pair[0] < pair[1]),
        "{tokens:?}"
    );
}

fn fencing_token(candidate: &mut Candidate) -> i32 {
    candidate.drain();
    let line = candidate
        .seen
        .iter()
        .rev()
        .find(|(_, line)| line.contains("fencing token"))
        .expect("a leading line");
    let token = line
        .1
        .rsplit("fencing token ")
        .next()
        .unwrap()
        .trim_end_matches(')');
    token.parse().unwrap()
}

#[tokio::test]
async fn a_hand_edited_holder_or_a_deleted_lease_ends_leadership_at_once() {
    let cluster = control_plane();
    let namespace = cluster.namespace("edited").await;
    let api: Api<Lease> = Api::namespaced(cluster.client(Identity::Admin).await, &namespace);
    let mut candidate = Candidate::start(
        &cluster,
        "solo",
        &namespace,
        &["lock".to_owned()],
        &FAST_TIMINGS,
    );
    candidate.wait_for("leading lock", 10 * SECOND).await;

    // As `kubectl edit` would: hand the lease to someone else.
    let mut lease = api.get("lock").await.unwrap();
    lease.spec.as_mut().unwrap().holder_identity = Some("intruder".into());
    let edited_at = Instant::now();
    api.replace("lock", &PostParams::default(), &lease)
        .await
        .unwrap();
    let stopped_at = candidate
        .wait_for("stopped leading lock", 10 * SECOND)
        .await;
    assert!(
        stopped_at - edited_at < SECOND,
        "stopped {:?} after the edit",
        stopped_at - edited_at
    );
    candidate
        .wait_for("new leader of lock: intruder", 10 * SECOND)
        .await;

    // The intruder never renews: solo takes over after the lease expires, then loses it to a delete.
    candidate.seen.clear();
    candidate.wait_for("leading lock", 20 * SECOND).await;
    let deleted_at = Instant::now();
    api.delete("lock", &DeleteParams::default()).await.unwrap();
    let stopped_at = candidate
        .wait_for("stopped leading lock", 10 * SECOND)
        .await;
    assert!(
        stopped_at - deleted_at < SECOND,
        "stopped {:?} after the delete",
        stopped_at - deleted_at
    );
}

#[tokio::test]
async fn an_identity_without_rights_sees_the_rbac_rule_in_status_and_health() {
    let cluster = control_plane();
    let namespace = cluster.namespace("rbac").await;
    let runtime = Runtime::builder()
        .client(cluster.client(Identity::Unprivileged).await)
        .namespace(&namespace)
        .config(ElectionConfig::default())
        .build()
        .await
        .unwrap();
    let election = runtime.election("lock").unwrap();
    let waiting = tokio::spawn({
        let election = election.clone();
        async move { election.lead(|_| async {}).await }
    });
    let mut status = election.status();
    // Both its list (the feed) and its own requests are refused; each says why.
    let refused = |s: &LeaseStatus| s.permission_denied && s.last_error.is_some();
    let refused = status.wait_for(|s| refused(s) && s.watch_error.is_some());
    let status = tokio::time::timeout(20 * SECOND, refused)
        .await
        .unwrap()
        .unwrap()
        .clone();
    for (message, verb) in [
        (status.last_error.unwrap(), "get"),
        (status.watch_error.unwrap(), "list"),
    ] {
        for expected in [
            "`leader-test-unprivileged`",
            &format!("may not {verb} leases.coordination.k8s.io"),
            &format!("namespace `{namespace}`"),
            "verbs: [\"get\", \"list\", \"watch\", \"create\", \"update\"]",
        ] {
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        }
    }
    let health = election
        .health_check(Duration::ZERO)
        .unwrap_err()
        .to_string();
    assert!(health.contains("leader-test-unprivileged"), "{health}");
    runtime.shutdown().await;
    assert!(waiting.await.unwrap().is_err());
}
