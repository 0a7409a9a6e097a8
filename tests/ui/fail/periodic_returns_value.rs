use leader::{CancellationToken, leader_only};

#[leader_only(lease = "metrics-flush", every = "30s")]
async fn flush_metrics(_token: CancellationToken) -> usize {
    0
}

fn main() {
    let _ = flush_metrics(CancellationToken::new());
}
