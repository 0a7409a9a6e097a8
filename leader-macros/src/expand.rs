//! Stage 3: code generation, and the entry points that run the three stages.
//!
//! Generated code reaches everything through `::leader::__private` (or the `crate = "..."`
//! override) and `::core`, and names its locals `__leader_*`. Generated tokens resolve at the
//! call site but are located at the user's tokens they stand for (`Span::call_site().located_at`),
//! so errors point at the user's code while lints treat the tokens as macro output.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{AttrStyle, Attribute, PatType, ReturnType, Signature};

use crate::attr::{Function, LeaderMainArgs, LeaderOnlyArgs};
use crate::valid::{self, Checked, Flavor, LeaderMain, LeaderOnly};

/// `#[leader_only(...)]`. See [`emit`] for what comes out when something is wrong.
pub(crate) fn leader_only(args: TokenStream, item: TokenStream) -> TokenStream {
    let checked = match parse_both::<LeaderOnlyArgs>(args, item.clone()) {
        Ok((args, function)) => valid::leader_only(args, function),
        Err(error) => error.into(),
    };
    emit(item, checked, leader_only_fn)
}

/// `#[leader_main(...)]`. See [`emit`] for what comes out when something is wrong.
pub(crate) fn leader_main(args: TokenStream, item: TokenStream) -> TokenStream {
    let checked = match parse_both::<LeaderMainArgs>(args, item.clone()) {
        Ok((args, function)) => valid::leader_main(args, function),
        Err(error) => error.into(),
    };
    emit(item, checked, leader_main_fn)
}

/// The generated function, followed by the errors if there are any. When the function itself
/// is wrong there is nothing to generate it from, and the user's item comes out unchanged
/// instead, so that the rest of their crate still type-checks.
fn emit<T>(item: TokenStream, checked: Checked<T>, expand: fn(T) -> TokenStream) -> TokenStream {
    let mut tokens = checked.config.map_or(item, expand);
    if let Some(errors) = checked.errors {
        tokens.extend(errors.into_compile_error());
    }
    tokens
}

/// Parses the arguments and the function, reporting the syntax errors of both.
fn parse_both<A: syn::parse::Parse>(
    args: TokenStream,
    item: TokenStream,
) -> syn::Result<(A, Function)> {
    match (syn::parse2::<A>(args), syn::parse2::<Function>(item)) {
        (Ok(args), Ok(function)) => Ok((args, function)),
        (Err(mut error), Err(item_error)) => {
            error.combine(item_error);
            Err(error)
        }
        (Err(error), Ok(_)) | (Ok(_), Err(error)) => Err(error),
    }
}

fn leader_only_fn(config: LeaderOnly) -> TokenStream {
    let LeaderOnly {
        krate,
        lease,
        namespace,
        timings,
        every,
        function,
        token,
    } = config;
    let Function {
        attrs,
        vis,
        mut sig,
        inner_attrs,
        body,
    } = function;
    let attrs = outer_attrs(attrs, inner_attrs);
    // Where the election plumbing is located, for errors about the work as a whole (a future
    // that is not `Send`, a parameter that is not `'static`): the function's name.
    let at = Span::call_site().located_at(sig.ident.span());

    let namespace = optional(at, namespace.map(|namespace| namespace.into_token_stream()));
    let leader = krate_at(krate.as_ref(), at);
    let config = optional(
        at,
        timings.map(|timings| {
            let millis = |millis: u64| proc_macro2::Literal::u64_unsuffixed(millis);
            let lease_duration = millis(timings.lease_duration);
            let renew_deadline = millis(timings.renew_deadline);
            let retry_period = millis(timings.retry_period);
            quote_spanned! {at=>
                #leader::__private::ElectionConfig {
                    lease_duration: #leader::__private::Duration::from_millis(#lease_duration),
                    renew_deadline: #leader::__private::Duration::from_millis(#renew_deadline),
                    retry_period: #leader::__private::Duration::from_millis(#retry_period),
                }
            }
        }),
    );
    let election = quote_spanned! {at=>
        #leader::__private::election(#lease, #namespace, #config)
    };
    let work = work_block(krate.as_ref(), token, &sig, &body);

    let output = match &sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => ty.to_token_stream(),
    };
    let output_at = Span::call_site().located_at(match &sig.output {
        ReturnType::Default => sig.ident.span(),
        ReturnType::Type(_, ty) => ty.span(),
    });
    let error = {
        let leader = krate_at(krate.as_ref(), output_at);
        quote_spanned!(output_at=> #leader::__private::Error)
    };
    let fn_body = match every {
        None => {
            sig.output = syn::parse_quote_spanned! {output_at=>
                -> ::core::result::Result<#output, #error>
            };
            quote_spanned! {at=>
                let __leader_election = #election?;
                __leader_election.lead(move |__leader_leadership| #work).await
            }
        }
        Some(period) => {
            sig.output = syn::parse_quote_spanned! {output_at=>
                -> ::core::result::Result<(), #error>
            };
            let period = proc_macro2::Literal::u64_unsuffixed(period);
            quote_spanned! {at=>
                #leader::__private::lead_every(
                    #election,
                    #leader::__private::Duration::from_millis(#period),
                    |__leader_leadership| #work,
                )
                .await
            }
        }
    };
    quote! {
        #(#attrs)*
        #vis #sig {
            #fn_body
        }
    }
}

