//! UI tests of `#[leader_only]` and `#[leader_main]` (trybuild): every `tests/ui/pass/*.rs` must
//! compile and run to success, every `tests/ui/fail/*.rs` must fail to compile with exactly the
//! errors in the `.stderr` file beside it.
//!
//! The `.stderr` snapshots belong to the toolchain pinned in `rust-toolchain.toml`: compiler
//! messages change between releases. After changing the toolchain or a message, refresh them with
//!
//! ```text
//! TRYBUILD=overwrite cargo test --test ui
//! ```
//!
//! and review every diff by eye: each error must point at the token it is about.
//!
//! trybuild runs each pass case after building it, and the pass cases use `#[leader_main]`,
//! which needs a cluster or `LEADER_STANDALONE=1` (leases in memory). This process cannot set its
//! own environment safely, so the test runs trybuild in a child process of itself that has
//! `LEADER_STANDALONE=1` (and no `LEADER_IDENTITY` or `LEADER_NAMESPACE` from the caller).

use std::process::Command;

/// Set in the child process that runs trybuild.
const CHILD: &str = "LEADER_UI_TEST_CHILD";

#[test]
fn ui() {
    if std::env::var_os(CHILD).is_some() {
        let cases = trybuild::TestCases::new();
        cases.pass("tests/ui/pass/*.rs");
        cases.compile_fail("tests/ui/fail/*.rs");
        return;
    }
    let status = Command::new(std::env::current_exe().expect("the path of this test binary"))
        .args(["ui", "--exact", "--nocapture"])
        .env(CHILD, "1")
        .env("LEADER_STANDALONE", "1")
        .env_remove("LEADER_IDENTITY")
        .env_remove("LEADER_NAMESPACE")
        .status()
        .expect("running the UI tests in a child process");
    assert!(
        status.success(),
        "the UI tests failed; trybuild's report is above"
    );
}
