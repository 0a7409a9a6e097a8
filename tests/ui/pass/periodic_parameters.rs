//! The periodic form takes further parameters: each tick gets a clone of each, here a shared
//! counter, a configuration value and a destructured pair.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use leader::{Leadership, leader_main, leader_only};

#[derive(Clone)]
struct Settings {
    batch: u32,
}

#[leader_only(lease = "metrics-flush", every = "10ms")]
async fn flush(
    leadership: Leadership,
    flushed: Arc<AtomicU32>,
    mut settings: Settings,
    (low, high): (u32, u32),
) {
    settings.batch += 1; // a tick's clone is its own
    assert_eq!(settings.batch, 11);
    assert!(low < high);
    if flushed.fetch_add(settings.batch, Ordering::SeqCst) >= 2 * 11 {
        leader::current_runtime()
            .expect("the tick runs in the runtime's scope")
            .shutdown_token()
            .cancel();
    }
    assert!(leadership.is_leading() || leadership.token().is_cancelled());
}

#[leader_main(flavor = "current_thread")]
async fn main() -> leader::Result<()> {
    let flushed = Arc::new(AtomicU32::new(0));
    flush(Arc::clone(&flushed), Settings { batch: 10 }, (1, 2)).await?;
    assert_eq!(flushed.load(Ordering::SeqCst), 3 * 11);
    Ok(())
}
