//! A `Leadership` token parameter: the cancellation token and the fencing token, by any path.

use leader::{Leadership, leader_main, leader_only};

#[leader_only(lease = "ledger-writer")]
async fn write_ledger(leadership: Leadership) -> i32 {
    assert!(leadership.is_leading());
    assert!(!leadership.token().is_cancelled());
    leadership.fencing_token()
}

#[leader_only(lease = "ledger-reader")]
async fn read_ledger(l: leader::Leadership) -> String {
    l.key().to_string()
}

#[leader_main(flavor = "current_thread")]
async fn main() {
    // A fresh lease starts at fencing token 0.
    assert_eq!(write_ledger().await.unwrap(), 0);
    assert!(read_ledger().await.unwrap().ends_with("/ledger-reader"));
}
