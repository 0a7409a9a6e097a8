//! The periodic form: the body runs on every tick while leading; the call returns `Ok(())` when
//! the runtime shuts down.

use std::sync::atomic::{AtomicU32, Ordering};

use leader::{CancellationToken, leader_main, leader_only};

static TICKS: AtomicU32 = AtomicU32::new(0);

#[leader_only(lease = "metrics-flush", every = "10ms")]
async fn flush_metrics(token: CancellationToken) {
    assert!(!token.is_cancelled());
    if TICKS.fetch_add(1, Ordering::SeqCst) == 2 {
        // Three ticks are enough: shut the runtime down, which ends the periodic loop.
        leader::installed_runtime()
            .expect("installed by #[leader_main]")
            .shutdown_token()
            .cancel();
    }
}

/// `-> ()` written out is the same as no return type.
#[leader_only(lease = "cache-warm", every = "1h")]
async fn warm_cache(_token: CancellationToken) -> () {
    unreachable!("called after shutdown");
}

#[leader_main(flavor = "current_thread")]
async fn main() {
    let done: Result<(), leader::Error> = flush_metrics().await;
    done.unwrap();
    assert_eq!(TICKS.load(Ordering::SeqCst), 3);
    // Called after the runtime shut down, it does not run.
    let late = warm_cache().await;
    assert!(matches!(late, Err(leader::Error::ShutDown { .. })), "{late:?}");
}
