//! Kubernetes Lease leader election, wire-compatible with client-go's `tools/leaderelection`.
//!
//! This is the runtime behind the `leader` crate; most users depend on `leader` and use its
//! attributes instead of this crate directly.

mod config;
mod error;
mod names;
pub mod store;

pub use config::{ElectionConfig, JITTER_FACTOR};
pub use error::{Error, RBAC_RULE, Result, Verb};
pub use names::{validate_lease_name, validate_namespace};
