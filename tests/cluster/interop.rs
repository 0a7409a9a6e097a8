//! Mixed fleets: our Rust candidates (`examples/election.rs`) and client-go candidates
//! (`tests/control-plane/peer`, on `k8s.io/client-go/tools/leaderelection`) on one Lease.
//! Leadership is forced back and forth between the two implementations, by graceful stop and by
//! SIGKILL, and the candidates' own output must show one leader at a time with fencing tokens
//! that only go up.
//!
//! The interval analysis is in `leadership.rs`, shared with the fault campaign.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;

use crate::leadership::{End, Transcript, assert_exclusive_leadership, handover_gaps};
use crate::support::{
    Candidate, ControlPlane, FAST_TIMINGS, Identity, Implementation, control_plane,
};

const SECOND: Duration = Duration::from_secs(1);
const MILLISECOND: Duration = Duration::from_millis(1);
const LEASE: &str = "lock";
/// The lease duration in [`FAST_TIMINGS`].
const LEASE_DURATION: Duration = Duration::from_secs(4);

// ---------------------------------------------------------------------------------------------
// A mixed fleet on one lease.

/// How a handover is forced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Stop {
    /// SIGTERM: the leader releases the lease on its way out.
    Graceful,
    /// SIGKILL: the others take over once the lease expires.
    Kill,
}

struct Member {
    candidate: Candidate,
    live: bool,
    killed_at: Option<Instant>,
}

struct Fleet<'a> {
    cluster: &'a ControlPlane,
    namespace: String,
    leases: Api<Lease>,
    members: Vec<Member>,
    started: BTreeMap<Implementation, usize>,
}

