//! Kubernetes Lease leader election, wire-compatible with client-go's `tools/leaderelection`.
//!
//! This is the runtime behind the `leader` crate; most users depend on `leader` and use its
//! attributes. Used directly, it looks like this:
//!
//! ```no_run
//! use leader_runtime::Runtime;
//!
//! # async fn run() -> leader_runtime::Result<()> {
//! let runtime = Runtime::builder().build().await?; // in-cluster config or kubeconfig
//! let election = runtime.election("billing-sync")?;
//! loop {
//!     election
//!         .lead(|leadership| async move {
//!             // Runs on one replica at a time, until the token fires.
//!             leadership.token().cancelled().await;
//!         })
//!         .await?;
//! }
//! # }
//! ```
//!
//! - [`Runtime`]: one per process; one API client, and the watches of its leases, for all its
//!   elections.
//! - [`Election`]: one lease; [`Election::lead`] runs work while this replica leads it.
//! - [`Leadership`]: what the work gets: a cancellation token that fires before any other replica
//!   can take over, and a fencing token.
//! - [`LeaseStatus`] and [`Election::health_check`]: what is going on, for logs and probes.
//! - [`testing`]: an in-memory store for testing leader-only code without a cluster.
//! - [`metrics`]: counters of every election (terms won and lost, renew latency, failed requests),
//!   always kept; [`Election::metrics`] reads them.
//!
//! Optional features:
//! - `http`: `HttpServer` and `Runtime::serve_http`, a small HTTP endpoint with `/healthz`
//!   (liveness, client-go's `HealthzAdaptor` semantics) and `/readyz` (readiness).
//! - `metrics` (implies `http`): `metrics::render`, the Prometheus text format of the
//!   elections' status and counters, also served at `/metrics`.
//!
//! The record is read and written as client-go writes it (`holderIdentity`,
//! `leaseDurationSeconds`, `acquireTime`, `renewTime`, `leaseTransitions`), so Go and Rust
//! candidates can share a Lease.

mod config;
mod election;
mod elector;
mod error;
#[cfg(feature = "http")]
mod http;
mod identity;
pub mod metrics;
mod names;
mod record;
mod report;
mod runtime;
pub mod store;
pub mod testing;

pub use config::{ElectionConfig, JITTER_FACTOR};
pub use election::{Election, Leadership, LeaseStatus};
pub use error::{EVENT_RULE, Error, LEASE_RULE, RBAC_RULES, Result, Verb};
#[cfg(feature = "http")]
pub use http::{DEFAULT_HEALTH_TOLERANCE, HttpServer};
pub use names::{validate_label, validate_lease_name, validate_namespace};
pub use runtime::{
    ENV_IDENTITY, ENV_NAMESPACE, ENV_STANDALONE, Runtime, RuntimeBuilder, shutdown_signal,
};
pub use tokio_util::sync::CancellationToken;
