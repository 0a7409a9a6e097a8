//! A Service that always leads to the leader ([`RuntimeBuilder::leader_service`]): while this
//! replica leads a lease, the endpoints of a selector-less Service point at it, so that clients
//! that cannot run this library (a `curl`, a client in another language) send their writes to
//! `<service>.<namespace>.svc` and reach the leader.
//!
//! The Service is the user's, created in their manifests without a selector. This library keeps
//! one EndpointSlice for it, [`leader_service_slice_name`], labelled as the Service's and as
//! managed by [`LEADER_SERVICE_MANAGER`] (so the EndpointSlice controller leaves it alone), with
//! one endpoint: the leader's IP and port. Each write is tied to the term it was made in by the
//! [`LEADER_SERVICE_HOLDER_ANNOTATION`].
//!
//! - A new leader points the slice at itself before its term's work starts (bounded by the
//!   term's first renew, so the election never waits on it for long), replacing the previous
//!   leader's endpoint. If that fails, it tries again every retry period during the term.
//! - When a term ends, the slice is emptied, but only while it still names this replica and this
//!   term (a write conditioned on the `resourceVersion` of what was read): a late clear never
//!   removes a newer leader's endpoint. On a voluntary end it happens before the lease is
//!   released.
//! - Every failure is logged (at most once per [`WARN_EVERY`]), never fatal: the Service is best
//!   effort, and the election goes on as without it.
//!
//! [`RuntimeBuilder::leader_service`]: crate::RuntimeBuilder::leader_service

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use kube::api::{Api, PostParams};
use tokio::time::{Instant, timeout_at};
use tracing::{Instrument, Level, debug, info};

use crate::election::{ElectionShared, Term};
use crate::report::say;
use crate::store::LeaseKey;
use crate::{Error, Result, SERVICE_RULE};

/// The `endpointslice.kubernetes.io/managed-by` label of the EndpointSlices this library keeps.
/// The EndpointSlice controller and the mirroring controller leave slices managed by anyone
/// else alone.
pub const LEADER_SERVICE_MANAGER: &str = "leader.rs";

/// The annotation on a leader Service's EndpointSlice naming the term it was written in:
/// `{"holderIdentity":"web-1","leaseTransitions":7}` (the fencing token). A replica empties the
/// slice at the end of its term only while it still carries its own term.
pub const LEADER_SERVICE_HOLDER_ANNOTATION: &str = "leader.rs/holder";

/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming who manages an EndpointSlice.
const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";

/// A problem with the leader Service is logged at most this often.
pub(crate) const WARN_EVERY: Duration = Duration::from_secs(300);

/// The name of the EndpointSlice kept for the leader Service `service`:
/// `<service>-leader-election`.
pub fn leader_service_slice_name(service: &str) -> String {
    format!("{service}-leader-election")
}

/// The leader Services of a runtime: which lease leads to which Service, and where this replica
/// serves.
pub(crate) struct LeaderServices {
    client: kube::Client,
    /// The runtime's namespace, where the leases and the Services are.
    namespace: String,
    /// Lease name to Service name.
    services: HashMap<String, String>,
    address: SocketAddr,
}

impl LeaderServices {
    /// The leader Services asked for (`(lease, service)` pairs, leases already renamed), for a
    /// replica serving on `address`.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a Service name that is not a DNS-1123 label or a bad lease name;
    /// [`Error::InvalidConfig`] without an address, with an address whose host is not an IP, or
    /// with two leases on one Service.
    pub(crate) fn new(
        client: kube::Client,
        namespace: String,
        asked: Vec<(String, String)>,
        address: Option<&str>,
    ) -> Result<Self> {
        let mut services = HashMap::new();
        for (lease, service) in asked {
            crate::validate_lease_name(&lease)?;
            crate::names::validate_service_name(&service)?;
            if let Some((other, _)) = services
                .iter()
                .find(|(other, s)| **other != lease && **s == service)
            {
                return Err(Error::InvalidConfig {
                    reason: format!(
                        "leases `{other}` and `{lease}` both ask for leader service `{service}`; \
                         a Service can lead to the leader of one lease only"
                    ),
                });
            }
            services.insert(lease, service);
        }
        let address = address_for_slice(address)?;
        Ok(LeaderServices {
            client,
            namespace,
            services,
            address,
        })
    }

