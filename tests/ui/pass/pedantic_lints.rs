//! The expansions keep strict lints quiet: rustc's here (trybuild does not run clippy);
//! `tests/attributes.rs` has the same attributes under `clippy::pedantic`, which
//! `cargo clippy --all-targets` checks.

#![deny(unused_qualifications, warnings)]
#![deny(clippy::pedantic)]

use leader::{CancellationToken, Leadership, leader_main, leader_only};

/// A documented public one-shot function.
///
/// # Errors
/// Those of `#[leader_only]`.
#[leader_only(lease = "pedantic-once", lease_duration = "20s")]
pub async fn once(token: CancellationToken, count: u32) -> Result<u32, String> {
    if token.is_cancelled() {
        return Err("lost".to_owned());
    }
    Ok(count)
}

/// A documented public periodic function.
///
/// # Errors
/// Those of `#[leader_only]`.
#[leader_only(lease = "pedantic-ticks", every = "1h", namespace = "jobs")]
pub async fn ticks(leadership: Leadership) {
    assert!(leadership.is_leading());
    leader::installed_runtime().unwrap().shutdown_token().cancel();
}

#[leader_main(flavor = "current_thread", namespace = "jobs", identity = "pedantic")]
async fn main() -> Result<(), leader::Error> {
    assert_eq!(once(3).await?, Ok(3));
    ticks().await
}
