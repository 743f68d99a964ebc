//! The command line: every command, flag and default, as clap reads them. Nothing here talks to
//! the API; `lib.rs` dispatches.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// svcat: the Service Catalog's command line.
///
/// Browse the brokers' offerings, provision and bind services, and follow them until they are
/// ready. Talks to the API through your kubeconfig, so it works against the standalone server
/// (`service-catalog up`) and a real cluster alike. Also runs as `kubectl svcat`.
///
/// Exit codes: 0 success; 1 error (the API refused or could not be reached); 2 bad usage or input
/// (unknown flag, parameter that fails the plan's schema, ambiguous name); 3 not found;
/// 4 failed (the instance, binding or broker reports Failed); 5 timed out waiting.
#[derive(Debug, Parser)]
#[command(
    name = "svcat",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// The kubeconfig to use (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// The namespace (default: the context's namespace, else `default`).
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// List across all namespaces.
    #[arg(short = 'A', long, global = true)]
    pub all_namespaces: bool,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Show the full error the API returned, not only its message.
    #[arg(short = 'v', long, global = true)]
    pub verbose: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Wide,
    Json,
    Yaml,
}

/// Which brokers, classes and plans to look at: cluster-wide, the namespace's own, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scope {
    Cluster,
    Namespace,
    All,
}

