//! Integration tests against a real kube-apiserver and etcd on loopback.
//!
//! Run them through the project's test command (`make test`), which builds and starts the local
//! control plane and points `LEADER_TEST_CONTROL_PLANE` at it. To run them by hand, start one with
//! `make control-plane` and export what it prints, then `cargo test --test cluster`.

mod controller;
mod deploy;
mod election;
mod events_and_labels;
mod examples;
mod faults;
mod gone;
mod interop;
mod kube_store;
// Needs the feature; the fault campaign (`make faults`) builds this target without features.
#[cfg(feature = "leader-service")]
mod leader_service;
mod leadership;
mod lease_api;
mod lease_history;
mod logging;
mod node;
mod plot;
mod pod_cost;
mod soak;
mod support;
mod toxiproxy;
// Runs examples/writes.rs, which needs the feature (the fault campaign builds without features).
#[cfg(feature = "axum")]
mod writes;
