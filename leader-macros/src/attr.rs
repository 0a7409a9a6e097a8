//! Stage 1: parsing. The arguments of each attribute, every value kept with the span of its
//! literal, and the function the attribute is on, with its body left as tokens.
//!
//! Only syntax errors stop parsing. Unknown keys, keys given twice and values of the wrong kind
//! are collected in [`Errors`] so that [`valid`](crate::valid) can report them together with
//! everything else that is wrong.

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Attribute, Expr, ExprLit, Ident, Lit, Path, Signature, Token, Visibility, braced};

use crate::valid::Errors;

/// The keys of both attributes, except `crate`, which is a Rust keyword.
mod kw {
    syn::custom_keyword!(lease);
    syn::custom_keyword!(namespace);
    syn::custom_keyword!(lease_duration);
    syn::custom_keyword!(renew_deadline);
    syn::custom_keyword!(retry_period);
    syn::custom_keyword!(every);
    syn::custom_keyword!(flavor);
    syn::custom_keyword!(worker_threads);
    syn::custom_keyword!(identity);
    syn::custom_keyword!(runtime);
    syn::custom_keyword!(events);
}

/// An argument as given: its value and the span of the value's literal, where errors about the
/// value are reported. `None` when the argument was not given.
pub(crate) type Arg<T> = Option<(T, Span)>;

/// The arguments of `#[leader_only(...)]`.
#[derive(Default)]
pub(crate) struct LeaderOnlyArgs {
    pub(crate) lease: Arg<String>,
    pub(crate) namespace: Arg<String>,
    pub(crate) lease_duration: Arg<String>,
    pub(crate) renew_deadline: Arg<String>,
    pub(crate) retry_period: Arg<String>,
    pub(crate) every: Arg<String>,
    pub(crate) krate: Arg<Path>,
    /// Unknown keys, keys given twice, values of the wrong kind.
    pub(crate) errors: Errors,
}

const LEADER_ONLY_KEYS: &str = "`lease`, `namespace`, `lease_duration`, `renew_deadline`, \
                                `retry_period`, `every`, `crate`";

impl Parse for LeaderOnlyArgs {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut args = LeaderOnlyArgs::default();
        let errors = &mut args.errors;
        while !input.is_empty() {
            if input.peek(kw::lease) {
                arg::<kw::lease, _>(input, "lease", &mut args.lease, errors, string)?;
            } else if input.peek(kw::namespace) {
                arg::<kw::namespace, _>(input, "namespace", &mut args.namespace, errors, string)?;
            } else if input.peek(kw::lease_duration) {
                let slot = &mut args.lease_duration;
                arg::<kw::lease_duration, _>(input, "lease_duration", slot, errors, string)?;
            } else if input.peek(kw::renew_deadline) {
                let slot = &mut args.renew_deadline;
                arg::<kw::renew_deadline, _>(input, "renew_deadline", slot, errors, string)?;
            } else if input.peek(kw::retry_period) {
                let slot = &mut args.retry_period;
                arg::<kw::retry_period, _>(input, "retry_period", slot, errors, string)?;
            } else if input.peek(kw::every) {
                arg::<kw::every, _>(input, "every", &mut args.every, errors, string)?;
            } else if input.peek(Token![crate]) {
                arg::<Token![crate], _>(input, "crate", &mut args.krate, errors, path)?;
            } else {
                unknown(input, "`#[leader_only]`", LEADER_ONLY_KEYS, errors)?;
            }
            comma(input)?;
        }
        Ok(args)
    }
}

/// The arguments of `#[leader_main(...)]`.
#[derive(Default)]
pub(crate) struct LeaderMainArgs {
    pub(crate) flavor: Arg<String>,
    pub(crate) worker_threads: Arg<usize>,
    pub(crate) namespace: Arg<String>,
    pub(crate) identity: Arg<String>,
    pub(crate) runtime: Arg<Path>,
    pub(crate) events: Arg<bool>,
    pub(crate) krate: Arg<Path>,
    /// Unknown keys, keys given twice, values of the wrong kind.
    pub(crate) errors: Errors,
}

const LEADER_MAIN_KEYS: &str =
    "`flavor`, `worker_threads`, `namespace`, `identity`, `runtime`, `events`, `crate`";