/// The async block that runs the user's body with the token parameter bound, typed by the
/// function's declared return type.
fn work_block(
    krate: Option<&TokenStream>,
    token: PatType,
    sig: &Signature,
    body: &TokenStream,
) -> TokenStream {
    let PatType { attrs, pat, ty, .. } = token;
    // Errors about the token's type (`FromLeadership` not implemented) land on the type.
    let ty_at = Span::call_site().located_at(ty.span());
    let leader = krate_at(krate, ty_at);
    let from_leadership = quote_spanned! {ty_at=>
        #leader::__private::FromLeadership::from_leadership(__leader_leadership)
    };
    let typed = typed_output(sig);
    quote! {
        async move {
            #(#attrs)*
            let #pat: #ty = #from_leadership;
            #typed
            #body
        }
    }
}

/// A statement that fixes the output type of the async block it starts to the function's
/// declared return type before the body is type-checked, so that `return x` and `?` in the body
/// behave as in the original `async fn` and a mismatch is reported at the offending expression.
/// It never runs. Return types with `impl Trait` cannot be named in a `let` and are inferred
/// from the body instead.
fn typed_output(sig: &Signature) -> TokenStream {
    let (ty, at) = match &sig.output {
        ReturnType::Default => (quote!(()), Span::call_site().located_at(sig.ident.span())),
        ReturnType::Type(_, ty) => (
            respan(ty.to_token_stream()),
            Span::call_site().located_at(ty.span()),
        ),
    };
    if valid::contains_impl_trait(ty.clone()) {
        return TokenStream::new();
    }
    quote_spanned! {at=>
        #[allow(
            unreachable_code,
            clippy::diverging_sub_expression,
            clippy::empty_loop,
            clippy::let_unit_value,
            clippy::needless_return
        )]
        if false {
            let __leader_output: #ty = loop {};
            return __leader_output;
        }
    }
}

