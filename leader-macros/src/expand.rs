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

/// The generated function, followed by the errors if there are any. Even when something is
/// wrong, what comes out has the signature callers expect (see [`Checked`]), so that one mistake
/// gives one error; only an item that does not parse comes out unchanged.
fn emit<T>(
    item: TokenStream,
    checked: Checked<T>,
    expand: fn(T, bool) -> TokenStream,
) -> TokenStream {
    let Checked {
        config,
        function_is_wrong,
        errors,
    } = checked;
    let mut tokens = config.map_or(item, |config| expand(config, function_is_wrong));
    if let Some(errors) = errors {
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

fn leader_only_fn(config: LeaderOnly, function_is_wrong: bool) -> TokenStream {
    let LeaderOnly {
        krate,
        lease,
        namespace,
        timings,
        every,
        function,
        token,
        rejected,
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
    let leader = krate_at(krate.as_ref(), at);

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
    // The body's type as declared, fixed before the signature's output is rewritten.
    let typed = typed_output(&sig);
    let ok = if every.is_some() { quote!(()) } else { output };
    sig.output = syn::parse_quote_spanned! {output_at=>
        -> ::core::result::Result<#ok, #error>
    };

    let token = match token {
        Some(token) if !function_is_wrong => token,
        token => {
            let removed = token.map(|token| *token.ty).into_iter().chain(rejected);
            return stub(attrs, vis, sig, removed);
        }
    };

    let namespace = optional(at, namespace.map(|namespace| namespace.into_token_stream()));
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
    let call = quote_spanned! {at=>
        #leader::__private::call(#lease, #namespace, #config)?
    };
    let work = work_block(krate.as_ref(), token, &typed, &body);
    let fn_body = match every {
        None => quote_spanned! {at=>
            #call.lead(move |__leader_leadership| #work).await
        },
        Some(period) => {
            let period = proc_macro2::Literal::u64_unsuffixed(period);
            let clones = tick_parameters(krate.as_ref(), &mut sig);
            quote_spanned! {at=>
                #call.lead_every(
                    #leader::__private::Duration::from_millis(#period),
                    move |__leader_leadership| {
                        #(#clones)*
                        #work
                    },
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

/// What is generated for a function the attribute rejected: the signature callers expect (as
/// `async fn`, without the token parameter, returning `Result`), with a body that never runs.
/// Its callers then see no errors of their own, only the attribute's. The types of the
/// parameters taken out as tokens are still named, so that their imports stay used.
fn stub(
    attrs: Vec<Attribute>,
    vis: syn::Visibility,
    mut sig: Signature,
    removed: impl Iterator<Item = syn::Type>,
) -> TokenStream {
    let at = Span::call_site().located_at(sig.ident.span());
    sig.asyncness = Some(syn::Token![async](at));
    sig.constness = None;
    sig.abi = None;
    sig.variadic = None;
    let removed = removed.map(|ty| {
        let ty_at = Span::call_site().located_at(ty.span());
        quote_spanned!(ty_at=> let _: ::core::option::Option<#ty> = ::core::option::Option::None;)
    });
    quote_spanned! {at=>
        #(#attrs)*
        #[allow(unused_variables, clippy::unused_async)]
        #vis #sig {
            #(#removed)*
            ::core::unreachable!("`#[leader_only]` rejected this function at compile time")
        }
    }
}

/// The periodic form's other parameters: each tick gets a clone of each
/// (`__private::TickParameter`, which says what is required when it is missing). Returns the
/// statements that bind the clones, and leaves the signature with plain names to capture: a
/// simple `name` or `mut name` pattern keeps its name, any other pattern is destructured from a
/// generated name in each tick.
fn tick_parameters(krate: Option<&TokenStream>, sig: &mut Signature) -> Vec<TokenStream> {
    let mut clones = Vec::new();
    for (index, arg) in sig.inputs.iter_mut().enumerate() {
        let syn::FnArg::Typed(param) = arg else {
            continue;
        };
        let ty = &param.ty;
        let ty_at = Span::call_site().located_at(ty.span());
        let leader = krate_at(krate, ty_at);
        let (captured, binding) = match &mut *param.pat {
            syn::Pat::Ident(ident) if ident.by_ref.is_none() && ident.subpat.is_none() => {
                let binding = ident.to_token_stream();
                ident.mutability = None;
                (ident.ident.clone(), binding)
            }
            pat => {
                let binding = pat.to_token_stream();
                let captured = syn::Ident::new(&format!("__leader_parameter_{index}"), ty_at);
                *pat = syn::parse_quote!(#captured);
                (captured, binding)
            }
        };
        clones.push(quote_spanned! {ty_at=>
            let #binding: #ty = #leader::__private::TickParameter::for_tick(&#captured);
        });
    }
    clones
}

/// The async block that runs the user's body with the token parameter bound, starting with
/// `typed` (see [`typed_output`]).
fn work_block(
    krate: Option<&TokenStream>,
    token: PatType,
    typed: &TokenStream,
    body: &TokenStream,
) -> TokenStream {
    let PatType { attrs, pat, ty, .. } = token;
    // Errors about the token's type (`FromLeadership` not implemented) land on the type.
    let ty_at = Span::call_site().located_at(ty.span());
    let leader = krate_at(krate, ty_at);
    let from_leadership = quote_spanned! {ty_at=>
        #leader::__private::FromLeadership::from_leadership(__leader_leadership)
    };
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

/// `main` running its body in `run_main`. A `main` with the wrong shape (an error says how) is
/// generated all the same, as a plain `fn main()`, so that it raises no errors of its own.
fn leader_main_fn(config: LeaderMain, function_is_wrong: bool) -> TokenStream {
    let LeaderMain {
        krate,
        flavor,
        worker_threads,
        namespace,
        identity,
        runtime,
        events,
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
    // Parameters (an error says `main` takes none) stay bound for the body, to values that are
    // never computed.
    let parameters = sig.inputs.iter().filter_map(|arg| match arg {
        syn::FnArg::Typed(PatType { pat, ty, .. }) => {
            Some(quote_spanned!(at=> let #pat: #ty = ::core::unreachable!();))
        }
        syn::FnArg::Receiver(_) => None,
    });
    let parameters: TokenStream = parameters.collect();
    let allow = function_is_wrong.then(|| quote!(#[allow(unreachable_code, unused_variables)]));
    sig.asyncness = None;
    sig.constness = None;
    sig.unsafety = None;
    sig.abi = None;
    sig.generics = syn::Generics::default();
    sig.inputs = syn::punctuated::Punctuated::new();
    sig.variadic = None;
    let leader = krate_at(krate.as_ref(), at);
    let run = quote_spanned! {at=>
        #leader::__private::run_main(
            #leader::__private::MainOptions {
                flavor: #leader::__private::Flavor::#flavor,
                worker_threads: #worker_threads,
                namespace: #namespace,
                identity: #identity,
                runtime: #runtime,
                events: #events,
            },
            async move {
                #parameters
                #typed
                #body
            },
        )
    };
    quote! {
        #(#attrs)*
        #allow
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
                ::leader::__private::call(
                    "billing-sync",
                    ::core::option::Option::None,
                    ::core::option::Option::None
                )?.lead(move |__leader_leadership| async move {
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
    fn periodic_form_clones_its_parameters_for_each_tick() {
        let out = expand(
            leader_only,
            quote!(lease = "a", every = "1m"),
            quote!(
                async fn tick(leadership: Leadership, mut client: Client, (a, b): (u8, u8)) {}
            ),
        );
        let expected = quote! {
            async fn tick(client: Client, __leader_parameter_1: (u8, u8))
                -> ::core::result::Result<(), ::leader::__private::Error>
            {
                ::leader::__private::call(
                    "a",
                    ::core::option::Option::None,
                    ::core::option::Option::None
                )?.lead_every(
                    ::leader::__private::Duration::from_millis(60000),
                    move |__leader_leadership| {
                        let mut client: Client =
                            ::leader::__private::TickParameter::for_tick(&client);
                        let (a, b): (u8, u8) =
                            ::leader::__private::TickParameter::for_tick(&__leader_parameter_1);
                        async move {
                            let leadership: Leadership =
                                ::leader::__private::FromLeadership::from_leadership(
                                    __leader_leadership
                                );
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
                        }
                    },
                )
                .await
            }
        };
        assert_eq!(out, expected.to_string());
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
                        events: true,
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
    fn a_wrong_function_becomes_a_stub_with_the_intended_signature() {
        let out = expand(
            leader_only,
            quote!(lease = "Bad", every = "soon"),
            quote!(
                fn work(token: &CancellationToken, batch: u8) {}
            ),
        );
        let stub = quote! {
            #[allow(unused_variables, clippy::unused_async)]
            async fn work(batch: u8) -> ::core::result::Result<(), ::leader::__private::Error> {
                let _: ::core::option::Option<&CancellationToken> = ::core::option::Option::None;
                ::core::unreachable!("`#[leader_only]` rejected this function at compile time")
            }
        };
        assert!(out.starts_with(&stub.to_string()), "{out}");
        // The lease name, the period, `async` and the token's type.
        assert_eq!(out.matches("compile_error").count(), 4, "{out}");
    }

    #[test]
    fn an_item_that_does_not_parse_is_kept_as_it_is() {
        let item = quote!(
            struct NotAFunction;
        );
        let out = expand(leader_only, quote!(lease = "a"), item.clone());
        assert!(out.starts_with(&item.to_string()), "{out}");
        assert_eq!(out.matches("compile_error").count(), 1, "{out}");
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
