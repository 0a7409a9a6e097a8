async fn work() {}

#[leader::leader_main]
fn main() {
    // The body runs in the generated async `main` all the same: no error of its own here.
    work().await;
}