impl Scope {
    pub fn cluster(self) -> bool {
        matches!(self, Scope::Cluster | Scope::All)
    }
    pub fn namespaced(self) -> bool {
        matches!(self, Scope::Namespace | Scope::All)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The offerings: each class with its plans, per broker.
    Marketplace(ScopeArg),
    /// List objects, or show one by name.
    Get {
        #[arg(value_enum)]
        kind: KindArg,
        /// A name (for classes and plans, the broker's name or the Kubernetes name).
        name: Option<String>,
        #[command(flatten)]
        scope: ScopeArg,
    },
    /// Show one object in detail: conditions, operations, parameters, related objects, events.
    Describe {
        #[arg(value_enum)]
        kind: KindArg,
        name: String,
        #[command(flatten)]
        scope: ScopeArg,
    },
    /// Create a ServiceInstance of a class and plan.
    Provision(Provision),
    /// Delete a ServiceInstance (the controller deprovisions it at the broker).
    Deprovision {
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Create a ServiceBinding to an instance; its credentials arrive in a Secret.
    Bind(Bind),
    /// Delete an instance's bindings, or one binding by name.
    Unbind {
        /// The instance whose bindings to delete.
        #[arg(required_unless_present = "name")]
        instance: Option<String>,
        /// Delete only this binding.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Register a broker: its catalog becomes classes and plans.
    Register(Register),
    /// Remove a broker registration (its classes and plans go once unused).
    Deregister {
        name: String,
        /// `cluster` (a ClusterServiceBroker) or `namespace` (a ServiceBroker).
        #[arg(long, default_value = "cluster", value_parser = parse_register_scope)]
        scope: Scope,
    },
    /// Ask the controller to act again.
    Sync {
        #[command(subcommand)]
        what: SyncWhat,
    },
    /// Ask the controller to update an instance at its broker (bumps spec.updateRequests).
    Touch {
        #[command(subcommand)]
        what: TouchWhat,
    },
    /// Wait until an instance or binding is ready, or gone.
    Wait {
        #[arg(value_enum)]
        kind: WaitKind,
        name: String,
        /// What to wait for.
        #[arg(long = "for", value_enum, default_value_t = WaitFor::Ready)]
        until: WaitFor,
        /// Give up after this long (e.g. 90s, 5m).
        #[arg(long, value_parser = parse_duration, default_value = "5m")]
        timeout: Duration,
    },
    /// Print a shell completion script.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The client's and the server's versions.
    Version {
        /// Only the client's version; do not contact the server.
        #[arg(long)]
        client: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    #[value(alias = "broker")]
    Brokers,
    #[value(alias = "class")]
    Classes,
    #[value(alias = "plan")]
    Plans,
    #[value(alias = "instance")]
    Instances,
    #[value(alias = "binding")]
    Bindings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WaitKind {
    Instance,
    Binding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WaitFor {
    Ready,
    Deleted,
}

#[derive(Debug, Subcommand)]
pub enum SyncWhat {
    /// Fetch a broker's catalog again now (bumps spec.relistRequests).
    Broker {
        name: String,
        /// `cluster` (a ClusterServiceBroker) or `namespace` (a ServiceBroker).
        #[arg(long, default_value = "cluster", value_parser = parse_register_scope)]
        scope: Scope,
    },
}

#[derive(Debug, Subcommand)]
pub enum TouchWhat {
    Instance { name: String },
}

#[derive(Debug, Args)]
pub struct ScopeArg {
    /// Brokers, classes and plans to consider.
    #[arg(long, value_enum, default_value_t = Scope::All)]
    pub scope: Scope,
}

/// `--wait` and how long to wait.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Wait until the controller is done, showing progress.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long (e.g. 90s, 5m).
    #[arg(long, value_parser = parse_duration, default_value = "5m")]
    pub timeout: Duration,
}

/// Parameters given inline or from Secrets.
#[derive(Debug, Args)]
pub struct ParamArgs {
    /// A parameter, KEY=VALUE (repeatable). Values are typed by the plan's schema: a property
    /// of type integer, number or boolean takes `5`, `0.5`, `true`.
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Parameters as a JSON object; `--param` values are applied over it.
    #[arg(long, value_name = "JSON")]
    pub params_json: Option<String>,
    /// Parameters from a key of a Secret holding a JSON object: SECRET[KEY] (repeatable).
    #[arg(short = 's', long = "secret", value_name = "SECRET[KEY]")]
    pub secrets: Vec<String>,
}

#[derive(Debug, Args)]
pub struct Provision {
    /// The instance's name.
    pub name: String,
    /// The class: the broker's name for it or its Kubernetes name.
    #[arg(long)]
    pub class: String,
    /// The plan: the broker's name for it or its Kubernetes name. May be left out when the
    /// class has exactly one plan.
    #[arg(long)]
    pub plan: Option<String>,
    /// Look for the class among cluster classes, the namespace's, or both.
    #[arg(long, value_enum, default_value_t = Scope::All)]
    pub scope: Scope,
    #[command(flatten)]
    pub params: ParamArgs,
    /// The OSB instance ID (default: generated by the server).
    #[arg(long)]
    pub external_id: Option<String>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct Bind {
    /// The instance to bind.
    pub instance: String,
    /// The binding's name (default: the instance's).
    #[arg(long)]
    pub name: Option<String>,
    /// The Secret to write the credentials to (default: the binding's name).
    #[arg(long)]
    pub secret_name: Option<String>,
    #[command(flatten)]
    pub params: ParamArgs,
    /// The OSB binding ID (default: generated by the server).
    #[arg(long)]
    pub external_id: Option<String>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct Register {
    /// The broker's name.
    pub name: String,
    /// The broker's URL.
    #[arg(long)]
    pub url: String,
    /// A Secret with `username` and `password` for basic auth.
    #[arg(long, conflicts_with = "bearer_secret", value_name = "SECRET")]
    pub basic_secret: Option<String>,
    /// A Secret with `token` for bearer auth.
    #[arg(long, value_name = "SECRET")]
    pub bearer_secret: Option<String>,
    /// A PEM file with the CA bundle to trust for the broker's certificate.
    #[arg(long, value_name = "FILE", conflicts_with = "skip_tls")]
    pub ca: Option<PathBuf>,
    /// Do not verify the broker's certificate (insecure).
    #[arg(long)]
    pub skip_tls: bool,
    /// `Duration` (relist every --relist-duration) or `Manual` (only on `svcat sync broker`).
    #[arg(long, value_parser = ["Duration", "Manual"])]
    pub relist_behavior: Option<String>,
    /// How often to fetch the catalog again, e.g. 15m0s.
    #[arg(long)]
    pub relist_duration: Option<String>,
    /// A class restriction, e.g. `name in (mariadb)` (repeatable).
    #[arg(long = "class-restriction", value_name = "REQUIREMENT")]
    pub class_restrictions: Vec<String>,
    /// A plan restriction, e.g. `free=true` (repeatable).
    #[arg(long = "plan-restriction", value_name = "REQUIREMENT")]
    pub plan_restrictions: Vec<String>,
    /// A cluster-wide broker (ClusterServiceBroker) or one in the namespace (ServiceBroker).
    #[arg(long, default_value = "cluster", value_parser = parse_register_scope)]
    pub scope: Scope,
    #[command(flatten)]
    pub wait: WaitArgs,
}

fn parse_register_scope(text: &str) -> Result<Scope, String> {
    match text {
        "cluster" => Ok(Scope::Cluster),
        "namespace" => Ok(Scope::Namespace),
        other => Err(format!(
            "{other:?}: a broker is either `cluster` or `namespace`"
        )),
    }
}

/// Durations as kubectl writes them: `90s`, `5m`, `1h30m`, `500ms`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration (try 90s, 5m or 1h30m)");
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ms" => number / 1000.0,
            "s" => number,
            "m" => number * 60.0,
            "h" => number * 3600.0,
            _ => return Err(bad()),
        };
        total += Duration::from_secs_f64(seconds);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_kubectl_writes_them() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
