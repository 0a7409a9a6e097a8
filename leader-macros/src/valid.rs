//! Stage 2: validation. Checks the parsed arguments against each other and against the function,
//! and turns them into the final configuration that [`expand`](crate::expand) generates code
//! from. Every problem is collected before giving up, each at the span of the token it is about.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::punctuated::Punctuated;
use syn::{FnArg, Pat, PatType, ReturnType, Signature, Token, Type};

use crate::attr::{Arg, Function, LeaderMainArgs, LeaderOnlyArgs};

/// Errors collected on the way, reported together.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn error(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    fn error_spanned(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// `Err` with every collected error, if there were any.
    #[cfg(test)]
    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }

    /// The outcome: `config`, whether the function itself is wrong (`function_errors`), and
    /// every error, the function's last.
    fn checked<T>(mut self, function_errors: Errors, config: T) -> Checked<T> {
        let function_is_wrong = !function_errors.is_empty();
        if let Some(error) = function_errors.0 {
            self.push(error);
        }
        Checked {
            config: Some(config),
            function_is_wrong,
            errors: self.0,
        }
    }
}

/// What validation found.
pub(crate) struct Checked<T> {
    /// What to generate the function from, also when something is wrong: the function as
    /// intended spares its callers errors that are not theirs. `None` after a syntax error.
    pub(crate) config: Option<T>,
    /// The function itself is wrong (not `async`, no usable token parameter, ...): only its
    /// intended signature can be generated, with a body that never runs.
    pub(crate) function_is_wrong: bool,
    /// Every error found.
    pub(crate) errors: Option<syn::Error>,
}

impl<T> From<syn::Error> for Checked<T> {
    /// A syntax error: nothing to generate the function from.
    fn from(error: syn::Error) -> Self {
        Checked {
            config: None,
            function_is_wrong: true,
            errors: Some(error),
        }
    }
}

/// A validated `#[leader_only]`.
pub(crate) struct LeaderOnly {
    /// The `crate = "..."` override of the `leader` crate's path.
    pub(crate) krate: Option<TokenStream>,
    pub(crate) lease: String,
    pub(crate) namespace: Option<String>,
    /// `None` when no timing was given: the runtime's timings apply.
    pub(crate) timings: Option<Timings>,
    /// The period of the periodic form, in milliseconds; `None` for the one-shot form.
    pub(crate) every: Option<u64>,
    /// The function, without its token parameter.
    pub(crate) function: Function,
    /// The token parameter, `pat: ty`; `None` when it is missing or wrong (an error says which).
    pub(crate) token: Option<PatType>,
    /// The types of parameters removed as wrong tokens (a second token, a reference, ...).
    pub(crate) rejected: Vec<Type>,
}

/// The full set of election timings, in milliseconds, satisfying client-go's rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Timings {
    pub(crate) lease_duration: u64,
    pub(crate) renew_deadline: u64,
    pub(crate) retry_period: u64,
}

/// client-go's defaults, used for the timings that are not given when others are.
const DEFAULT_TIMINGS: Timings = Timings {
    lease_duration: 15_000,
    renew_deadline: 10_000,
    retry_period: 2_000,
};

/// A validated `#[leader_main]`.
pub(crate) struct LeaderMain {
    /// The `crate = "..."` override of the `leader` crate's path.
    pub(crate) krate: Option<TokenStream>,
    pub(crate) flavor: Flavor,
    pub(crate) worker_threads: Option<usize>,
    pub(crate) namespace: Option<String>,
    pub(crate) identity: Option<String>,
    /// `runtime = path`: the user's function that builds the runtime.
    pub(crate) runtime: Option<syn::Path>,
    /// Whether to record leader-election Events.
    pub(crate) events: bool,
    pub(crate) function: Function,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    CurrentThread,
    MultiThread,
}

const TOKEN_TYPES: [&str; 2] = ["CancellationToken", "Leadership"];