impl Parse for LeaderMainArgs {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut args = LeaderMainArgs::default();
        let errors = &mut args.errors;
        while !input.is_empty() {
            if input.peek(kw::flavor) {
                arg::<kw::flavor, _>(input, "flavor", &mut args.flavor, errors, string)?;
            } else if input.peek(kw::worker_threads) {
                let slot = &mut args.worker_threads;
                arg::<kw::worker_threads, _>(input, "worker_threads", slot, errors, integer)?;
            } else if input.peek(kw::namespace) {
                arg::<kw::namespace, _>(input, "namespace", &mut args.namespace, errors, string)?;
            } else if input.peek(kw::identity) {
                arg::<kw::identity, _>(input, "identity", &mut args.identity, errors, string)?;
            } else if input.peek(kw::runtime) {
                arg::<kw::runtime, _>(input, "runtime", &mut args.runtime, errors, function_path)?;
            } else if input.peek(kw::events) {
                arg::<kw::events, _>(input, "events", &mut args.events, errors, boolean)?;
            } else if input.peek(Token![crate]) {
                arg::<Token![crate], _>(input, "crate", &mut args.krate, errors, path)?;
            } else {
                unknown(input, "`#[leader_main]`", LEADER_MAIN_KEYS, errors)?;
            }
            comma(input)?;
        }
        Ok(args)
    }
}

/// Parses `KEY = VALUE` into `slot`, or records why it cannot go there.
fn arg<K: Parse + Spanned, T>(
    input: ParseStream,
    name: &str,
    slot: &mut Arg<T>,
    errors: &mut Errors,
    value: fn(&Expr) -> syn::Result<T>,
) -> syn::Result<()> {
    let key: K = input.parse()?;
    input.parse::<Token![=]>()?;
    let expr: Expr = input.parse()?;
    if slot.is_some() {
        errors.push(syn::Error::new(
            key.span(),
            format!("`{name}` set more than once"),
        ));
        return Ok(());
    }
    match value(&expr) {
        Ok(value) => *slot = Some((value, expr.span())),
        Err(error) => errors.push(error),
    }
    Ok(())
}

/// Skips `KEY = VALUE` with a key that is none of `known`, and records the error.
fn unknown(
    input: ParseStream,
    attribute: &str,
    known: &str,
    errors: &mut Errors,
) -> syn::Result<()> {
    let key = input.call(Ident::parse_any).map_err(|error| {
        syn::Error::new(
            error.span(),
            format!("expected an argument of {attribute}: one of {known}"),
        )
    })?;
    errors.push(syn::Error::new(
        key.span(),
        format!("unknown argument `{key}`: {attribute} takes {known}"),
    ));
    if input.parse::<Option<Token![=]>>()?.is_some() {
        input.parse::<Expr>()?;
    }
    Ok(())
}

/// The `,` between arguments; a trailing one is allowed.
fn comma(input: ParseStream) -> syn::Result<()> {
    if !input.is_empty() {
        input.parse::<Token![,]>()?;
    }
    Ok(())
}

fn string(expr: &Expr) -> syn::Result<String> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Ok(lit.value()),
        _ => Err(syn::Error::new_spanned(expr, "expected a string literal")),
    }
}

fn boolean(expr: &Expr) -> syn::Result<bool> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(lit),
            ..
        }) => Ok(lit.value),
        _ => Err(syn::Error::new_spanned(expr, "expected `true` or `false`")),
    }
}

fn integer(expr: &Expr) -> syn::Result<usize> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) => lit.base10_parse(),
        _ => Err(syn::Error::new_spanned(expr, "expected an integer literal")),
    }
}

/// The path of a function, written bare (`runtime = build_runtime`).
fn function_path(expr: &Expr) -> syn::Result<Path> {
    match expr {
        Expr::Path(path) if path.qself.is_none() => Ok(path.path.clone()),
        other => Err(syn::Error::new_spanned(
            other,
            "expected the path of an `async fn() -> leader::Result<leader::runtime::Runtime>`, \
             like `runtime = build_runtime`",
        )),
    }
}

