//! Each tick of the periodic form gets a clone of every parameter: the error says what is
//! required, at the parameter's type.

use std::cell::Cell;
use std::sync::Mutex;

use leader::{CancellationToken, leader_only};

/// Not `Clone`.
struct Ledger;

#[leader_only(lease = "metrics-flush", every = "30s")]
async fn flush(_token: CancellationToken, ledger: Ledger) {
    let _ = ledger;
}

#[leader_only(lease = "metrics-flush", every = "30s")]
async fn count(_token: CancellationToken, counter: std::rc::Rc<Cell<u32>>) {
    counter.set(counter.get() + 1);
}

#[leader_only(lease = "metrics-flush", every = "30s")]
async fn borrowed(_token: CancellationToken, name: &'static Mutex<String>, label: &str) {
    let _ = (name, label);
}

async fn caller() -> leader::Result<()> {
    flush(Ledger).await?;
    count(std::rc::Rc::new(Cell::new(0))).await?;
    borrowed(Box::leak(Box::new(Mutex::new(String::new()))), "x").await
}

fn main() {
    let _ = caller();
}