pub(crate) fn leader_only(args: LeaderOnlyArgs, mut function: Function) -> Checked<LeaderOnly> {
    let LeaderOnlyArgs {
        lease,
        namespace,
        lease_duration,
        renew_deadline,
        retry_period,
        every,
        krate,
        mut errors,
    } = args;

    let lease = match lease {
        Some((name, span)) => {
            check_name(&mut errors, &name, span, &NameRule::LEASE);
            name
        }
        None => {
            errors.error(
                Span::call_site(),
                "missing `lease`: name the Lease that elects the leader, like \
                 `#[leader_only(lease = \"billing-sync\")]`",
            );
            String::new()
        }
    };
    if let Some((namespace, span)) = &namespace {
        check_name(&mut errors, namespace, *span, &NameRule::NAMESPACE);
    }
    let timings = timings(&mut errors, lease_duration, renew_deadline, retry_period);
    let periodic = every.is_some();
    // An invalid period still makes the periodic form; the fallback's period never runs.
    let every = every.map(|(text, span)| match duration(&text, span) {
        Ok(0) => {
            errors.error(span, "`every` must be longer than zero");
            1
        }
        Ok(period) => period,
        Err(error) => {
            errors.push(error);
            1
        }
    });

    let mut function_errors = Errors::default();
    check_signature(
        &mut function_errors,
        &function.sig,
        "a leader-only function",
    );
    let (token, rejected) = take_token(&mut function_errors, &mut function.sig);
    if periodic {
        check_periodic(&mut function_errors, &function.sig);
    }
    let config = LeaderOnly {
        krate: krate_path(krate),
        lease,
        namespace: namespace.map(|(namespace, _)| namespace),
        timings,
        every,
        function,
        token,
        rejected,
    };
    errors.checked(function_errors, config)
}

pub(crate) fn leader_main(args: LeaderMainArgs, function: Function) -> Checked<LeaderMain> {
    let LeaderMainArgs {
        flavor,
        worker_threads,
        namespace,
        identity,
        runtime,
        events,
        krate,
        mut errors,
    } = args;

    let flavor = match flavor {
        None => Flavor::MultiThread,
        Some((flavor, span)) => match flavor.as_str() {
            "multi_thread" => Flavor::MultiThread,
            "current_thread" => Flavor::CurrentThread,
            _ => {
                errors.error(
                    span,
                    format!(
                        "unknown flavor `{flavor}`: expected `current_thread` or `multi_thread`"
                    ),
                );
                Flavor::MultiThread
            }
        },
    };
    if let Some((threads, span)) = worker_threads {
        if flavor == Flavor::CurrentThread {
            errors.error(
                span,
                "`worker_threads` is for the `multi_thread` flavor; the `current_thread` flavor \
                 runs everything on the thread that calls `main`: remove one of them",
            );
        } else if threads == 0 {
            errors.error(span, "`worker_threads` must be at least 1");
        }
    }
    if let Some((namespace, span)) = &namespace {
        check_name(&mut errors, namespace, *span, &NameRule::NAMESPACE);
    }
    if let Some((identity, span)) = &identity
        && identity.is_empty()
    {
        errors.error(*span, "`identity` must not be empty");
    }
    if runtime.is_some() {
        for (key, span) in [
            ("namespace", namespace.as_ref().map(|n| n.1)),
            ("identity", identity.as_ref().map(|i| i.1)),
            ("events", events.as_ref().map(|e| e.1)),
        ] {
            if let Some(span) = span {
                errors.error(
                    span,
                    format!("`{key}` has no effect with `runtime = ...`: set it on the runtime's builder"),
                );
            }
        }
    }

    let sig = &function.sig;
    let mut function_errors = Errors::default();
    check_signature(&mut function_errors, sig, "`#[leader_main]`'s function");
    if sig.ident != "main" {
        function_errors.error(
            sig.ident.span(),
            format!(
                "`#[leader_main]` goes on `async fn main()`, not on `{}`; for other functions \
                 use `#[leader_only(lease = \"...\")]`",
                sig.ident
            ),
        );
    }
    if !sig.inputs.is_empty() {
        function_errors.error_spanned(
            &sig.inputs,
            "`main` takes no arguments; read them with `std::env::args()`",
        );
    }

    let config = LeaderMain {
        krate: krate_path(krate),
        flavor,
        worker_threads: worker_threads.map(|(threads, _)| threads),
        namespace: namespace.map(|(namespace, _)| namespace),
        identity: identity.map(|(identity, _)| identity),
        runtime: runtime.map(|(runtime, _)| runtime),
        events: events.is_none_or(|(events, _)| events),
        function,
    };
    errors.checked(function_errors, config)
}

