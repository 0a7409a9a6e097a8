use leader::{CancellationToken, leader_only};

#[leader_only(lease = "metrics-flush", every = "30s")]
async fn flush_metrics(_token: CancellationToken) -> usize {
    0
}

async fn caller() -> leader::Result<()> {
    flush_metrics().await
}

fn main() {
    let _ = caller();
}
