//! Run a function on exactly one replica of a Kubernetes workload.
//!
//! `leader` brings client-go's Lease leader election to Rust as two attributes:
//! `#[leader_only(lease = "...")]` on an `async fn` that takes a leadership token, and
//! `#[leader_main]` in place of `#[tokio::main]`. The election runtime underneath is
//! [`runtime`], usable on its own.
//!
//! Optional features, none by default, each forwarding to the runtime's feature of the same
//! name: `metrics` (the elections' metrics in a `prometheus_client` registry), `axum` and
//! `actix-web` (`/healthz`, `/readyz` and `/metrics` on the application's own server), `http` (a
//! standalone server for them), `leader-service` (a selector-less Service whose one endpoint is
//! the leader of a lease: `runtime::RuntimeBuilder::leader_service`). See `runtime::Routes`.

#![cfg_attr(docsrs, feature(doc_cfg))]

#[doc(hidden)]
pub mod __private;
mod global;

pub use global::{current_runtime, install_runtime, installed_runtime, with_runtime};
#[doc(inline)]
pub use leader_macros::{leader_main, leader_only};
#[doc(inline)]
pub use leader_runtime as runtime;
#[doc(inline)]
pub use leader_runtime::{CancellationToken, Error, Leadership, Result};

/// The README's examples, compiled as doc tests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
