//! The Kubernetes API as a [`LeaseStore`](super::LeaseStore). (Being written.)

/// A [`LeaseStore`](super::LeaseStore) backed by the Kubernetes API.
#[derive(Clone)]
pub struct KubeLeaseStore {
    _client: kube::Client,
}
