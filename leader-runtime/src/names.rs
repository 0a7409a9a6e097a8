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
    fn namespaces_are_labels() {
        validate_namespace("kube-system").unwrap();
        assert!(validate_namespace("a.b").is_err());
        assert!(validate_namespace(&"a".repeat(64)).is_err());
    }
}
