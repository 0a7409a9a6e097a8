//! What the attribute examples print about the election, shared by `examples/periodic.rs` and
//! `examples/controller.rs` (`#[path = "support/report.rs"] mod report;`): the lines client-go's
//! example prints from its callbacks, which `tests/cluster/` reads.

/// Prints when this replica starts and stops leading, and every new leader it sees, as
/// client-go's OnStartedLeading, OnStoppedLeading and OnNewLeader callbacks do.
pub(crate) async fn leadership(election: leader::runtime::Election, me: String) {
    let lease = election.key().name.clone();
    let mut status = election.status();
    let (mut holder, mut leading) = (None, false);
    loop {
        let now = status.borrow_and_update().clone();
        if now.is_leader != leading {
            leading = now.is_leader;
            if leading {
                println!(
                    "{me}: leading {lease} (fencing token {})",
                    now.fencing_token.unwrap_or_default()
                );
            } else {
                println!("{me}: stopped leading {lease}");
            }
        }
        if now.holder != holder {
            holder = now.holder;
            if let Some(holder) = holder.as_deref().filter(|holder| *holder != me) {
                println!("{me}: new leader of {lease}: {holder}");
            }
        }
        if status.changed().await.is_err() {
            return;
        }
    }
}
