//! The `#[leader_only]` and `#[leader_main]` attributes. Use them through the `leader` crate,
//! which re-exports them together with the runtime they expand to.
//!
//! Each attribute goes through three stages: `attr` parses its arguments and the function,
//! `valid` checks them into a final configuration (collecting every error), and `expand`
//! generates the code. Errors come out as `compile_error!`s after the function: the generated
//! one if only the attribute's arguments are wrong (so that callers see no errors of their own),
//! else the function unchanged (so that the rest of the crate still type-checks).

mod attr;
mod expand;
mod valid;

use proc_macro::TokenStream;

/// Runs an `async fn` only on the replica that leads a Kubernetes Lease.
///
/// ```
/// use leader::{CancellationToken, leader_only};
///
/// /// Sends the day's invoices; only one replica may do it at a time.
/// #[leader_only(lease = "billing-sync")]
/// async fn send_invoices(token: CancellationToken, batch: Vec<u32>) -> usize {
///     let mut sent = 0;
///     for _invoice in batch {
///         if token.is_cancelled() {
///             break; // leadership lost: stop before another replica starts
///         }
///         sent += 1;
///     }
///     sent
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> leader::Result<()> {
/// // `#[leader_main]` starts the process-wide runtime; here, one with an in-memory store.
/// use leader::runtime::{Runtime, testing::InMemoryLeaseStore};
/// let runtime = Runtime::builder().store(InMemoryLeaseStore::new()).build().await?;
/// leader::install_runtime(runtime).ok();
///
/// // The token parameter is gone: the election supplies it. The result is wrapped in `Ok`.
/// let sent: usize = send_invoices(vec![1, 2, 3]).await?;
/// assert_eq!(sent, 3);
/// # Ok(())
/// # }
/// ```
///
/// # The function
///
/// An `async fn`, not generic, without `self`, with exactly one *token parameter*: a parameter
/// of type `CancellationToken` or `Leadership` (matched by the last segment of the type's
/// path, so `leader::CancellationToken` works too), taken by value. `CancellationToken` fires
/// when leadership ends; `Leadership` has that token too, and the lease's fencing token.
///
/// The attribute removes the token parameter and makes the function return
/// `Result<T, leader::Error>`, where `T` is what the body returns. Its attributes, doc comments,
/// visibility, name and other parameters stay as written.
///
/// # Calling it
///
/// Each call joins the election for the lease in the runtime it finds: the one that
/// `leader::with_runtime` scopes to the calling future (how tests run leader-only code), else the
/// process-wide one (started by [`#[leader_main]`](macro@leader_main) or installed with
/// `leader::install_runtime`). It waits until this replica leads the lease, runs the body with
/// the token, and returns what the body returns, in `Ok`. The body runs in the scope of that
/// runtime, so leader-only functions it calls join the same one.
///
/// - The body runs once per call, in one leadership term. To run again in a later term, call
///   the function again (in a loop, for a worker that should run whenever this replica leads).
/// - `return` and `?` in the body work as in any `async fn` and decide the value in `Ok`.
/// - Other parameters are moved into the work, which runs as a task of the runtime: they, and the
///   body's future, must be `Send + 'static`.
/// - When leadership ends (the lease could not be renewed within the renew deadline, another
///   replica took it, it was deleted, or the runtime shuts down), the token fires. The body must
///   then return within the hard-stop grace, `(lease_duration - renew_deadline) / 2` (2.5 s with
///   the default timings): after that it is dropped, before any other replica can take over,
///   and the call returns `Error::HardStopped`.
/// - The replica campaigns only while some call on the lease waits or runs. When the last one
///   returns, the lease is released so that another replica can take over at once.
/// - Functions on the same lease (and namespace) share one election: they run in the same terms
///   and must use the same timings (`Error::ConflictingSettings` otherwise).
/// - Dropping the call's future fires the token.
///
/// # Errors
///
/// - `Error::NotStarted`: no runtime is scoped to the call, and none was started or installed
///   in this process.
/// - `Error::ShutDown`: the runtime shut down before this replica led the lease (or before the
///   call); the body did not run.
/// - `Error::HardStopped`, `Error::WorkPanicked`: the body outlived the hard-stop grace, or
///   panicked.
/// - `Error::InvalidName`, `Error::InvalidConfig`, `Error::ConflictingSettings`: the
///   runtime's namespace or the lease's settings cannot be used.
///
/// # The periodic form: `every`
///
/// With `every = "30s"`, calling the function runs the body on every tick while this replica
/// leads: the first tick as soon as it becomes leader, then one per period, each with the token
/// of the current term. Runs never overlap: when a run overruns its period, the next one starts
/// as soon as it returns, and the ticks it missed are skipped (`MissedTickBehavior::Skip`: the
/// schedule continues at the next multiple of the period). When leadership ends, the token
/// fires, the replica campaigns again, and ticks resume when it leads again. The call returns
/// `Ok(())` when the runtime shuts down; `Error::NotStarted`, `Error::ShutDown` (called after
/// shutdown) or a settings error at once.
///
/// The periodic form returns nothing. Besides its token it may take parameters, such as the
/// API client or a connection pool it works with: each tick gets a clone of each, so they must
/// be `Clone + Send + Sync + 'static` (share state through an `Arc`; the compiler says so at the
/// parameter otherwise).
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use leader::{Leadership, leader_only};
///
/// #[leader_only(lease = "metrics-flush", every = "10ms")]
/// async fn flush_metrics(leadership: Leadership, flushes: Arc<AtomicU32>) {
///     let n = flushes.fetch_add(1, Ordering::SeqCst);
///     println!("flush {n} as leader of term {}", leadership.fencing_token());
///     if n == 2 {
///         // Stop after three flushes; a program stops the runtime on SIGTERM instead.
///         leader::current_runtime().unwrap().shutdown_token().cancel();
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> leader::Result<()> {
/// # use leader::runtime::{Runtime, testing::InMemoryLeaseStore};
/// # let runtime = Runtime::builder().store(InMemoryLeaseStore::new()).build().await?;
/// let flushes = Arc::new(AtomicU32::new(0));
/// // Returns when the runtime shuts down.
/// leader::with_runtime(&runtime, flush_metrics(Arc::clone(&flushes))).await?;
/// assert_eq!(flushes.load(Ordering::SeqCst), 3);
/// # Ok(())
/// # }
/// ```
///
/// # Arguments
///
/// | argument | meaning |
/// | --- | --- |
/// | `lease = "name"` | Required. The Lease object: a DNS-1123 subdomain (at most 253 characters of lowercase letters, digits, `-` and `.`, each `.`-separated part starting and ending with a letter or digit). |
/// | `namespace = "ns"` | The Lease's namespace, a DNS-1123 label. Default: the runtime's namespace. |
/// | `lease_duration = "15s"` | How long followers wait before taking over a lease that is not renewed. Whole seconds. |
/// | `renew_deadline = "10s"` | How long the leader keeps leading without a successful renew. |
/// | `retry_period = "2s"` | How often the leader renews and followers retry. |
/// | `every = "30s"` | The periodic form's period. |
/// | `crate = "path"` | The path of the `leader` crate, if the dependency is renamed. |
///
/// Durations are a whole number and a unit, `ms`, `s`, `m` or `h`: `"500ms"`, `"2s"`, `"1m"`.
/// Without timings, the runtime's apply (client-go's 15 s / 10 s / 2 s unless configured
/// otherwise). With any of them, the missing ones take client-go's defaults and the set must
/// satisfy `lease_duration > renew_deadline > 1.2 x retry_period > 0`, as client-go requires.
///
/// ```
/// # use leader::{CancellationToken, leader_only};
/// #[leader_only(lease = "fast-failover", namespace = "jobs", lease_duration = "4s",
///               renew_deadline = "3s", retry_period = "500ms")]
/// async fn reconcile(token: CancellationToken) {
///     token.cancelled().await; // runs until leadership ends
/// }
/// ```
///
/// Everything is checked at compile time: the lease name, the durations and their order, the
/// function's shape and its token parameter, each error at the token it is about.
#[proc_macro_attribute]
pub fn leader_only(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::leader_only(args.into(), item.into()).into()
}

/// Runs `async fn main()` with the process-wide leader runtime started; use it instead of
/// `#[tokio::main]`.
///
/// ```no_run
/// use leader::{CancellationToken, leader_main, leader_only};
///
/// #[leader_only(lease = "billing-sync")]
/// async fn sync_billing(token: CancellationToken) {
///     token.cancelled().await; // leads until the lease is lost or the process stops
/// }
///
/// #[leader_main]
/// async fn main() -> Result<(), leader::Error> {
///     loop {
///         sync_billing().await?; // runs again whenever this replica leads again
///     }
/// }
/// ```
///
/// `main` must be `async fn main()` without parameters; it may return anything `main` can
/// return, such as `Result<(), E>`. Before the body runs:
///
/// - a tokio runtime is built, multi-threaded unless `flavor = "current_thread"`;
/// - with `runtime = build_runtime`, the program's `async fn build_runtime() ->
///   leader::Result<leader::runtime::Runtime>` builds the leader runtime (for flags, a client of
///   its own, timings); call `RuntimeBuilder::apply_env()` there to keep the `LEADER_*`
///   variables below (a warning says so when one is set and the runtime does not follow it);
///   either way it becomes the process-wide runtime;
/// - otherwise the attribute builds it, with an API client from the in-cluster
///   configuration or else the kubeconfig (`$KUBECONFIG` or `~/.kube/config`). Its identity is
///   `POD_NAME` or the hostname plus a random suffix; its namespace is `POD_NAMESPACE`, else the
///   pod's service-account namespace, else the kubeconfig context's namespace, else `default`.
///   `identity` and `namespace` set them, and the environment variables `LEADER_IDENTITY` and
///   `LEADER_NAMESPACE` override both;
/// - with `LEADER_STANDALONE=1`, leases are kept in memory instead and this process is the sole
///   leader of every lease, with a loud warning: for trying a program without a cluster, never
///   in one.
///
/// If no client configuration is found, the program prints what was tried and exits with
/// status 1.
///
/// On SIGTERM (what Kubernetes sends to stop a pod) or Ctrl+C, every leadership token fires, the
/// work is awaited (at most the hard-stop grace), held leases are released so that another
/// replica takes over at once, and the process exits with status 0. When the body returns, held
/// leases are released before `main` returns its value.
///
/// # Arguments
///
/// | argument | meaning |
/// | --- | --- |
/// | `flavor = "multi_thread"` | The tokio runtime: `"multi_thread"` (default) or `"current_thread"`. |
/// | `worker_threads = 4` | Worker threads of the `multi_thread` flavor. Default: one per core. |
/// | `namespace = "ns"` | The namespace of leases that name none (a DNS-1123 label). |
/// | `identity = "name"` | This replica's identity in the leases (not empty). |
/// | `events = false` | Records no leader-election Events on the leases (on by default: `<identity> became leader` / `stopped leading`, as client-go records them; they need the RBAC rule `leader::runtime::EVENT_RULE`). |
/// | `runtime = build_runtime` | An `async fn() -> leader::Result<leader::runtime::Runtime>` that builds the leader runtime instead; `namespace`, `identity` and `events` then go on its builder. |
/// | `crate = "path"` | The path of the `leader` crate, if the dependency is renamed. |
#[proc_macro_attribute]
pub fn leader_main(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::leader_main(args.into(), item.into()).into()
}