/// `crate = "path"`: the path the generated code reaches the `leader` crate through.
fn path(expr: &Expr) -> syn::Result<Path> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => lit.parse_with(Path::parse_mod_style).map_err(|_| {
            syn::Error::new(
                lit.span(),
                format!(
                    "`{}` is not a path; expected the path of the `leader` crate, like \
                     `crate = \"my_leader\"`",
                    lit.value()
                ),
            )
        }),
        _ => Err(syn::Error::new_spanned(
            expr,
            "expected a string literal with the path of the `leader` crate, like \
             `crate = \"my_leader\"`",
        )),
    }
}

/// The function an attribute is on. The body is kept as tokens: it is copied into the
/// expansion as it is and never needs to be understood.
pub(crate) struct Function {
    /// Outer attributes, doc comments included.
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) sig: Signature,
    /// `#![...]` attributes at the start of the body.
    pub(crate) inner_attrs: Vec<Attribute>,
    /// The body after its inner attributes.
    pub(crate) body: TokenStream,
}

impl Parse for Function {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis = input.parse()?;
        let sig = input.parse()?;
        let content;
        braced!(content in input);
        let inner_attrs = content.call(Attribute::parse_inner)?;
        let body = content.parse()?;
        Ok(Function {
            attrs,
            vis,
            sig,
            inner_attrs,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn leader_only(tokens: TokenStream) -> LeaderOnlyArgs {
        syn::parse2(tokens).expect("parses")
    }

    fn messages(errors: Errors) -> Vec<String> {
        match errors.finish() {
            Ok(()) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn parses_every_leader_only_argument() {
        let args = leader_only(quote! {
            lease = "billing", namespace = "jobs", lease_duration = "20s",
            renew_deadline = "15s", retry_period = "3s", every = "1m", crate = "::my::leader",
        });
        assert_eq!(args.lease.unwrap().0, "billing");
        assert_eq!(args.namespace.unwrap().0, "jobs");
        assert_eq!(args.lease_duration.unwrap().0, "20s");
        assert_eq!(args.renew_deadline.unwrap().0, "15s");
        assert_eq!(args.retry_period.unwrap().0, "3s");
        assert_eq!(args.every.unwrap().0, "1m");
        let krate = args.krate.unwrap().0;
        assert_eq!(quote!(#krate).to_string(), ":: my :: leader");
        assert!(messages(args.errors).is_empty());
    }

    #[test]
    fn collects_unknown_duplicate_and_mistyped_arguments() {
        let args = leader_only(quote! {
            lease = "a", lease = "b", leese = "c", namespace = 5,
        });
        assert_eq!(args.lease.unwrap().0, "a");
        assert_eq!(
            messages(args.errors),
            [
                "`lease` set more than once",
                "unknown argument `leese`: `#[leader_only]` takes `lease`, `namespace`, \
                 `lease_duration`, `renew_deadline`, `retry_period`, `every`, `crate`",
                "expected a string literal",
            ]
        );
    }

    #[test]
    fn a_key_without_value_is_a_syntax_error() {
        let error = syn::parse2::<LeaderOnlyArgs>(quote!(lease)).err().unwrap();
        assert_eq!(error.to_string(), "expected `=`");
    }

    #[test]
    fn parses_leader_main_arguments() {
        let args: LeaderMainArgs = syn::parse2(quote! {
            flavor = "multi_thread", worker_threads = 4, namespace = "jobs", identity = "me"
        })
        .unwrap();
        assert_eq!(args.flavor.unwrap().0, "multi_thread");
        assert_eq!(args.worker_threads.unwrap().0, 4);
        assert_eq!(args.namespace.unwrap().0, "jobs");
        assert_eq!(args.identity.unwrap().0, "me");
        assert!(messages(args.errors).is_empty());
    }

    #[test]
    fn keeps_the_body_as_tokens_and_inner_attributes_apart() {
        let function: Function = syn::parse2(quote! {
            /// Docs.
            pub async fn work(token: CancellationToken) -> u32 { #![allow(unused)] return 1; }
        })
        .unwrap();
        assert_eq!(function.attrs.len(), 1);
        assert_eq!(function.inner_attrs.len(), 1);
        assert_eq!(function.body.to_string(), "return 1 ;");
    }
}