    /// The leader Service of the lease `key`, if one was asked for.
    pub(crate) fn for_lease(&self, key: &LeaseKey) -> Option<LeaderService> {
        if key.namespace != self.namespace {
            return None;
        }
        let service = self.services.get(&key.name)?;
        Some(LeaderService {
            slices: Api::namespaced(self.client.clone(), &self.namespace),
            namespace: self.namespace.clone(),
            service: service.clone(),
            address: self.address,
            warned: Mutex::new(None),
        })
    }
}

/// The address in an EndpointSlice: `address` (this replica's `host:port`) with an IP as host.
fn address_for_slice(address: Option<&str>) -> Result<SocketAddr> {
    let Some(address) = address else {
        return Err(Error::InvalidConfig {
            reason: "a leader service needs this replica's address, to point the Service at it: \
                     set it with `address` or `address_from_pod_ip`"
                .into(),
        });
    };
    let address: SocketAddr = address.parse().map_err(|_| Error::InvalidConfig {
        reason: format!(
            "a leader service needs this replica's address with an IP as host (an EndpointSlice \
             holds IPs), not `{address}`: use `address_from_pod_ip`, or give `<pod IP>:<port>`"
        ),
    })?;
    // The API server's own rule for endpoint IPs.
    let unfit = match address.ip() {
        IpAddr::V4(ip) => ip.is_unspecified() || ip.is_loopback() || ip.is_link_local(),
        IpAddr::V6(ip) => {
            ip.is_unspecified() || ip.is_loopback() || ip.is_unicast_link_local() || {
                // Link-local multicast: ff02::/16.
                ip.segments()[0] == 0xff02
            }
        }
    };
    if unfit {
        return Err(Error::InvalidConfig {
            reason: format!(
                "a leader service needs this replica's address with an IP that an EndpointSlice \
                 accepts, not `{address}` (no loopback, link-local or unspecified IP): use \
                 `address_from_pod_ip`"
            ),
        });
    }
    Ok(address)
}

/// One lease's leader Service.
pub(crate) struct LeaderService {
    slices: Api<EndpointSlice>,
    namespace: String,
    service: String,
    address: SocketAddr,
    /// When a problem was last logged.
    warned: Mutex<Option<Instant>>,
}

/// Whether pointing the Service here is done for the term.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pointed {
    /// Written, or not worth trying again.
    Done,
    /// Failed for a reason that may pass (the API server out of reach, say).
    TryAgain,
}

/// What emptying the slice did.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Emptied.
    Written,
    /// There was nothing to do (nothing to clear, or not ours to clear).
    Left,
}

impl LeaderService {
    /// Points the Service at this replica, for the term `fencing_token` of `identity`; gives up
    /// at `until`. Failures are logged, never returned; the answer says whether to try again
    /// later in the term.
    pub(crate) async fn point_here(
        &self,
        identity: &str,
        fencing_token: i32,
        until: Instant,
    ) -> Pointed {
        let term = written_for(identity, fencing_token);
        match timeout_at(until, self.write(&term)).await {
            Ok(Ok(())) => {
                info!(service = %self.service, "leader service points here");
                Pointed::Done
            }
            Ok(Err((verb, error))) => {
                self.failed("pointing", verb, Some(&error));
                // RBAC will not change its mind within the term, nor will the API server
                // accept a slice it found invalid.
                match error {
                    kube::Error::Api(status) if status.code == 403 || status.code == 422 => {
                        Pointed::Done
                    }
                    _ => Pointed::TryAgain,
                }
            }
            Err(_) => {
                self.failed("pointing", "update", None);
                Pointed::TryAgain
            }
        }
    }

    /// Empties the Service's endpoints if they still point at this replica for the term
    /// `fencing_token` of `identity`; gives up at `until`.
    pub(crate) async fn clear(&self, identity: &str, fencing_token: i32, until: Instant) {
        let term = written_for(identity, fencing_token);
        let cleared = async {
            for _ in 0..2 {
                let current = self.slices.get_opt(&self.slice_name()).await;
                let current = current.map_err(|error| ("get", error))?;
                let Some(current) = current else {
                    return Ok(Outcome::Left);
                };
                if !points_at(&current, &term) {
                    return Ok(Outcome::Left);
                }
                let mut emptied = current;
                emptied.endpoints = Vec::new().into();
                let name = self.slice_name();
                match self
                    .slices
                    .replace(&name, &PostParams::default(), &emptied)
                    .await
                {
                    Ok(_) => return Ok(Outcome::Written),
                    // Written meanwhile, by a new leader as likely as not: look again.
                    Err(error) if is_conflict(&error) => continue,
                    Err(error) => return Err(("update", error)),
                }
            }
            Ok(Outcome::Left)
        };
        match timeout_at(until, cleared).await {
            Ok(Ok(Outcome::Written)) => debug!(service = %self.service, "leader service emptied"),
            Ok(Ok(Outcome::Left)) => {
                debug!(service = %self.service, "leader service no longer points here; left alone")
            }
            Ok(Err((verb, error))) => self.failed("emptying", verb, Some(&error)),
            Err(_) => self.failed("emptying", "update", None),
        }
    }