/// What both attributes require of the function's signature: `async fn`, no `const`, `unsafe`
/// or `extern`, not generic, no variadic.
fn check_signature(errors: &mut Errors, sig: &Signature, what: &str) {
    if let Some(constness) = &sig.constness {
        errors.error(constness.span, format!("{what} cannot be `const`"));
    }
    if sig.asyncness.is_none() {
        errors.error(
            sig.fn_token.span,
            format!("{what} must be `async`: write `async fn`"),
        );
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.error(unsafety.span, format!("{what} cannot be `unsafe`"));
    }
    if let Some(abi) = &sig.abi {
        errors.error_spanned(abi, format!("{what} cannot be `extern`"));
    }
    if !sig.generics.params.is_empty() {
        errors.error_spanned(
            &sig.generics,
            format!("{what} cannot be generic: it runs as a task of the leader runtime"),
        );
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        errors.error_spanned(where_clause, format!("{what} cannot have a `where` clause"));
    }
    if let Some(variadic) = &sig.variadic {
        errors.error_spanned(variadic, format!("{what} cannot be variadic"));
    }
}

/// Finds the token parameter and removes it from the signature, together with parameters that
/// look meant as the token but have the wrong type (reported), so that the signature left is
/// the one callers use. Returns the token and the types of the parameters rejected as tokens.
fn take_token(errors: &mut Errors, sig: &mut Signature) -> (Option<PatType>, Vec<Type>) {
    let mut token = None;
    let mut rejected = Vec::new();
    let mut reported = false;
    let mut rest = Punctuated::<FnArg, Token![,]>::new();
    for arg in std::mem::take(&mut sig.inputs) {
        let param = match arg {
            FnArg::Receiver(receiver) => {
                errors.error_spanned(
                    &receiver,
                    "a leader-only function cannot take `self`: it runs as a task of the leader \
                     runtime, apart from the value; make it an associated function and pass \
                     what it needs by value",
                );
                // Kept for the stub that is generated instead (see `Checked`), as callers use it.
                rest.push(FnArg::Receiver(receiver));
                continue;
            }
            FnArg::Typed(param) => param,
        };
        if is_token_type(&param.ty) {
            if token.is_some() {
                errors.error_spanned(
                    &param,
                    "a leader-only function takes one token parameter; this is a second one",
                );
                rejected.push(*param.ty);
            } else {
                token = Some(param);
            }
            reported = true;
        } else if is_token_reference(&param.ty) || is_token_name(&param.pat) {
            errors.error_spanned(
                &param.ty,
                "wrong token type: take `leader::CancellationToken` or `leader::Leadership` by \
                 value",
            );
            rejected.push(*param.ty);
            reported = true;
        } else {
            rest.push(FnArg::Typed(param));
        }
    }
    sig.inputs = rest;
    if token.is_none() && !reported {
        errors.error(
            sig.paren_token.span.join(),
            "a leader-only function takes its leadership token: add a parameter \
             `token: leader::CancellationToken` (or `leader::Leadership` for the fencing token)",
        );
    }
    (token, rejected)
}

/// `CancellationToken`, `Leadership` or a path ending in one of them.
fn is_token_type(ty: &Type) -> bool {
    match ty {
        Type::Path(path) if path.qself.is_none() => path
            .path
            .segments
            .last()
            .is_some_and(|last| TOKEN_TYPES.iter().any(|name| last.ident == name)),
        Type::Group(group) => is_token_type(&group.elem),
        Type::Paren(paren) => is_token_type(&paren.elem),
        _ => false,
    }
}

fn is_token_reference(ty: &Type) -> bool {
    matches!(ty, Type::Reference(reference) if is_token_type(&reference.elem))
}

/// A parameter named as if it were the token.
fn is_token_name(pat: &Pat) -> bool {
    matches!(pat, Pat::Ident(ident) if ident.ident == "token" || ident.ident == "leadership")
}

fn check_periodic(errors: &mut Errors, sig: &Signature) {
    if let ReturnType::Type(_, ty) = &sig.output
        && !matches!(&**ty, Type::Tuple(tuple) if tuple.elems.is_empty())
    {
        errors.error_spanned(
            ty,
            "a periodic leader-only function returns nothing: it runs on every tick, and \
             calling it returns `Result<(), leader::Error>` when the runtime shuts down",
        );
    }
}

