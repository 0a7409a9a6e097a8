//! `main` may return a `Result`; `?` and `return` work in both attributes' bodies.

use std::error::Error;
use std::num::ParseIntError;

use leader::{CancellationToken, leader_main, leader_only};

#[leader_only(lease = "migrations")]
async fn migrate(_token: CancellationToken, input: &'static str) -> Result<u32, ParseIntError> {
    if input.is_empty() {
        return Ok(0);
    }
    let version: u32 = input.parse()?;
    Ok(version)
}

#[leader_main]
async fn main() -> Result<(), Box<dyn Error>> {
    assert_eq!(migrate("").await??, 0);
    assert_eq!(migrate("7").await??, 7);
    assert!(migrate("seven").await?.is_err());
    if migrate("1").await?? == 1 {
        return Ok(());
    }
    Err("unreachable".into())
}
