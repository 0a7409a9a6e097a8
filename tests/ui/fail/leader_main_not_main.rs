#[leader::leader_main]
async fn run() {}

fn main() {
    run();
}
