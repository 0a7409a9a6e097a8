//! Several leader-only functions on different leases in one binary: each lease has its own
//! election, so with several replicas the tasks spread across them.
//!
//! Run two or three replicas against a cluster (or `make control-plane`), each in a terminal:
//!
//! ```text
//! KUBECONFIG=~/.kube/config LEADER_IDENTITY=replica-1 cargo run --example many_tasks
//! ```
//!
//! Each replica prints the tasks it leads, for example `replica-1: running billing-sync` and
//! `replica-2: running report`; the tasks usually end up on different replicas. Stop a replica
//! with Ctrl+C and its tasks move to the others at once. Without a cluster,
//! `LEADER_STANDALONE=1 cargo run --example many_tasks` runs every task in this one process.

use std::time::Duration;

use leader::{CancellationToken, Leadership, leader_main, leader_only};

/// A long-running loop that holds its lease until leadership ends.
#[leader_only(lease = "billing-sync")]
async fn sync_billing(token: CancellationToken) {
    println!("{}: running billing-sync", me());
    let mut ticks = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            () = token.cancelled() => break,
            _ = ticks.tick() => println!("{}: billing-sync pass", me()),
        }
    }
    println!("{}: billing-sync stopped", me());
}

/// A periodic report: one run every 5 seconds, on whichever replica leads `report`.
#[leader_only(lease = "report", every = "5s")]
async fn report(leadership: Leadership) {
    println!(
        "{}: running report (fencing token {})",
        me(),
        leadership.fencing_token()
    );
}

/// A cleanup job with its own, shorter timings.
#[leader_only(
    lease = "cleanup",
    every = "4s",
    lease_duration = "6s",
    renew_deadline = "4s",
    retry_period = "1s"
)]
async fn cleanup(_token: CancellationToken) {
    println!("{}: running cleanup", me());
}

fn me() -> &'static str {
    leader::installed_runtime().map_or("?", |runtime| runtime.identity())
}

/// Runs `sync_billing` again in every term this replica wins, until shutdown.
async fn billing_forever() -> leader::Result<()> {
    loop {
        sync_billing().await?;
    }
}

#[leader_main]
async fn main() -> leader::Result<()> {
    tokio::try_join!(billing_forever(), report(), cleanup())?;
    Ok(())
}