    /// Creates the slice or replaces what it holds with this replica's endpoint for `term`.
    /// Conditioned on the `resourceVersion` read, so that of two writers the later one reads
    /// what the earlier wrote.
    async fn write(&self, term: &str) -> std::result::Result<(), (&'static str, kube::Error)> {
        let name = self.slice_name();
        let mut attempts = 2;
        loop {
            attempts -= 1;
            let current = self.slices.get_opt(&name).await;
            let (verb, written) = match current.map_err(|error| ("get", error))? {
                None => {
                    let slice = self.slice(EndpointSlice::default(), term);
                    let created = self.slices.create(&PostParams::default(), &slice).await;
                    ("create", created)
                }
                Some(current) => {
                    let slice = self.slice(current, term);
                    let params = PostParams::default();
                    ("update", self.slices.replace(&name, &params, &slice).await)
                }
            };
            match written {
                Ok(_) => return Ok(()),
                // Written meanwhile: read it again, once.
                Err(error) if is_conflict(&error) && attempts > 0 => {}
                Err(error) => return Err((verb, error)),
            }
        }
    }

    fn slice_name(&self) -> String {
        leader_service_slice_name(&self.service)
    }

    /// `base` (the slice as read, or an empty one) with this replica as its one endpoint, for
    /// `term`; the other labels and annotations of `base` are kept.
    fn slice(&self, base: EndpointSlice, term: &str) -> EndpointSlice {
        endpoint_slice(base, &self.service, self.address, term)
    }

    /// Logs a failure of `doing` (`pointing` or `emptying`) the Service, at most once per
    /// [`WARN_EVERY`]; `error` is `None` when the API server did not answer in time.
    fn failed(&self, doing: &str, verb: &str, error: Option<&kube::Error>) {
        debug!(?error, service = %self.service, "{doing} the leader service failed");
        let now = Instant::now();
        {
            let mut warned = self
                .warned
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if warned.is_some_and(|at| now.duration_since(at) < WARN_EVERY) {
                return;
            }
            *warned = Some(now);
        }
        say(Level::WARN, &self.failure(doing, verb, error), None);
    }

    /// What to say about a failure of `doing` the Service.
    fn failure(&self, doing: &str, verb: &str, error: Option<&kube::Error>) -> String {
        let slice = self.slice_name();
        let why = match error {
            Some(kube::Error::Api(status)) if status.code == 403 => format!(
                "forbidden: this replica may not {verb} endpointslices.discovery.k8s.io in \
                 namespace `{}`; bind it to a Role there with the rule {{{SERVICE_RULE}}} (API \
                 server said: {})",
                self.namespace, status.message
            ),
            Some(error) => format!("{verb} endpointslice `{slice}` failed: {error}"),
            None => format!("{verb} endpointslice `{slice}`: no answer in time"),
        };
        let doing = match doing {
            "pointing" => format!("pointing leader service `{}` at this replica", self.service),
            _ => format!("{doing} leader service `{}`", self.service),
        };
        format!(
            "{doing} failed; the election goes on without it (said at most every {}s): {why}",
            WARN_EVERY.as_secs()
        )
    }
}

/// Tries again to point the Service here, every retry period until it is done or `term` ends,
/// in a task of the term: the end of the term waits for it before emptying the slice.
pub(crate) fn keep_trying(shared: Arc<ElectionShared>, term: &Term) {
    let token = term.token.clone();
    let fencing_token = term.fencing_token;
    let retrying = async move {
        let Some(service) = &shared.leader_service else {
            return;
        };
        let retry_period = shared.config.retry_period;
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(retry_period) => {}
            }
            let until = Instant::now() + retry_period;
            let pointed = service.point_here(&shared.identity, fencing_token, until);
            tokio::select! {
                () = token.cancelled() => return,
                pointed = pointed => if pointed == Pointed::Done {
                    return;
                },
            }
        }
    };
    term.tracker.spawn(retrying.in_current_span());
}

