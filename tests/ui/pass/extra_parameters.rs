//! Parameters other than the token are kept and moved into the work, wherever the token is.

use leader::{CancellationToken, leader_main, leader_only};

#[leader_only(lease = "reports")]
async fn render(
    token: CancellationToken,
    title: String,
    (width, height): (u32, u32),
    mut pages: Vec<u32>,
) -> String {
    assert!(!token.is_cancelled());
    pages.push(width * height);
    format!("{title}: {pages:?}")
}

#[leader_only(lease = "reports")]
async fn add(first: u32, _token: CancellationToken, second: &'static str) -> usize {
    first as usize + second.len()
}

#[leader_main]
async fn main() {
    let report = render("sizes".to_owned(), (2, 3), vec![1]).await.unwrap();
    assert_eq!(report, "sizes: [1, 6]");
    assert_eq!(add(1, "abc").await.unwrap(), 4);
}