impl<'a> Fleet<'a> {
    async fn new(cluster: &'a ControlPlane, prefix: &str) -> Fleet<'a> {
        let namespace = cluster.namespace(prefix).await;
        let leases = Api::namespaced(cluster.client(Identity::Admin).await, &namespace);
        Fleet {
            cluster,
            namespace,
            leases,
            members: Vec::new(),
            started: BTreeMap::new(),
        }
    }

    fn start(&mut self, implementation: Implementation) -> usize {
        let count = self.started.entry(implementation).or_default();
        *count += 1;
        let id = format!("{}-{count}", implementation.to_string().to_lowercase());
        let candidate = Candidate::start_as(
            implementation,
            self.cluster,
            &id,
            &self.namespace,
            &[LEASE.to_owned()],
            &FAST_TIMINGS,
        );
        self.members.push(Member {
            candidate,
            live: true,
            killed_at: None,
        });
        self.members.len() - 1
    }

    fn id(&self, member: usize) -> &str {
        &self.members[member].candidate.id
    }

    fn implementation(&self, member: usize) -> Implementation {
        self.members[member].candidate.implementation
    }

    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.members.len()).filter(|&i| self.members[i].live)
    }

    /// The lease's `renewTime`: on this machine, where every candidate runs, a reading of the
    /// same clock as [`SystemTime::now`].
    async fn renew_time(&self) -> SystemTime {
        let lease = self.leases.get(LEASE).await.unwrap();
        let renewed = lease.spec.and_then(|spec| spec.renew_time);
        SystemTime::from(renewed.expect("a held lease has a renewTime").0)
    }

    async fn holder(&self) -> Option<String> {
        let lease = self.leases.get_opt(LEASE).await.unwrap()?;
        lease
            .spec?
            .holder_identity
            .filter(|holder| !holder.is_empty())
    }

    /// Waits until one of `members` prints that it leads, and returns it.
    async fn first_to_lead(&mut self, members: &[usize], limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        let leading = format!(": leading {LEASE} (");
        loop {
            for &member in members {
                if self.members[member].candidate.printed(&leading) {
                    return member;
                }
            }
            if Instant::now() > deadline {
                let output: Vec<_> = members
                    .iter()
                    .map(|&m| {
                        (
                            self.id(m).to_owned(),
                            self.members[m].candidate.seen.clone(),
                        )
                    })
                    .collect();
                panic!("none of them led within {limit:?}: {output:#?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `member` reports `leader` as the new leader.
    async fn await_follower(&mut self, member: usize, leader: &str) {
        self.members[member]
            .candidate
            .wait_for(&format!("new leader of {LEASE}: {leader}"), 10 * SECOND)
            .await;
    }

    /// Checks with the API server that `member` holds the lease.
    async fn assert_holder(&self, member: usize) {
        assert_eq!(
            self.holder().await.as_deref(),
            Some(self.id(member)),
            "{} printed that it leads, but the Lease names someone else",
            self.id(member)
        );
    }

    /// Stops `member` and reads the rest of its output.
    async fn stop(&mut self, member: usize, how: Stop) {
        let entry = &mut self.members[member];
        match how {
            Stop::Graceful => {
                entry.candidate.signal("TERM");
                assert!(entry.candidate.wait(), "{} exits 0", entry.candidate.id);
            }
            Stop::Kill => {
                entry.candidate.signal("KILL");
                entry.killed_at = Some(Instant::now());
                assert!(!entry.candidate.wait(), "{} killed", entry.candidate.id);
            }
        }
        entry.live = false;
        entry.candidate.read_to_end(5 * SECOND).await;
        if how == Stop::Graceful {
            let id = entry.candidate.id.clone();
            assert!(
                entry.candidate.printed(&format!("{id}: released")),
                "{id} exited without `released`: {:?}",
                entry.candidate.seen
            );
        }
    }

    fn transcripts(&self) -> Vec<Transcript<'_>> {
        self.members
            .iter()
            .map(|member| Transcript {
                id: &member.candidate.id,
                implementation: member.candidate.implementation,
                lines: &member.candidate.seen,
                killed_at: member.killed_at,
                paused_at: None,
            })
            .collect()
    }
}

fn other(implementation: Implementation) -> Implementation {
    match implementation {
        Implementation::Rust => Implementation::Go,
        Implementation::Go => Implementation::Rust,
    }
}

/// Starts `rust` Rust and `go` Go candidates on one lease, then forces handovers until leadership
/// has moved Rust→Go and Go→Rust both by graceful stop and by SIGKILL, replacing every stopped
/// process with one of the same implementation. Checks the holder with the API after each
/// handover, and at the end that no two leaderships overlapped and fencing tokens increased.
async fn mixed_fleet(prefix: &str, rust: usize, go: usize) {
    const MAX_HANDOVERS: usize = 16;
    let cluster = control_plane();
    let base = Instant::now();
    let mut fleet = Fleet::new(&cluster, prefix).await;
    // Interleave the starts, Go first: the first leader is usually a client-go candidate that
    // created the Lease, so Rust candidates meet a record written by client-go from the start.
    let mut queue: Vec<Implementation> = Vec::new();
    for i in 0..rust.max(go) {
        if i < go {
            queue.push(Implementation::Go);
        }
        if i < rust {
            queue.push(Implementation::Rust);
        }
    }
    for implementation in queue {
        fleet.start(implementation);
    }
    let everyone: Vec<usize> = fleet.live().collect();
    let mut leader = fleet.first_to_lead(&everyone, 20 * SECOND).await;
    fleet.assert_holder(leader).await;
    let leader_id = fleet.id(leader).to_owned();
    for member in everyone.into_iter().filter(|&m| m != leader) {
        fleet.await_follower(member, &leader_id).await;
    }

    let wanted: BTreeSet<(Implementation, Implementation, Stop)> = [
        (Implementation::Rust, Implementation::Go, Stop::Graceful),
        (Implementation::Rust, Implementation::Go, Stop::Kill),
        (Implementation::Go, Implementation::Rust, Stop::Graceful),
        (Implementation::Go, Implementation::Rust, Stop::Kill),
    ]
    .into();
    let mut done = BTreeSet::new();
    let mut leaders = vec![leader];
    for handover in 1..=MAX_HANDOVERS {
        if done.is_superset(&wanted) {
            break;
        }
        let from = fleet.implementation(leader);
        let to = other(from);
        let how = [Stop::Graceful, Stop::Kill]
            .into_iter()
            .find(|&how| !done.contains(&(from, to, how)))
            .unwrap_or(Stop::Graceful);
        // Steer: leave only candidates of the other implementation to take over.
        let mut replace = vec![from];
        let same: Vec<usize> = fleet
            .live()
            .filter(|&m| m != leader && fleet.implementation(m) == from)
            .collect();
        for member in same {
            fleet.stop(member, Stop::Graceful).await;
            replace.push(from);
        }
        let followers: Vec<usize> = fleet.live().filter(|&m| m != leader).collect();
        assert!(!followers.is_empty(), "nobody left to take over");
        let stopping = fleet.id(leader).to_owned();
        let mut last_renew = None;
        if how == Stop::Kill {
            // Let the leader renew a few times first: the followers must follow its renews,
            // not only its acquisition, to wait out the lease from the right moment.
            tokio::time::sleep(2500 * MILLISECOND).await;
            last_renew = Some(fleet.renew_time().await);
        }
        let (stopped_at, stopped_at_wall) = (Instant::now(), SystemTime::now());
        fleet.stop(leader, how).await;
        let limit = match how {
            Stop::Graceful => 10 * SECOND,
            Stop::Kill => 20 * SECOND,
        };
        let next = fleet.first_to_lead(&followers, limit).await;
        fleet.assert_holder(next).await;
        let next_id = fleet.id(next).to_owned();
        let leading = format!(": leading {LEASE} (");
        let led_at = fleet.members[next]
            .candidate
            .wait_for(&leading, SECOND)
            .await;
        let mut note = String::new();
        if let Some(last_renew) = last_renew {
            // A renew between the read and the kill only makes this look longer.
            let led_at_wall = stopped_at_wall + (led_at - stopped_at);
            let after_renew = led_at_wall.duration_since(last_renew).unwrap_or_default();
            note = format!(", {after_renew:?} after the last renew it saw");
            assert!(
                after_renew + 100 * MILLISECOND >= LEASE_DURATION,
                "{next_id} took over {after_renew:?} after {stopping}'s last renew, before the \
                 lease expired"
            );
        }
        eprintln!(
            "handover {handover}: {stopping} ({from}, {how:?}) -> {next_id} ({to}) {:?} later{note}",
            led_at - stopped_at
        );
        assert_eq!(fleet.implementation(next), to);
        done.insert((from, to, how));
        leaders.push(next);
        leader = next;
        let replacements: Vec<usize> = replace.into_iter().map(|i| fleet.start(i)).collect();
        for member in replacements {
            fleet.await_follower(member, &next_id).await;
        }
    }
    assert!(
        done.is_superset(&wanted),
        "after {MAX_HANDOVERS} handovers, still missing {:?}",
        wanted.difference(&done).collect::<Vec<_>>()
    );

    // Stop everyone gracefully, the leader last so nobody takes over from it; its interval then
    // ends with `stopped leading`.
    let followers: Vec<usize> = fleet.live().filter(|&m| m != leader).collect();
    for member in followers {
        fleet.stop(member, Stop::Graceful).await;
    }
    fleet.stop(leader, Stop::Graceful).await;

    let transcripts = fleet.transcripts();
    let intervals = assert_exclusive_leadership(LEASE, &transcripts, base);
    let sequence: Vec<&str> = intervals.iter().map(|i| i.id.as_str()).collect();
    let expected: Vec<&str> = leaders.iter().map(|&m| fleet.id(m)).collect();
    assert_eq!(
        sequence, expected,
        "leadership changed hands other than by the forced handovers"
    );
    let mut gaps: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
    for (pair, gap) in intervals.windows(2).zip(handover_gaps(&intervals)) {
        let how = match pair[0].end {
            End::Stopped(_) => "graceful",
            End::Killed(_) => "SIGKILL",
            End::Paused(_) => unreachable!("nobody is paused here"),
            End::Open => unreachable!("an open interval overlaps the next one"),
        };
        let kind = format!(
            "{} -> {} ({how})",
            pair[0].implementation, pair[1].implementation
        );
        gaps.entry(kind).or_default().push(gap);
    }
    let tokens: Vec<i64> = intervals.iter().map(|i| i.fencing_token).collect();
    eprintln!(
        "{prefix}: {} leaders, fencing tokens {tokens:?}",
        intervals.len()
    );
    for (kind, gaps) in &gaps {
        eprintln!("{prefix}: handover gaps {kind}: {gaps:?}");
    }
}

#[tokio::test]
async fn two_rust_and_one_go_candidates_never_both_lead() {
    mixed_fleet("interop-2r1g", 2, 1).await;
}

#[tokio::test]
async fn one_rust_and_two_go_candidates_never_both_lead() {
    mixed_fleet("interop-1r2g", 1, 2).await;
}