/// Whether `error` is a lost race: a conflict on `resourceVersion`, or a create of a slice that
/// someone created first.
fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// The annotation's value for the term `fencing_token` of `identity`.
fn written_for(identity: &str, fencing_token: i32) -> String {
    let term = crate::record::term(identity, fencing_token);
    k8s_openapi::serde_json::Value::Object(term).to_string()
}

/// `EndpointSlice::endpoints` as a slice, whichever Kubernetes version the application picked:
/// a list in some of k8s-openapi's versions, an optional list in others (writing it,
/// `Vec::into()` fits both).
trait EndpointList {
    fn endpoint_list(&self) -> &[Endpoint];
}

impl EndpointList for Vec<Endpoint> {
    fn endpoint_list(&self) -> &[Endpoint] {
        self
    }
}

impl EndpointList for Option<Vec<Endpoint>> {
    fn endpoint_list(&self) -> &[Endpoint] {
        self.as_deref().unwrap_or_default()
    }
}

/// Whether `slice` has endpoints written in `term` (the annotation's value): only then is it
/// this term's to empty.
fn points_at(slice: &EndpointSlice, term: &str) -> bool {
    holder_annotation(slice) == Some(term) && !slice.endpoints.endpoint_list().is_empty()
}

fn holder_annotation(slice: &EndpointSlice) -> Option<&str> {
    let annotations = slice.metadata.annotations.as_ref()?;
    annotations
        .get(LEADER_SERVICE_HOLDER_ANNOTATION)
        .map(String::as_str)
}

