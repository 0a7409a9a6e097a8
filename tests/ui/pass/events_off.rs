//! `#[leader_main(events = false)]`: no leader-election Events are recorded (the runtime needs no
//! RBAC rule for them then); everything else works as usual.

use leader::{Leadership, leader_main, leader_only};

#[leader_only(lease = "quiet")]
async fn quiet(leadership: Leadership) -> i32 {
    leadership.fencing_token()
}

#[leader_main(flavor = "current_thread", events = false)]
async fn main() -> leader::Result<()> {
    assert_eq!(quiet().await?, 0);
    Ok(())
}
