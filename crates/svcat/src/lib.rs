//! svcat: the Service Catalog's command line, as a library so that `svcat` and the kubectl
//! plugin `kubectl-svcat` are one program.
//!
//! It reads the catalog through the user's kubeconfig with kube-rs and the shared
//! `catalog-api` types, so it works against the standalone server and a real cluster alike.

mod actions;
pub mod cli;
mod describe;
mod error;
mod get;
mod objects;
mod output;
mod params;
mod resolve;
mod wait;

use std::io::Write as _;

use clap::CommandFactory as _;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::cli::{Cli, Command, KindArg, SyncWhat, TouchWhat, WaitKind};
pub use crate::error::Error;
use crate::error::Result;
use crate::objects::Target;

/// Connects as the kubeconfig says: `--kubeconfig`, else `$KUBECONFIG`, else `~/.kube/config`.
async fn connect(cli: &Cli) -> Result<Target> {
    let kubeconfig = match &cli.global.kubeconfig {
        Some(path) => Kubeconfig::read_from(path)
            .map_err(|e| Error::Local(format!("kubeconfig {}: {e}", path.display())))?,
        None => Kubeconfig::read().map_err(|e| {
            Error::Local(format!(
                "no kubeconfig found ({e}); set KUBECONFIG or pass --kubeconfig \
                 (`service-catalog up` writes one)"
            ))
        })?,
    };
    let options = KubeConfigOptions {
        context: cli.global.context.clone(),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| Error::Local(format!("kubeconfig: {e}")))?;
    let namespace = cli
        .global
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = kube::Client::try_from(config)
        .map_err(|e| Error::Local(format!("cannot set up a client: {e}")))?;
    Ok(Target {
        client,
        namespace,
        all_namespaces: cli.global.all_namespaces,
    })
}

/// Runs one command; what it prints on success goes to standard output.
pub async fn run(cli: Cli) -> Result<()> {
    let output = cli.global.output;
    let text = match &cli.command {
        Command::Completion { shell } => {
            let mut buffer = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "svcat", &mut buffer);
            String::from_utf8_lossy(&buffer).into_owned()
        }
        Command::Version { client: true } => actions::version(None).await?,
        command => {
            let target = connect(&cli).await?;
            match command {
                Command::Marketplace(scope) => {
                    get::marketplace(&target, scope.scope, output).await?
                }
                Command::Get { kind, name, scope } => {
                    get::get(&target, *kind, name.as_deref(), scope.scope, output).await?
                }
                Command::Describe { kind, name, scope } => {
                    describe::describe(&target, *kind, name, scope.scope, output).await?
                }
                Command::Provision(args) => actions::provision(&target, args, output).await?,
                Command::Deprovision { name, wait } => {
                    actions::deprovision(&target, name, wait).await?
                }
                Command::Bind(args) => actions::bind(&target, args, output).await?,
                Command::Unbind {
                    instance,
                    name,
                    wait,
                } => actions::unbind(&target, instance.as_deref(), name.as_deref(), wait).await?,
                Command::Register(args) => actions::register(&target, args, output).await?,
                Command::Deregister { name, scope } => {
                    actions::deregister(&target, name, *scope).await?
                }
                Command::Sync {
                    what: SyncWhat::Broker { name, scope },
                } => actions::sync_broker(&target, name, *scope).await?,
                Command::Touch {
                    what: TouchWhat::Instance { name },
                } => actions::touch_instance(&target, name).await?,
                Command::Wait {
                    kind,
                    name,
                    until,
                    timeout,
                } => {
                    let kind = match kind {
                        WaitKind::Instance => KindArg::Instances,
                        WaitKind::Binding => KindArg::Bindings,
                    };
                    wait::wait(&target, kind, name, *until, *timeout).await?;
                    String::new()
                }
                Command::Version { .. } => actions::version(Some(&target)).await?,
                Command::Completion { .. } => String::new(),
            }
        }
    };
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`svcat get ... | head`) is not an error worth reporting.
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
    Ok(())
}

/// The program's entry: parse, run, and turn errors into one or two lines and an exit code.
pub fn main_with_args() -> std::process::ExitCode {
    let cli = <Cli as clap::Parser>::parse();
    let verbose = cli.global.verbose;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            if verbose && let Error::Api { source, .. } = &error {
                eprintln!("{source:#?}");
            }
            std::process::ExitCode::from(error.exit_code())
        }
    }
}