/// `base` made the leader Service's slice for `service`, with `address` as its one ready
/// endpoint, written for `term` (the [`LEADER_SERVICE_HOLDER_ANNOTATION`]'s value).
fn endpoint_slice(
    mut base: EndpointSlice,
    service: &str,
    address: SocketAddr,
    term: &str,
) -> EndpointSlice {
    base.metadata.name = Some(leader_service_slice_name(service));
    let labels = base.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(SERVICE_NAME_LABEL.to_owned(), service.to_owned());
    labels.insert(
        MANAGED_BY_LABEL.to_owned(),
        LEADER_SERVICE_MANAGER.to_owned(),
    );
    let annotations = base.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(LEADER_SERVICE_HOLDER_ANNOTATION.to_owned(), term.to_owned());
    base.address_type = match address.ip() {
        IpAddr::V4(_) => "IPv4",
        IpAddr::V6(_) => "IPv6",
    }
    .to_owned();
    base.endpoints = vec![Endpoint {
        addresses: vec![address.ip().to_string()],
        conditions: Some(EndpointConditions {
            ready: Some(true),
            serving: Some(true),
            terminating: Some(false),
        }),
        ..Endpoint::default()
    }]
    .into();
    base.ports = Some(vec![EndpointPort {
        name: Some(String::new()),
        port: Some(i32::from(address.port())),
        protocol: Some("TCP".to_owned()),
        ..EndpointPort::default()
    }]);
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built(address: &str, base: EndpointSlice) -> EndpointSlice {
        let term = written_for("web-1", 7);
        endpoint_slice(base, "writes", address.parse().unwrap(), &term)
    }

    #[test]
    fn the_slice_points_at_the_replica_with_its_address_family() {
        let slice = built("10.1.2.3:8080", EndpointSlice::default());
        assert_eq!(
            slice.metadata.name.as_deref(),
            Some("writes-leader-election")
        );
        assert_eq!(slice.address_type, "IPv4");
        let endpoints = slice.endpoints.endpoint_list();
        assert_eq!(endpoints.len(), 1);
        assert_eq!(endpoints[0].addresses, ["10.1.2.3"]);
        assert_eq!(endpoints[0].conditions.as_ref().unwrap().ready, Some(true));
        let ports = slice.ports.unwrap();
        assert_eq!(ports.len(), 1);
        assert_eq!(
            (
                ports[0].name.as_deref(),
                ports[0].port,
                ports[0].protocol.as_deref()
            ),
            (Some(""), Some(8080), Some("TCP"))
        );
        let labels = slice.metadata.labels.unwrap();
        assert_eq!(labels[SERVICE_NAME_LABEL], "writes");
        assert_eq!(labels[MANAGED_BY_LABEL], LEADER_SERVICE_MANAGER);

        let slice = built("[fd00::7]:80", EndpointSlice::default());
        assert_eq!(slice.address_type, "IPv6");
        assert_eq!(slice.endpoints.endpoint_list()[0].addresses, ["fd00::7"]);
    }

    #[test]
    fn the_annotation_names_the_term_and_other_metadata_is_kept() {
        let mut base = EndpointSlice::default();
        base.metadata.resource_version = Some("42".into());
        base.metadata.labels = Some([("team".to_owned(), "shop".to_owned())].into());
        base.metadata.annotations = Some(
            [(
                LEADER_SERVICE_HOLDER_ANNOTATION.to_owned(),
                written_for("web-0", 6),
            )]
            .into(),
        );
        let slice = built("10.1.2.3:8080", base);
        assert_eq!(slice.metadata.resource_version.as_deref(), Some("42"));
        assert_eq!(slice.metadata.labels.as_ref().unwrap()["team"], "shop");
        let annotation: k8s_openapi::serde_json::Value =
            k8s_openapi::serde_json::from_str(holder_annotation(&slice).unwrap()).unwrap();
        assert_eq!(
            annotation,
            k8s_openapi::serde_json::json!({"holderIdentity": "web-1", "leaseTransitions": 7})
        );
    }

    #[test]
    fn a_term_empties_only_a_slice_written_in_it() {
        let ours = written_for("web-1", 7);
        let slice = built("10.1.2.3:8080", EndpointSlice::default());
        assert!(points_at(&slice, &ours));
        // A newer leader's, another replica's of the same token, an earlier term of ours.
        for other in [
            written_for("web-2", 8),
            written_for("web-2", 7),
            written_for("web-1", 6),
        ] {
            let newer = endpoint_slice(
                EndpointSlice::default(),
                "writes",
                "10.1.2.4:8080".parse().unwrap(),
                &other,
            );
            assert!(!points_at(&newer, &ours), "{other}");
        }
        // Already emptied, or made by someone else without the annotation.
        let mut emptied = slice.clone();
        emptied.endpoints = Vec::new().into();
        assert!(!points_at(&emptied, &ours));
        let mut unannotated = slice;
        unannotated.metadata.annotations = None;
        assert!(!points_at(&unannotated, &ours));
    }

    #[tokio::test]
    async fn an_unreachable_api_server_is_tried_again_and_never_fatal() {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let asked = vec![("orders".to_owned(), "orders-leader".to_owned())];
        let services =
            LeaderServices::new(client, "shop".into(), asked, Some("10.1.2.3:8080")).unwrap();
        assert!(
            services
                .for_lease(&LeaseKey::new("other", "orders"))
                .is_none()
        );
        assert!(
            services
                .for_lease(&LeaseKey::new("shop", "other"))
                .is_none()
        );
        let service = services
            .for_lease(&LeaseKey::new("shop", "orders"))
            .unwrap();
        let until = Instant::now() + Duration::from_secs(5);
        assert_eq!(
            service.point_here("web-1", 7, until).await,
            Pointed::TryAgain
        );
        service.clear("web-1", 7, until).await;

        let refusal = kube::core::Status::failure("endpointslices is forbidden", "Forbidden");
        let refusal = kube::Error::Api(refusal.with_code(403).boxed());
        let said = service.failure("pointing", "create", Some(&refusal));
        for part in [
            "pointing leader service `orders-leader` at this replica failed",
            "may not create endpointslices.discovery.k8s.io in namespace `shop`",
            SERVICE_RULE,
            "endpointslices is forbidden",
        ] {
            assert!(said.contains(part), "{part:?} missing from {said}");
        }
    }

    #[tokio::test]
    async fn two_leases_cannot_share_a_service() {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let asked = vec![
            ("orders".to_owned(), "leader".to_owned()),
            ("billing".to_owned(), "leader".to_owned()),
        ];
        let error = LeaderServices::new(client, "shop".into(), asked, Some("10.1.2.3:8080"));
        let error = error.err().unwrap().to_string();
        assert!(
            error.contains("both ask for leader service `leader`"),
            "{error}"
        );
    }

    #[test]
    fn the_address_must_be_there_with_an_ip_host() {
        assert_eq!(
            address_for_slice(Some("10.1.2.3:80")).unwrap(),
            "10.1.2.3:80".parse::<SocketAddr>().unwrap()
        );
        assert!(address_for_slice(Some("[fd00::7]:80")).unwrap().is_ipv6());
        let missing = address_for_slice(None).unwrap_err().to_string();
        assert!(missing.contains("address_from_pod_ip"), "{missing}");
        let named = address_for_slice(Some("web-1.web:80"))
            .unwrap_err()
            .to_string();
        assert!(
            named.contains("IP") && named.contains("web-1.web:80"),
            "{named}"
        );
    }
}
