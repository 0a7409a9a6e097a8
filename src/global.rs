//! The process-wide runtime that `#[leader_main]` starts and `#[leader_only]` functions use.

use std::sync::OnceLock;

use leader_runtime::Runtime;

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// Makes `runtime` the process-wide runtime that `#[leader_only]` functions join, for programs
/// that do not use `#[leader_main]` (or tests that use an in-memory store). `#[leader_main]`
/// calls it for you.
///
/// # Errors
/// Gives `runtime` back if a runtime was installed already: there is one per process.
///
/// ```
/// use leader::runtime::{Runtime, testing::InMemoryLeaseStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> leader::Result<()> {
/// let runtime = Runtime::builder().store(InMemoryLeaseStore::new()).build().await?;
/// assert!(leader::install_runtime(runtime).is_ok());
/// # Ok(())
/// # }
/// ```
pub fn install_runtime(runtime: Runtime) -> Result<(), Runtime> {
    RUNTIME.set(runtime)
}

/// The process-wide runtime, if one was installed.
pub fn installed_runtime() -> Option<&'static Runtime> {
    RUNTIME.get()
}
