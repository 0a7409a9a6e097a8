//! Stand-ins for the methods of optional features, present only while the feature is off, so
//! that calling one says which feature to enable instead of "no method named ...". Each takes an
//! argument bound by a trait that nothing implements, whose diagnostic names the feature; the
//! methods can never run (the traits are sealed). With the feature on, the real method is there
//! and these are gone. Public only so that the bounds can name them; not part of the API.

/// Keeps the traits below unimplemented: nothing outside this module can implement `Sealed`.
mod sealed {
    pub trait Sealed {}
}

/// Implemented by nothing: the bound of `Runtime::serve_http` without feature `http`.
#[diagnostic::on_unimplemented(
    message = "`Runtime::serve_http` needs the `http` feature",
    label = "the standalone health server is behind a feature",
    note = "enable it: `leader = {{ version = \"0.1\", features = [\"http\"] }}` (or \
            `leader-runtime`'s `http` feature); `Runtime::liveness` and `Runtime::readiness` work \
            without it"
)]
pub trait NeedsFeatureHttp: sealed::Sealed {}

/// Implemented by nothing: the bound of `Runtime::register_metrics` without feature `metrics`.
#[diagnostic::on_unimplemented(
    message = "`Runtime::register_metrics` needs the `metrics` feature",
    label = "registering into a prometheus-client registry is behind a feature",
    note = "enable it: `leader = {{ version = \"0.1\", features = [\"metrics\"] }}` (or \
            `leader-runtime`'s `metrics` feature); `Election::metrics` reads the counters without \
            it"
)]
pub trait NeedsFeatureMetrics: sealed::Sealed {}

#[cfg(not(feature = "http"))]
impl crate::Runtime {
    /// Needs feature `http`; see the crate documentation.
    #[doc(hidden)]
    pub fn serve_http<A: NeedsFeatureHttp>(
        &self,
        addr: A,
    ) -> std::future::Ready<crate::Result<std::net::SocketAddr>> {
        let _ = addr;
        unreachable!("NeedsFeatureHttp is sealed and implemented by nothing")
    }
}

#[cfg(not(feature = "metrics"))]
impl crate::Runtime {
    /// Needs feature `metrics`; see the crate documentation.
    #[doc(hidden)]
    pub fn register_metrics<R: NeedsFeatureMetrics>(&self, registry: R) {
        let _ = registry;
        unreachable!("NeedsFeatureMetrics is sealed and implemented by nothing")
    }
}

/// Implemented by nothing: the bound of `RuntimeBuilder::leader_service` without feature
/// `leader-service`.
#[diagnostic::on_unimplemented(
    message = "`RuntimeBuilder::leader_service` needs the `leader-service` feature",
    label = "the leader Service is behind a feature",
    note = "enable it: `leader = {{ version = \"0.1\", features = [\"leader-service\"] }}` (or \
            `leader-runtime`'s `leader-service` feature)"
)]
pub trait NeedsFeatureLeaderService: sealed::Sealed {}

#[cfg(not(feature = "leader-service"))]
impl crate::RuntimeBuilder {
    /// Needs feature `leader-service`; see the crate documentation.
    #[doc(hidden)]
    pub fn leader_service<L: NeedsFeatureLeaderService>(
        self,
        lease: L,
        service: impl Into<String>,
    ) -> Self {
        let _ = (lease, service.into());
        unreachable!("NeedsFeatureLeaderService is sealed and implemented by nothing")
    }
}
