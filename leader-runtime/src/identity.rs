//! Defaults for who this replica is and where its leases live.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// The file in which Kubernetes tells a pod its namespace.
const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// `POD_NAME` (set it from the downward API), else the hostname, plus `_` and eight random hex
/// digits, so that two processes never share an identity by accident.
pub(crate) fn default_identity() -> String {
    let base = non_empty_env("POD_NAME")
        .or_else(|| non_empty_env("HOSTNAME"))
        .or_else(|| read_trimmed("/proc/sys/kernel/hostname"))
        .unwrap_or_else(|| "leader".to_owned());
    format!("{base}_{:08x}", random_u64() as u32)
}

/// `POD_NAMESPACE`, else the service-account namespace file of a pod; `None` leaves the choice to
/// the client's configuration (the kubeconfig context's namespace, then `default`).
pub(crate) fn namespace_from_environment() -> Option<String> {
    non_empty_env("POD_NAMESPACE").or_else(|| read_trimmed(SERVICE_ACCOUNT_NAMESPACE))
}

/// A random number in `[0, 1)`, for jitter.
pub(crate) fn random_fraction() -> f64 {
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Random enough for identities and jitter, without a dependency: std's randomly keyed hasher
/// over a process-wide counter.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

fn read_trimmed(path: &str) -> Option<String> {
    let value = std::fs::read_to_string(path).ok()?;
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_differ_between_calls() {
        assert_ne!(default_identity(), default_identity());
    }

    #[test]
    fn jitter_fraction_is_in_range() {
        for _ in 0..1000 {
            let fraction = random_fraction();
            assert!((0.0..1.0).contains(&fraction));
        }
    }
}
