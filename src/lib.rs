//! Run a function on exactly one replica of a Kubernetes workload.
//!
//! `leader` brings client-go's Lease leader election to Rust as attributes. The election runtime is
//! re-exported as [`runtime`].

#[doc(inline)]
pub use leader_runtime as runtime;