/// The timings, if any is given: the missing ones take client-go's defaults, and the set must
/// satisfy `lease_duration > renew_deadline > 1.2 x retry_period > 0`. Each broken part of the
/// rule is reported at the literal that breaks it: of the two values compared, the one on the
/// right if it was given, else the one on the left.
fn timings(
    errors: &mut Errors,
    lease_duration: Arg<String>,
    renew_deadline: Arg<String>,
    retry_period: Arg<String>,
) -> Option<Timings> {
    if lease_duration.is_none() && renew_deadline.is_none() && retry_period.is_none() {
        return None;
    }
    let mut setting = |arg: Arg<String>, default: u64| match arg {
        None => Some(Setting {
            millis: default,
            span: None,
        }),
        Some((text, span)) => duration(&text, span)
            .map(|millis| Setting {
                millis,
                span: Some(span),
            })
            .map_err(|error| errors.push(error))
            .ok(),
    };
    let lease = setting(lease_duration, DEFAULT_TIMINGS.lease_duration);
    let renew = setting(renew_deadline, DEFAULT_TIMINGS.renew_deadline);
    let retry = setting(retry_period, DEFAULT_TIMINGS.retry_period);

    const RULE: &str = "client-go's rule is `lease_duration > renew_deadline > 1.2 x \
                        retry_period > 0`";
    let mut broken = false;
    let mut fail = |span: Option<Span>, message: String| {
        let span = span.expect("a broken rule involves a value that was given");
        errors.error(span, format!("{message}; {RULE}"));
        broken = true;
    };
    if let Some(lease) = &lease {
        if !lease.millis.is_multiple_of(1000) {
            fail(
                lease.span,
                format!(
                    "`lease_duration` must be whole seconds, as the Lease stores \
                     leaseDurationSeconds: {} is not",
                    lease.show()
                ),
            );
        } else if lease.millis / 1000 > u64::from(i32::MAX.unsigned_abs()) {
            fail(
                lease.span,
                format!("`lease_duration` {} is too long", lease.show()),
            );
        }
    }
    if let (Some(lease), Some(renew)) = (&lease, &renew)
        && lease.millis <= renew.millis
    {
        if renew.span.is_some() {
            fail(
                renew.span,
                format!(
                    "`renew_deadline` {} must be shorter than `lease_duration` {}",
                    renew.show(),
                    lease.show()
                ),
            );
        } else {
            fail(
                lease.span,
                format!(
                    "`lease_duration` {} must be longer than `renew_deadline` {}",
                    lease.show(),
                    renew.show()
                ),
            );
        }
    }
    if let Some(retry) = &retry
        && retry.millis == 0
    {
        fail(
            retry.span,
            "`retry_period` must be longer than zero".to_owned(),
        );
    } else if let (Some(renew), Some(retry)) = (&renew, &retry)
        && renew.millis * 10 <= retry.millis * 12
    {
        let jittered = show_tenths(retry.millis * 12);
        if retry.span.is_some() {
            fail(
                retry.span,
                format!(
                    "`retry_period` {} is too long for `renew_deadline` {}: 1.2 x {} = \
                     {jittered} must be shorter than the renew deadline",
                    retry.show(),
                    renew.show(),
                    show_millis(retry.millis)
                ),
            );
        } else {
            fail(
                renew.span,
                format!(
                    "`renew_deadline` {} must be longer than 1.2 x `retry_period` {} = \
                     {jittered}",
                    renew.show(),
                    retry.show()
                ),
            );
        }
    }
    match (lease, renew, retry) {
        (Some(lease), Some(renew), Some(retry)) if !broken => Some(Timings {
            lease_duration: lease.millis,
            renew_deadline: renew.millis,
            retry_period: retry.millis,
        }),
        _ => None,
    }
}

/// One timing with where it came from: the literal's span, or `None` for the default.
struct Setting {
    millis: u64,
    span: Option<Span>,
}

impl Setting {
    fn show(&self) -> String {
        let value = show_millis(self.millis);
        match self.span {
            Some(_) => format!("({value})"),
            None => format!("({value}, the default)"),
        }
    }
}

fn show_millis(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

/// A duration given in tenths of milliseconds.
fn show_tenths(tenths: u64) -> String {
    if tenths >= 10_000 {
        let (seconds, fraction) = (tenths / 10_000, tenths % 10_000);
        if fraction == 0 {
            format!("{seconds}s")
        } else {
            let fraction = format!("{fraction:04}");
            format!("{seconds}.{}s", fraction.trim_end_matches('0'))
        }
    } else if tenths.is_multiple_of(10) {
        format!("{}ms", tenths / 10)
    } else {
        format!("{}.{}ms", tenths / 10, tenths % 10)
    }
}

/// A duration literal, `<integer>ms|s|m|h`, in milliseconds.
pub(crate) fn duration(text: &str, span: Span) -> syn::Result<u64> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let scale: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => 0,
    };
    if number.is_empty() || scale == 0 {
        return Err(syn::Error::new(
            span,
            format!(
                "`{text}` is not a duration: write a whole number and a unit, `ms`, `s`, `m` \
                 or `h`, like \"500ms\", \"2s\" or \"1m\""
            ),
        ));
    }
    number
        .parse::<u64>()
        .ok()
        .and_then(|number| number.checked_mul(scale))
        .ok_or_else(|| syn::Error::new(span, format!("`{text}` is too long")))
}

