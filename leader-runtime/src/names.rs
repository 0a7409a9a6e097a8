//! Kubernetes object-name rules for lease names and namespaces.

use crate::{Error, Result};

/// Checks that `name` is a DNS-1123 subdomain, the rule for Lease names: at most 253 characters
/// of lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit.
pub fn validate_lease_name(name: &str) -> Result<()> {
    check(name, "lease name", 253, true)
}

/// Checks that `namespace` is a DNS-1123 label: at most 63 characters of lowercase letters,
/// digits and `-`, starting and ending with a letter or digit.
pub fn validate_namespace(namespace: &str) -> Result<()> {
    check(namespace, "namespace", 63, false)
}

/// Checks that `service` is a DNS-1123 label, the rule for Service names.
#[cfg(feature = "leader-service")]
pub(crate) fn validate_service_name(service: &str) -> Result<()> {
    check(service, "service name", 63, false)
}

/// Checks a label, as the API server would before accepting a lease that carries it: the key
/// is a name of at most 63 characters (letters, digits, `-`, `_` and `.`, starting and ending
/// with a letter or digit) with an optional DNS-subdomain prefix and `/`; the value is empty or
/// such a name.
pub fn validate_label(key: &str, value: &str) -> Result<()> {
    let fail = |what: &'static str, value: &str, reason: String| {
        Err(Error::InvalidName {
            what,
            value: value.to_owned(),
            reason,
        })
    };
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && let Err(Error::InvalidName { reason, .. }) = check(prefix, "label key prefix", 253, true)
    {
        return fail(
            "label key",
            key,
            format!("its prefix `{prefix}` is not valid: {reason}"),
        );
    }
    if let Err(reason) = label_name_problem(name) {
        return fail("label key", key, reason);
    }
    if !value.is_empty()
        && let Err(reason) = label_name_problem(value)
    {
        return fail("label value", value, reason);
    }
    Ok(())
}

/// Checks an address a replica serves requests on, `host:port`, and returns it trimmed: a host
/// (a name, an IPv4 address, or an IPv6 address in brackets) of printable characters without
/// spaces, and a port from 1 to 65535.
pub(crate) fn validate_address(address: String) -> Result<String> {
    let address = address.trim().to_owned();
    let fail = |reason: &str| {
        Err(Error::InvalidName {
            what: "address",
            value: address.clone(),
            reason: format!("{reason}; give it as `host:port`, for example `10.1.2.3:8080`"),
        })
    };
    if address.len() > 512 {
        return fail("it is longer than 512 characters");
    }
    if address
        .chars()
        .any(|c| !c.is_ascii_graphic() || "/?#@".contains(c))
    {
        return fail("it has spaces, a path or characters other than printable ASCII");
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return fail("it has no port");
    };
    if !port.parse::<u16>().is_ok_and(|port| port > 0) {
        return fail("its port is not a number from 1 to 65535");
    }
    let bracketed = host.starts_with('[') && host.ends_with(']');
    if host.is_empty() || (host.contains(':') && !bracketed) {
        return fail("its host is empty, or an IPv6 address without brackets");
    }
    Ok(address)
}

/// What is wrong with a label name or value, if anything.
fn label_name_problem(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".into());
    }
    if name.len() > 63 {
        return Err(format!(
            "it has {} characters, at most 63 are allowed",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "`{bad}` is not allowed, only letters, digits, `-`, `_` and `.`"
        ));
    }
    let alphanumeric = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !alphanumeric(name.chars().next()) || !alphanumeric(name.chars().last()) {
        return Err("it must start and end with a letter or digit".into());
    }
    Ok(())
}

fn check(value: &str, what: &'static str, max_len: usize, dots: bool) -> Result<()> {
    let fail = |reason: String| {
        Err(Error::InvalidName {
            what,
            value: value.to_owned(),
            reason,
        })
    };
    if value.is_empty() {
        return fail("it is empty".into());
    }
    if value.len() > max_len {
        return fail(format!(
            "it has {} characters, at most {max_len} are allowed",
            value.len()
        ));
    }
    if let Some(bad) = value.chars().find(|&c| {
        !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (dots && c == '.'))
    }) {
        let allowed = if dots {
            "lowercase letters, digits, `-` and `.`"
        } else {
            "lowercase letters, digits and `-`"
        };
        return fail(format!("`{bad}` is not allowed, only {allowed}"));
    }
    let alphanumeric = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !alphanumeric(value.chars().next()) || !alphanumeric(value.chars().last()) {
        return fail("it must start and end with a letter or digit".into());
    }
    if dots
        && value
            .split('.')
            .any(|part| !alphanumeric(part.chars().next()) || !alphanumeric(part.chars().last()))
    {
        return fail("each `.`-separated part must start and end with a letter or digit".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_subdomains() {
        for name in ["a", "billing-sync", "my.lease-1", "0", &"a".repeat(253)] {
            validate_lease_name(name).unwrap();
        }
    }

    #[test]
    fn rejects_non_subdomains() {
        for name in [
            "",
            "Billing",
            "a_b",
            "-a",
            "a-",
            "a..b",
            "a.-b",
            &"a".repeat(254),
        ] {
            assert!(validate_lease_name(name).is_err(), "{name:?} accepted");
        }
    }

    #[test]
    fn labels_follow_the_api_servers_rules() {
        validate_label("app.kubernetes.io/name", "billing").unwrap();
        validate_label("tier", "").unwrap();
        validate_label("Team_A", "On.Call-1").unwrap();
        for (key, value) in [
            ("", "x"),
            ("a b", "x"),
            ("-a", "x"),
            ("Bad.Prefix/name", "x"),
            ("/name", "x"),
            ("ok", "not ok"),
            ("ok", &"v".repeat(64)),
        ] {
            assert!(
                validate_label(key, value).is_err(),
                "{key:?}={value:?} accepted"
            );
        }
    }

    #[test]
    fn namespaces_are_labels() {
        validate_namespace("kube-system").unwrap();
        assert!(validate_namespace("a.b").is_err());
        assert!(validate_namespace(&"a".repeat(64)).is_err());
    }

    #[test]
    fn addresses_are_host_and_port() {
        for good in [
            "10.1.2.3:8080",
            "[fd00::7]:80",
            "web-1.web.shop.svc:8080",
            " a:1 ",
        ] {
            validate_address(good.into()).unwrap();
        }
        for bad in [
            "",
            "10.1.2.3",
            "10.1.2.3:0",
            "10.1.2.3:65536",
            ":80",
            "fd00::7:80",
            "http://a:80",
            "a b:80",
            "a:80/path",
            "é:80",
        ] {
            let error = validate_address(bad.into()).unwrap_err().to_string();
            assert!(error.contains("host:port"), "{bad}: {error}");
        }
    }
}
