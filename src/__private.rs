//! What the attributes expand to. Not public API: names and signatures here change without notice.

use std::future::Future;
use std::pin::Pin;

pub use core::time::Duration;
pub use leader_runtime::{CancellationToken, ElectionConfig, Error, Leadership, Result};
use leader_runtime::{ENV_IDENTITY, ENV_NAMESPACE, ENV_STANDALONE, Election, Runtime};

/// What the token parameter of a `#[leader_only]` function may be.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the token parameter of a `#[leader_only]` function",
    label = "not `leader::CancellationToken` or `leader::Leadership`",
    note = "take `leader::CancellationToken`, or `leader::Leadership` for the fencing token too"
)]
pub trait FromLeadership {
    /// Builds the parameter from the term's leadership.
    fn from_leadership(leadership: Leadership) -> Self;
}

impl FromLeadership for CancellationToken {
    fn from_leadership(leadership: Leadership) -> Self {
        leadership.token().clone()
    }
}

impl FromLeadership for Leadership {
    fn from_leadership(leadership: Leadership) -> Self {
        leadership
    }
}

/// What the other parameters of a periodic `#[leader_only]` function must be: each tick gets a
/// clone of each of them.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a parameter of a periodic `#[leader_only]` function",
    label = "each tick gets its own clone of this parameter",
    note = "parameters of the periodic form (`every = ...`) must be `Clone + Send + Sync + 'static`; \
            share state through an `Arc`"
)]
pub trait TickParameter: Sized {
    /// The clone that one tick gets.
    fn for_tick(&self) -> Self;
}

impl<T: Clone + Send + Sync + 'static> TickParameter for T {
    fn for_tick(&self) -> Self {
        self.clone()
    }
}

/// One call of a `#[leader_only]` function: the election of its lease in the runtime it joins
/// (the scoped one, else the process-wide one).
pub struct Call {
    runtime: Runtime,
    election: Election,
}

/// The call's election. `config: None` uses the runtime's timings; `namespace: None` its
/// namespace.
pub fn call(lease: &str, namespace: Option<&str>, config: Option<ElectionConfig>) -> Result<Call> {
    let runtime = crate::current_runtime().ok_or(Error::NotStarted)?;
    let config = config.unwrap_or(*runtime.config());
    let election =
        runtime.election_with(namespace.unwrap_or(runtime.namespace()), lease, config)?;
    Ok(Call { runtime, election })
}

impl Call {
    /// The one-shot form: [`Election::lead`], with the body in the runtime's scope.
    pub async fn lead<F, Fut, T>(self, work: F) -> Result<T>
    where
        F: FnOnce(Leadership) -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let Call { runtime, election } = self;
        election
            .lead(move |leadership| crate::with_runtime(&runtime, work(leadership)))
            .await
    }

    /// The periodic form: [`Election::lead_every`], with each tick in the runtime's scope.
    pub async fn lead_every<F, Fut>(self, period: Duration, tick: F) -> Result<()>
    where
        F: Fn(Leadership) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Call { runtime, election } = self;
        election
            .lead_every(period, move |leadership| {
                crate::with_runtime(&runtime, tick(leadership))
            })
            .await
    }
}

/// How `#[leader_main]` builds the tokio runtime.
#[derive(Clone, Copy, Debug)]
pub enum Flavor {
    /// `Builder::new_current_thread`.
    CurrentThread,
    /// `Builder::new_multi_thread`, with `worker_threads` if given.
    MultiThread,
}

/// `runtime = path` of `#[leader_main]`: the user's function that builds the runtime.
pub type RuntimeFactory = fn() -> Pin<Box<dyn Future<Output = Result<Runtime>>>>;

/// The settings of `#[leader_main]`.
#[derive(Clone, Copy, Debug)]
pub struct MainOptions {
    /// The tokio runtime flavor.
    pub flavor: Flavor,
    /// Worker threads of the multi-thread flavor.
    pub worker_threads: Option<usize>,
    /// The namespace for leases (`LEADER_NAMESPACE` overrides it).
    pub namespace: Option<&'static str>,
    /// This replica's identity (`LEADER_IDENTITY` overrides it).
    pub identity: Option<&'static str>,
    /// Builds the runtime instead of the defaults and the `LEADER_*` variables.
    pub runtime: Option<RuntimeFactory>,
    /// Whether to record leader-election Events on the leases.
    pub events: bool,
}

/// Runs `main`'s body in a tokio runtime with the process-wide leader runtime started; on
/// SIGTERM or Ctrl+C, fires every leadership token, waits for the work, releases held leases and
/// exits with status 0. When the body returns, held leases are released before `main` returns.
pub fn run_main<F: Future>(options: MainOptions, body: F) -> F::Output {
    let mut builder = match options.flavor {
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        Flavor::MultiThread => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if let Some(threads) = options.worker_threads {
                builder.worker_threads(threads);
            }
            builder
        }
    };
    let tokio = builder
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    tokio.block_on(async move {
        let runtime = match start(&options).await {
            Ok(runtime) => runtime,
            Err(error) => {
                eprintln!("error: {error}");
                if matches!(error, Error::NoKubeConfig { .. }) {
                    eprintln!(
                        "hint: to try the program without a cluster, set LEADER_STANDALONE=1"
                    );
                }
                std::process::exit(1);
            }
        };
        tokio::select! {
            output = body => {
                runtime.shutdown().await;
                output
            }
            _ = leader_runtime::shutdown_signal() => {
                runtime.shutdown().await;
                std::process::exit(0);
            }
        }
    })
}

/// Builds and installs the process-wide runtime: with the user's function if given, else from
/// the options with the `LEADER_*` variables applied over them.
async fn start(options: &MainOptions) -> Result<Runtime> {
    let runtime = match options.runtime {
        Some(build) => {
            let runtime = build().await?;
            warn_about_ignored_environment(&runtime);
            runtime
        }
        None => {
            let mut builder = Runtime::builder();
            if let Some(identity) = options.identity {
                builder = builder.identity(identity);
            }
            if let Some(namespace) = options.namespace {
                builder = builder.namespace(namespace);
            }
            builder.events(options.events).apply_env().build().await?
        }
    };
    if crate::install_runtime(runtime.clone()).is_err() {
        tracing::warn!(
            target: "leader",
            "a leader runtime was installed already; #[leader_main] installs none, and \
             #[leader_only] functions use the one installed first"
        );
    }
    Ok(runtime)
}

/// With `runtime = ...`, the program builds the runtime and may not have applied the `LEADER_*`
/// variables ([`leader_runtime::RuntimeBuilder::apply_env`]): say so rather than ignore them.
fn warn_about_ignored_environment(runtime: &Runtime) {
    if runtime.applied_env() {
        return;
    }
    let set: Vec<&str> = [ENV_IDENTITY, ENV_NAMESPACE, ENV_STANDALONE]
        .into_iter()
        .filter(|name| std::env::var(name).is_ok_and(|value| !value.trim().is_empty()))
        .collect();
    if !set.is_empty() {
        let warning = format!(
            "{} set, but the runtime built by `#[leader_main(runtime = ...)]` did not apply the \
             LEADER_* variables: call `RuntimeBuilder::apply_env()` in that function to honour them",
            set.join(" and ") + if set.len() == 1 { " is" } else { " are" },
        );
        eprintln!("WARNING: {warning}");
        tracing::warn!(target: "leader", "{warning}");
    }
}