/// The Kubernetes object-name rule a name must follow.
struct NameRule {
    what: &'static str,
    kind: &'static str,
    max_len: usize,
    dots: bool,
}

impl NameRule {
    const LEASE: NameRule = NameRule {
        what: "lease name",
        kind: "DNS-1123 subdomain",
        max_len: 253,
        dots: true,
    };
    const NAMESPACE: NameRule = NameRule {
        what: "namespace",
        kind: "DNS-1123 label",
        max_len: 63,
        dots: false,
    };
}

/// Checks a lease name (DNS-1123 subdomain) or namespace (DNS-1123 label), as the runtime does.
fn check_name(errors: &mut Errors, value: &str, span: Span, rule: &NameRule) {
    if let Err(reason) = name_problem(value, rule) {
        let parts = if rule.dots {
            ", each `.`-separated part starting and ending with a letter or digit"
        } else {
            ", starting and ending with a letter or digit"
        };
        errors.error(
            span,
            format!(
                "invalid {what}: {reason}; a {what} is a {kind}: at most {max} characters of {allowed}{parts}",
                what = rule.what,
                kind = rule.kind,
                max = rule.max_len,
                allowed = allowed(rule),
            ),
        );
    }
}

fn allowed(rule: &NameRule) -> &'static str {
    if rule.dots {
        "lowercase letters, digits, `-` and `.`"
    } else {
        "lowercase letters, digits and `-`"
    }
}

fn name_problem(value: &str, rule: &NameRule) -> Result<(), String> {
    if value.is_empty() {
        return Err("it is empty".into());
    }
    if value.len() > rule.max_len {
        return Err(format!(
            "it has {} characters, at most {} are allowed",
            value.len(),
            rule.max_len
        ));
    }
    let allowed_char = |c: char| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (rule.dots && c == '.')
    };
    if let Some(bad) = value.chars().find(|&c| !allowed_char(c)) {
        let uppercase = if bad.is_ascii_uppercase() {
            "uppercase "
        } else {
            ""
        };
        return Err(format!("{uppercase}`{bad}` is not allowed"));
    }
    let alphanumeric = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !alphanumeric(value.chars().next()) || !alphanumeric(value.chars().last()) {
        return Err("it must start and end with a letter or digit".into());
    }
    if let Some(part) = value
        .split('.')
        .find(|part| !alphanumeric(part.chars().next()) || !alphanumeric(part.chars().last()))
    {
        return Err(format!(
            "each `.`-separated part must start and end with a letter or digit, `{part}` does not"
        ));
    }
    Ok(())
}

/// The `crate = "..."` override, located at its literal but resolving like the rest of the
/// generated code.
fn krate_path(krate: Arg<syn::Path>) -> Option<TokenStream> {
    let (path, _) = krate?;
    let respanned = path.into_token_stream().into_iter().map(|mut token| {
        token.set_span(Span::call_site().located_at(token.span()));
        token
    });
    Some(respanned.collect())
}

