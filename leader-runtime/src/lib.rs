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
//! - [`Election::leader`], [`Election::route`]: who leads and where it serves requests (each
//!   replica's [`RuntimeBuilder::address`], published on the Lease), to send leader-only
//!   requests there.
//! - [`LeaseStatus`] and [`Election::health_check`]: what is going on, for logs and probes.
//! - [`Runtime::liveness`] and [`Runtime::readiness`]: the verdicts of the probes as data, and
//!   [`Routes`]: what `/healthz`, `/readyz` and `/metrics` answer, for any HTTP server.
//! - [`testing`]: an in-memory store for testing leader-only code without a cluster.
//! - [`metrics`]: counters of every election (terms won and lost, renew latency, failed requests),
//!   always kept; [`Election::metrics`] reads them.
//!
//! Optional features (none by default):
//! - `metrics`: `Runtime::register_metrics` puts the elections' status and counters in a
//!   [`prometheus_client`](https://docs.rs/prometheus-client) registry, served at `/metrics`.
//! - `axum`: `axum::router`, the [`Routes`] as an axum `Router` to merge into the application's;
//!   `axum::LeaderOnly`, a guard that lets leader-only requests through on the leader and
//!   redirects, refuses or forwards them on a follower.
//! - `actix-web`: `actix_web::service`, the [`Routes`] as an actix-web service.
//! - `http`: `HttpServer` and `Runtime::serve_http`, a standalone server of the [`Routes`] on
//!   hyper, for programs without an HTTP server of their own.
//! - `leader-service`: `RuntimeBuilder::leader_service`, a selector-less Service whose one
//!   endpoint is the leader of a lease.
//! - `leader-service`: `RuntimeBuilder::leader_service`, a selector-less Service whose one
//!   endpoint is the leader of a lease, for clients that cannot run this library.
//!
//! The record is read and written as client-go writes it (`holderIdentity`,
//! `leaseDurationSeconds`, `acquireTime`, `renewTime`, `leaseTransitions`), so Go and Rust
//! candidates can share a Lease.

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "actix-web")]
#[cfg_attr(docsrs, doc(cfg(feature = "actix-web")))]
pub mod actix_web;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
mod client;
mod config;
mod election;
mod elector;
mod error;
#[doc(hidden)]
pub mod feature_hints;
mod health;
#[cfg(feature = "http")]
mod http;
mod identity;
#[cfg(feature = "leader-service")]
mod leader_service;
pub mod metrics;
mod names;
mod pod_cost;
mod record;
mod report;
mod routes;
mod runtime;
pub mod store;
pub mod testing;

pub use client::kube_client;
pub use config::{ElectionConfig, JITTER_FACTOR};
pub use election::{Election, Leader, Leadership, LeaseStatus, Route};
pub use error::{EVENT_RULE, Error, LEASE_RULE, POD_RULE, RBAC_RULES, Result, SERVICE_RULE, Verb};
pub use health::{DEFAULT_HEALTH_TOLERANCE, Verdict};
#[cfg(feature = "http")]
pub use http::{DEFAULT_MAX_CONNECTIONS, HEADER_READ_TIMEOUT, HttpServer, MAX_HEAD};
#[cfg(feature = "leader-service")]
#[cfg_attr(docsrs, doc(cfg(feature = "leader-service")))]
pub use leader_service::{
    LEADER_SERVICE_HOLDER_ANNOTATION, LEADER_SERVICE_MANAGER, leader_service_slice_name,
};
pub use names::{validate_label, validate_lease_name, validate_namespace};
pub use pod_cost::POD_DELETION_COST;
pub use record::HOLDER_ADDRESS_ANNOTATION;
pub use routes::{Reply, Routes};
pub use runtime::{
    ENV_ADDRESS, ENV_IDENTITY, ENV_NAMESPACE, ENV_POD_IP, ENV_STANDALONE, Runtime, RuntimeBuilder,
    shutdown_signal,
};
pub use tokio_util::sync::CancellationToken;
