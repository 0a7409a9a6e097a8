//! The `#[leader_only]` and `#[leader_main]` attributes. Use them through the `leader` crate,
//! which re-exports them together with the runtime they expand to.