/// Whether a type mentions `impl Trait`, which cannot be named in a `let` binding.
pub(crate) fn contains_impl_trait(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|token| match token {
        TokenTree::Ident(ident) => ident == "impl",
        TokenTree::Group(group) => contains_impl_trait(group.stream()),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn rule_errors(value: &str, rule: &NameRule) -> String {
        name_problem(value, rule).unwrap_err()
    }

    #[test]
    fn parses_durations() {
        let span = Span::call_site();
        assert_eq!(duration("500ms", span).unwrap(), 500);
        assert_eq!(duration("2s", span).unwrap(), 2_000);
        assert_eq!(duration("1m", span).unwrap(), 60_000);
        assert_eq!(duration("1h", span).unwrap(), 3_600_000);
        assert_eq!(duration("0s", span).unwrap(), 0);
        for bad in ["", "s", "2", "1.5s", "2 s", "-1s", "2d", "2S", "ms5"] {
            assert!(duration(bad, span).is_err(), "{bad:?} accepted");
        }
        let long = duration("99999999999999999999h", span).unwrap_err();
        assert!(long.to_string().contains("too long"));
    }

    #[test]
    fn names_follow_the_runtime_rules() {
        for name in ["a", "billing-sync", "my.lease-1", "0", &"a".repeat(253)] {
            name_problem(name, &NameRule::LEASE).unwrap();
        }
        assert_eq!(rule_errors("", &NameRule::LEASE), "it is empty");
        assert_eq!(
            rule_errors("Billing", &NameRule::LEASE),
            "uppercase `B` is not allowed"
        );
        assert_eq!(rule_errors("a_b", &NameRule::LEASE), "`_` is not allowed");
        assert_eq!(
            rule_errors("-a", &NameRule::LEASE),
            "it must start and end with a letter or digit"
        );
        assert!(rule_errors("a..b", &NameRule::LEASE).contains("`.`-separated part"));
        assert!(rule_errors("a.-b", &NameRule::LEASE).contains("`-b` does not"));
        assert!(rule_errors(&"a".repeat(254), &NameRule::LEASE).contains("254 characters"));
        assert_eq!(
            rule_errors("a.b", &NameRule::NAMESPACE),
            "`.` is not allowed"
        );
        assert!(rule_errors(&"a".repeat(64), &NameRule::NAMESPACE).contains("at most 63"));
    }

    fn check(
        lease: Option<&str>,
        renew: Option<&str>,
        retry: Option<&str>,
    ) -> Result<Option<Timings>, Vec<String>> {
        let arg = |text: Option<&str>| text.map(|text| (text.to_owned(), Span::call_site()));
        let mut errors = Errors::default();
        let timings = timings(&mut errors, arg(lease), arg(renew), arg(retry));
        match errors.finish() {
            Ok(()) => Ok(timings),
            Err(error) => Err(error.into_iter().map(|e| e.to_string()).collect()),
        }
    }

    #[test]
    fn missing_timings_take_client_go_defaults() {
        assert_eq!(check(None, None, None), Ok(None));
        assert_eq!(
            check(Some("30s"), None, None),
            Ok(Some(Timings {
                lease_duration: 30_000,
                ..DEFAULT_TIMINGS
            }))
        );
        assert_eq!(
            check(Some("4s"), Some("3s"), Some("500ms")),
            Ok(Some(Timings {
                lease_duration: 4_000,
                renew_deadline: 3_000,
                retry_period: 500,
            }))
        );
    }

    #[test]
    fn timings_follow_client_go_rule() {
        let only = |result: Result<Option<Timings>, Vec<String>>| {
            let errors = result.unwrap_err();
            assert_eq!(errors.len(), 1, "{errors:?}");
            errors.into_iter().next().unwrap()
        };
        assert!(only(check(None, Some("20s"), None)).starts_with(
            "`renew_deadline` (20s) must be shorter than `lease_duration` (15s, the default)"
        ));
        assert!(only(check(Some("5s"), None, None)).starts_with(
            "`lease_duration` (5s) must be longer than `renew_deadline` (10s, the default)"
        ));
        assert!(only(check(None, None, Some("9s"))).starts_with(
            "`retry_period` (9s) is too long for `renew_deadline` (10s, the default): 1.2 x 9s = \
             10.8s"
        ));
        assert!(only(check(None, Some("2s"), None)).starts_with(
            "`renew_deadline` (2s) must be longer than 1.2 x `retry_period` (2s, the default) = 2.4s"
        ));
        assert!(only(check(None, None, Some("0ms"))).contains("longer than zero"));
        assert!(only(check(Some("1500ms"), Some("1s"), Some("1ms"))).contains("whole seconds"));
        // 1.2 x 5s = 6s exactly: not longer.
        assert!(check(Some("10s"), Some("6s"), Some("5s")).is_err());
        check(Some("10s"), Some("6001ms"), Some("5s")).unwrap();
        assert!(check(None, Some("10"), None).unwrap_err()[0].contains("not a duration"));
        // The pairs that parsed are still checked.
        let errors = check(Some("5s"), None, Some("2 s")).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("not a duration"));
        assert!(errors[1].starts_with("`lease_duration` (5s) must be longer"));
    }

    #[test]
    fn finds_impl_trait() {
        assert!(contains_impl_trait(quote!(Box<impl Send>)));
        assert!(!contains_impl_trait(quote!(Vec<u32>)));
    }
}
