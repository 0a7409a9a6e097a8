use leader::{CancellationToken, leader_only};

#[leader_only(lease = "metrics-flush", every = "30s")]
async fn flush_metrics(_token: CancellationToken, batch: usize) {
    let _ = batch;
}

fn main() {
    let _ = flush_metrics(CancellationToken::new(), 1);
}
