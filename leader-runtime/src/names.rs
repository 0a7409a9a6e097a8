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
}
