//! client-go's example flags for the examples, parsed with clap in every form Go's `flag` package
//! accepts: `--flag=value`, `--flag value`, `-flag=value` and `-flag value`. Each example
//! includes this file with `#[path = "support/flags.rs"] mod flags;`.
//!
//! clap reads a single dash as a cluster of one-letter flags (`-id` as `-i -d`), so [`parse`]
//! first rewrites Go's single-dash long flags to double-dash ones. Only arguments in flag
//! position are rewritten (not the value of a flag that takes one, not after `--`), and `-h`
//! stays clap's short help. A flag given twice takes its last value, as in Go.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Args, Parser};
use kube::config::{KubeConfigOptions, Kubeconfig};
use leader::runtime::{ElectionConfig, RuntimeBuilder};

/// The flags of client-go's leader-election example that every example takes, and the timings.
#[derive(Args, Debug)]
pub(crate) struct ClientGoFlags {
    /// Kubeconfig file [default: in-cluster configuration, else $KUBECONFIG or ~/.kube/config]
    #[arg(long, value_name = "PATH")]
    pub(crate) kubeconfig: Option<PathBuf>,
    /// This replica's identity, the lease's holderIdentity [default: the pod name or hostname
    /// plus a random suffix]
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// Namespace of the lease [default: the pod's, else the kubeconfig context's, else default]
    #[arg(long, value_name = "NAMESPACE")]
    pub(crate) lease_lock_namespace: Option<String>,
    /// How long followers wait after the last renew before taking over [default: 15s]
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub(crate) lease_duration: Option<Duration>,
    /// How long the leader keeps leading without a successful renew [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub(crate) renew_deadline: Option<Duration>,
    /// How often candidates retry and the leader renews [default: 2s]
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub(crate) retry_period: Option<Duration>,
}

impl ClientGoFlags {
    /// `builder` with what these flags set: the client from `--kubeconfig`, the identity, the
    /// namespace and the timings. Exits with status 2 if the kubeconfig cannot be loaded.
    pub(crate) async fn apply(&self, mut builder: RuntimeBuilder) -> RuntimeBuilder {
        if let Some(path) = &self.kubeconfig {
            builder = builder.client(client_from(path).await.unwrap_or_else(|error| {
                let message = format!("--kubeconfig {}: {error}\n", path.display());
                clap::Error::raw(ErrorKind::ValueValidation, message).exit()
            }));
        }
        if let Some(id) = &self.id {
            builder = builder.identity(id);
        }
        if let Some(namespace) = &self.lease_lock_namespace {
            builder = builder.namespace(namespace);
        }
        let mut config = ElectionConfig::default();
        config.lease_duration = self.lease_duration.unwrap_or(config.lease_duration);
        config.renew_deadline = self.renew_deadline.unwrap_or(config.renew_deadline);
        config.retry_period = self.retry_period.unwrap_or(config.retry_period);
        builder.config(config)
    }
}

async fn client_from(path: &std::path::Path) -> Result<kube::Client, Box<dyn std::error::Error>> {
    let kubeconfig = Kubeconfig::read_from(path)?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(leader::runtime::kube_client(config)?)
}

/// Parses the process's arguments into `T`, Go's forms included, and as Go does, the last of a
/// repeated flag wins; on a mistake, or for `--help`, prints what clap says and exits (status 2
/// for a mistake, 0 for help).
pub(crate) fn parse<T: Parser>() -> T {
    let mut command = T::command().args_override_self(true);
    let args = go_style(std::env::args_os(), &command);
    let mut matches = command
        .try_get_matches_from_mut(args)
        .unwrap_or_else(|e| e.exit());
    T::from_arg_matches_mut(&mut matches).unwrap_or_else(|error| error.format(&mut command).exit())
}

/// `args` (the program name first) with every single-dash long flag in flag position written
/// with two dashes, as clap reads them.
fn go_style(args: impl IntoIterator<Item = OsString>, command: &clap::Command) -> Vec<OsString> {
    let takes_value = |name: &str| {
        command
            .get_arguments()
            .any(|arg| arg.get_long() == Some(name) && arg.get_action().takes_values())
    };
    let mut args = args.into_iter();
    let mut rewritten: Vec<OsString> = args.next().into_iter().collect();
    let mut value_next = false;
    while let Some(arg) = args.next() {
        let is_value = std::mem::take(&mut value_next);
        let Some(text) = arg.to_str().filter(|_| !is_value) else {
            rewritten.push(arg);
            continue;
        };
        if text == "--" {
            rewritten.push(arg);
            rewritten.extend(args);
            break;
        }
        let long = match text.strip_prefix('-') {
            Some(rest) if rest.starts_with('-') => Some(&rest[1..]),
            Some(rest) if rest.len() > 1 && rest.starts_with(|c: char| c.is_ascii_alphabetic()) => {
                Some(rest)
            }
            _ => None,
        };
        let Some(long) = long else {
            rewritten.push(arg);
            continue;
        };
        value_next = !long.contains('=') && takes_value(long);
        rewritten.push(format!("--{long}").into());
    }
    rewritten
}

/// A duration as the examples write them: `15s` or `500ms`.
pub(crate) fn duration(text: &str) -> Result<Duration, String> {
    let parsed = if let Some(ms) = text.strip_suffix("ms") {
        ms.parse().map(Duration::from_millis)
    } else if let Some(s) = text.strip_suffix('s') {
        s.parse().map(Duration::from_secs)
    } else {
        return Err("write a number and a unit: `15s` or `500ms`".into());
    };
    parsed.map_err(|_| "write a number and a unit: `15s` or `500ms`".into())
}