/// `::core::option::Option::Some(value)` or `::core::option::Option::None`, located at `at`.
fn optional(at: Span, value: Option<TokenStream>) -> TokenStream {
    match value {
        Some(value) => quote_spanned!(at=> ::core::option::Option::Some(#value)),
        None => quote_spanned!(at=> ::core::option::Option::None),
    }
}

fn leader_main_fn(config: LeaderMain) -> TokenStream {
    let LeaderMain {
        krate,
        flavor,
        worker_threads,
        namespace,
        identity,
        runtime,
        function,
    } = config;
    let Function {
        attrs,
        vis,
        mut sig,
        inner_attrs,
        body,
    } = function;
    let attrs = outer_attrs(attrs, inner_attrs);
    let at = Span::call_site().located_at(sig.ident.span());
    let flavor = match flavor {
        Flavor::CurrentThread => quote_spanned!(at=> CurrentThread),
        Flavor::MultiThread => quote_spanned!(at=> MultiThread),
    };
    let option = |value: Option<TokenStream>| optional(at, value);
    let worker_threads = option(
        worker_threads
            .map(|threads| proc_macro2::Literal::usize_unsuffixed(threads).into_token_stream()),
    );
    let namespace = option(namespace.map(|namespace| namespace.into_token_stream()));
    let identity = option(identity.map(|identity| identity.into_token_stream()));
    let runtime = option(runtime.map(|runtime| {
        let boxed = quote_spanned!(runtime.span()=> ::std::boxed::Box::pin(#runtime()));
        quote_spanned!(at=> || #boxed)
    }));
    let typed = typed_output(&sig);
    sig.asyncness = None;
    let leader = krate_at(krate.as_ref(), at);
    let run = quote_spanned! {at=>
        #leader::__private::run_main(
            #leader::__private::MainOptions {
                flavor: #leader::__private::Flavor::#flavor,
                worker_threads: #worker_threads,
                namespace: #namespace,
                identity: #identity,
                runtime: #runtime,
            },
            async move {
                #typed
                #body
            },
        )
    };
    quote! {
        #(#attrs)*
        #vis #sig {
            #run
        }
    }
}

/// The path of the `leader` crate: the `crate = "..."` override, or `::leader` located at `at`.
fn krate_at(krate: Option<&TokenStream>, at: Span) -> TokenStream {
    match krate {
        Some(path) => path.clone(),
        None => quote_spanned!(at=> ::leader),
    }
}

/// The function's attributes, with those written inside its body (`#![...]`) moved onto it:
/// the generated body starts with statements of its own, where inner attributes cannot go.
fn outer_attrs(mut attrs: Vec<Attribute>, inner: Vec<Attribute>) -> Vec<Attribute> {
    attrs.extend(inner.into_iter().map(|mut attr| {
        attr.style = AttrStyle::Outer;
        attr
    }));
    attrs
}

/// The tokens, resolving like generated code but located where they were.
fn respan(tokens: TokenStream) -> TokenStream {
    tokens
        .into_iter()
        .map(|token| match token {
            TokenTree::Group(group) => {
                let mut respanned =
                    proc_macro2::Group::new(group.delimiter(), respan(group.stream()));
                respanned.set_span(Span::call_site().located_at(group.span()));
                TokenTree::Group(respanned)
            }
            mut token => {
                token.set_span(Span::call_site().located_at(token.span()));
                token
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(
        entry: fn(TokenStream, TokenStream) -> TokenStream,
        args: TokenStream,
        item: TokenStream,
    ) -> String {
        entry(args, item).to_string()
    }

    #[test]
    fn one_shot_wraps_the_body_in_the_election() {
        let out = expand(
            leader_only,
            quote!(lease = "billing-sync"),
            quote! {
                /// Docs.
                pub async fn sync(token: CancellationToken, batch: usize) -> u32 { 7 }
            },
        );
        let expected = quote! {
            #[doc = r" Docs."]
            pub async fn sync(batch: usize)
                -> ::core::result::Result<u32, ::leader::__private::Error>
            {
                let __leader_election = ::leader::__private::election(
                    "billing-sync",
                    ::core::option::Option::None,
                    ::core::option::Option::None
                )?;
                __leader_election.lead(move |__leader_leadership| async move {
                    let token: CancellationToken =
                        ::leader::__private::FromLeadership::from_leadership(__leader_leadership);
                    #[allow(
                        unreachable_code,
                        clippy::diverging_sub_expression,
                        clippy::empty_loop,
                        clippy::let_unit_value,
                        clippy::needless_return
                    )]
                    if false {
                        let __leader_output: u32 = loop {};
                        return __leader_output;
                    }
                    7
                }).await
            }
        };
        assert_eq!(out, expected.to_string());
    }

    #[test]
    fn timings_namespace_and_crate_override() {
        let out = expand(
            leader_only,
            quote! {
                lease = "a", namespace = "jobs", retry_period = "500ms", crate = "my_leader"
            },
            quote!(
                async fn work(token: CancellationToken) {}
            ),
        );
        assert!(out.contains(
            ":: core :: option :: Option :: Some (\"jobs\") , :: core :: option :: Option :: \
             Some (my_leader :: __private :: ElectionConfig { lease_duration : my_leader :: \
             __private :: Duration :: from_millis (15000) , renew_deadline : my_leader :: \
             __private :: Duration :: from_millis (10000) , retry_period : my_leader :: \
             __private :: Duration :: from_millis (500) , })"
        ));
        assert!(!out.contains(":: leader ::"), "{out}");
    }

    #[test]
    fn periodic_form_runs_every_period() {
        let out = expand(
            leader_only,
            quote!(lease = "a", every = "1m"),
            quote!(
                async fn tick(leadership: Leadership) {}
            ),
        );
        assert!(out.starts_with(
            "async fn tick () -> :: core :: result :: Result < () , :: leader :: __private :: \
             Error > { :: leader :: __private :: lead_every (:: leader :: __private :: election \
             (\"a\" , :: core :: option :: Option :: None , :: core :: option :: Option :: None) \
             , :: leader :: __private :: Duration :: from_millis (60000) , | __leader_leadership \
             | async move {"
        ));
    }

    #[test]
    fn leader_main_runs_the_body_in_run_main() {
        let out = expand(
            leader_main,
            quote!(flavor = "multi_thread", worker_threads = 2, identity = "me"),
            quote!(
                async fn main() {
                    #![allow(unused)]
                    work().await;
                }
            ),
        );
        let expected = quote! {
            #[allow(unused)]
            fn main() {
                ::leader::__private::run_main(
                    ::leader::__private::MainOptions {
                        flavor: ::leader::__private::Flavor::MultiThread,
                        worker_threads: ::core::option::Option::Some(2),
                        namespace: ::core::option::Option::None,
                        identity: ::core::option::Option::Some("me"),
                        runtime: ::core::option::Option::None,
                    },
                    async move {
                        #[allow(
                            unreachable_code,
                            clippy::diverging_sub_expression,
                            clippy::empty_loop,
                            clippy::let_unit_value,
                            clippy::needless_return
                        )]
                        if false {
                            let __leader_output: () = loop {};
                            return __leader_output;
                        }
                        work().await;
                    },
                )
            }
        };
        assert_eq!(out, expected.to_string());
    }

    #[test]
    fn on_error_the_item_is_kept_and_every_error_reported() {
        let item = quote!(
            fn work(token: CancellationToken) {}
        );
        let out = expand(
            leader_only,
            quote!(lease = "Bad", every = "soon"),
            item.clone(),
        );
        assert!(out.starts_with(&item.to_string()), "{out}");
        assert_eq!(out.matches("compile_error").count(), 3, "{out}");
    }

    #[test]
    fn with_only_argument_errors_the_function_is_generated() {
        let out = expand(
            leader_only,
            quote!(lease = "Bad"),
            quote!(
                async fn work(token: CancellationToken) {}
            ),
        );
        assert!(
            out.starts_with("async fn work () -> :: core :: result :: Result"),
            "{out}"
        );
        assert_eq!(out.matches("compile_error").count(), 1, "{out}");
    }
}
