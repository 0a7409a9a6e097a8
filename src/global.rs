//! Which runtime `#[leader_only]` functions join: the one scoped to the calling future by
//! [`with_runtime`], else the process-wide one that `#[leader_main]` starts.

use std::future::Future;
use std::sync::OnceLock;

use leader_runtime::Runtime;

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

tokio::task_local! {
    /// The runtime of the innermost [`with_runtime`] around the current future.
    static SCOPED: Runtime;
}

/// Makes `runtime` the process-wide runtime that `#[leader_only]` functions join, for programs
/// that do not use `#[leader_main]`. `#[leader_main]` calls it for you.
///
/// Tests should not install a runtime: there is one per process, and a test's runtime dies with
/// the test's tokio runtime. Give each test its own with [`with_runtime`] instead.
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

/// The process-wide runtime, if one was installed (by `#[leader_main]` or [`install_runtime`]).
pub fn installed_runtime() -> Option<&'static Runtime> {
    RUNTIME.get()
}

/// Runs `future` with `runtime` as the runtime that the `#[leader_only]` functions it calls
/// join, in place of the process-wide one. Scopes nest (the innermost wins), and the bodies of
/// leader-only functions run in the scope of the runtime that elected them, so a leader-only
/// function called from another joins the same runtime.
///
/// This is how tests run leader-only code: each test builds its runtimes over an
/// [`InMemoryLeaseStore`](crate::runtime::testing::InMemoryLeaseStore), one per simulated
/// replica, and calls the functions under test inside `with_runtime`. Tests stay independent,
/// run in parallel, and work on tokio's paused clock.
///
/// The scope belongs to the future, not to the task: a future passed to `tokio::spawn` from
/// inside it does not inherit it. Wrap what you spawn: `tokio::spawn(with_runtime(&rt, work()))`.
///
/// ```
/// use leader::runtime::{Runtime, testing::InMemoryLeaseStore};
/// use leader::{CancellationToken, leader_only};
///
/// #[leader_only(lease = "nightly-report")]
/// async fn report(_token: CancellationToken, day: u32) -> String {
///     format!("report for day {day}")
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> leader::Result<()> {
/// let runtime = Runtime::builder().store(InMemoryLeaseStore::new()).build().await?;
/// let text = leader::with_runtime(&runtime, report(7)).await?;
/// assert_eq!(text, "report for day 7");
/// runtime.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub fn with_runtime<F: Future>(
    runtime: &Runtime,
    future: F,
) -> impl Future<Output = F::Output> + use<F> {
    SCOPED.scope(runtime.clone(), future)
}

/// The runtime that a `#[leader_only]` function called here would join: the one of the
/// innermost [`with_runtime`] around the current future, else the process-wide one.
pub fn current_runtime() -> Option<Runtime> {
    SCOPED
        .try_with(Runtime::clone)
        .ok()
        .or_else(|| RUNTIME.get().cloned())
}
