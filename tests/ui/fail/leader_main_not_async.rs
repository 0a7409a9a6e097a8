#[leader::leader_main]
fn main() {}
