// In a module: a crate's real `main` written this way would add rustc's own errors about `main`.
mod app {
    #[leader::leader_main]
    pub async fn main(args: Vec<String>) {
        let _ = args;
    }
}

fn main() {
    let _ = app::main;
}
