//! What the attributes expand to. Not public API: names and signatures here change without notice.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use core::time::Duration;
pub use leader_runtime::{CancellationToken, ElectionConfig, Error, Leadership, Result};
use leader_runtime::{Election, Runtime, testing::InMemoryLeaseStore};
use tokio::time::MissedTickBehavior;

/// What the token parameter of a `#[leader_only]` function may be.
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

/// The election of a `#[leader_only]` function in the process-wide runtime. `config: None` uses
/// the runtime's timings; `namespace: None` its namespace.
pub fn election(
    lease: &str,
    namespace: Option<&str>,
    config: Option<ElectionConfig>,
) -> Result<Election> {
    let runtime = crate::installed_runtime().ok_or(Error::NotStarted)?;
    let config = config.unwrap_or(*runtime.config());
    runtime.election_with(namespace.unwrap_or(runtime.namespace()), lease, config)
}

/// The periodic form: while this replica leads, runs `tick` every `period` (missed ticks are
/// skipped: a run that overruns delays the next one to the next whole period); after losing
/// leadership, campaigns again. Returns `Ok(())` when the runtime shuts down.
pub async fn lead_every<F, Fut>(election: Result<Election>, period: Duration, tick: F) -> Result<()>
where
    F: Fn(Leadership) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let election = election?;
    let tick = Arc::new(tick);
    loop {
        let tick = Arc::clone(&tick);
        let term = election.lead(move |leadership| async move {
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    biased;
                    () = leadership.token().cancelled() => return,
                    // A process resumed after a pause may find both the tick and the deadline
                    // past: `is_leading` reads the clock, so no unit of work starts late.
                    _ = interval.tick() => {
                        if !leadership.is_leading() {
                            return;
                        }
                        tick(leadership.clone()).await;
                    }
                }
            }
        });
        match term.await {
            Ok(()) => {}
            Err(Error::ShutDown { .. }) => return Ok(()),
            Err(error) => {
                tracing::warn!(%error, "periodic leader work ended abnormally; campaigning again")
            }
        }
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
            signal = leader_runtime::shutdown_signal() => {
                tracing::info!("{signal} received: stopping leader work and releasing leases");
                runtime.shutdown().await;
                std::process::exit(0);
            }
        }
    })
}

/// Builds and installs the process-wide runtime: with the user's function if given, else from
/// the options and the environment.
async fn start(options: &MainOptions) -> Result<Runtime> {
    let runtime = match options.runtime {
        Some(build) => build().await?,
        None => from_environment(options).await?,
    };
    if crate::install_runtime(runtime.clone()).is_err() {
        tracing::warn!(
            "a leader runtime was installed already; #[leader_only] functions use that one"
        );
    }
    Ok(runtime)
}

async fn from_environment(options: &MainOptions) -> Result<Runtime> {
    let env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    let mut builder = Runtime::builder();
    if let Some(identity) = env("LEADER_IDENTITY").or(options.identity.map(str::to_owned)) {
        builder = builder.identity(identity);
    }
    if let Some(namespace) = env("LEADER_NAMESPACE").or(options.namespace.map(str::to_owned)) {
        builder = builder.namespace(namespace);
    }
    let standalone = env("LEADER_STANDALONE").is_some_and(|value| value != "0" && value != "false");
    if standalone {
        let warning = "LEADER_STANDALONE is set: leases are kept in memory and this process is the \
                       sole leader of every lease. For local development only; never in a cluster.";
        eprintln!("WARNING: {warning}");
        tracing::warn!("{warning}");
        builder = builder.store(InMemoryLeaseStore::new());
    }
    builder.build().await
}
