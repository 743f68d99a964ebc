//! The controller manager (`service-catalog controller-manager`): connects through a kubeconfig,
//! elects a leader on a Lease, serves `/metrics`, `/healthz` and `/readyz`, and runs the
//! reconcilers: brokers → classes and plans ([`broker`]), instances ([`instance`]) and
//! bindings ([`binding`]).
//!
//! - [`catalog`]: an OSB catalog → the class and plan objects it yields.
//! - [`leader`]: Lease-based leader election.
//! - [`metrics`]: Prometheus metrics and the health endpoints.
//! - [`osb`]: what instances and bindings share (resolution, parameters, conditions, backoff).

pub mod binding;
pub mod broker;
pub mod catalog;
pub mod instance;
pub mod leader;
pub mod metrics;
pub mod osb;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::StreamExt as _;
use kube::Api;
use kube::ResourceExt as _;
use kube::api::DynamicObject;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, controller, watcher};

pub use broker::BrokerSettings;
pub use instance::OperationSettings;
pub use leader::LeaseSettings;

#[derive(Debug, Clone)]
pub struct Settings {
    pub broker: BrokerSettings,
    pub operations: OperationSettings,
    /// Reconciles running at once, per kind.
    pub workers: u16,
    pub metrics_listen: SocketAddr,
    /// `None`: no leader election (a single replica).
    pub leader_election: Option<LeaseSettings>,
    /// Who this replica is (events and the lease).
    pub identity: String,
    /// Print `listening on <metrics URL>` on stdout (the standalone controller manager does, so
    /// that a supervisor can find it; `up` has its own first line).
    pub announce: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("serving metrics: {0}")]
    Io(#[from] std::io::Error),
    #[error("lost the leader lease; stopping so that another replica leads")]
    LostLeadership,
}

/// Runs until `shutdown` completes (or leadership is lost).
pub async fn run(
    client: kube::Client,
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), RunError> {
    let metrics = metrics::Metrics::new()?;
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(settings.metrics_listen).await?;
    let address = listener.local_addr()?;
    // The first line a supervisor (or a test) reads; the endpoints are /metrics, /healthz, /readyz.
    if settings.announce {
        println!("listening on http://{address}");
    }
    let health = metrics::Health {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, metrics::router(health)).await {
            tracing::error!(%error, "the metrics endpoint stopped");
        }
    });
    let work = async {
        let elector = settings
            .leader_election
            .clone()
            .map(|lease| leader::Elector::new(client.clone(), lease));
        if let Some(elector) = &elector {
            ready.store(true, Ordering::SeqCst);
            tracing::info!(identity = %settings.identity, "waiting for the leader lease");
            elector.acquire().await;
            tracing::info!(identity = %settings.identity, "leading");
        }
        metrics.leader.set(1);
        ready.store(true, Ordering::SeqCst);
        let controllers = run_controllers(client.clone(), &settings, metrics.clone());
        match &elector {
            Some(elector) => {
                tokio::select! {
                    () = controllers => Ok(()),
                    () = elector.hold() => Err(RunError::LostLeadership),
                }
            }
            None => {
                controllers.await;
                Ok(())
            }
        }
    };
    tokio::select! {
        result = work => result,
        () = shutdown => {
            tracing::info!("shutting down");
            Ok(())
        }
    }
}

async fn run_controllers(client: kube::Client, settings: &Settings, metrics: metrics::Metrics) {
    let reporter = Reporter {
        controller: "service-catalog-controller-manager".into(),
        instance: Some(settings.identity.clone()),
    };
    let mut running = Vec::new();
    for cluster in [true, false] {
        let scope = catalog::Scope { cluster };
        let [brokers, _, _] = broker::resources(scope);
        let context = Arc::new(broker::Context::new(
            client.clone(),
            scope,
            settings.broker.clone(),
            metrics.clone(),
            Recorder::new(client.clone(), reporter.clone()),
        ));
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &brokers);
        let config = controller::Config::default().concurrency(settings.workers);
        running.push(
            Controller::new_with(api, watcher::Config::default(), brokers)
                .with_config(config)
                .run(broker::reconcile, broker::error_policy, context)
                .for_each(|result| async move {
                    if let Err(error) = result {
                        tracing::debug!(%error, "controller event");
                    }
                }),
        );
    }
    let operations = Arc::new(instance::Context::new(
        client.clone(),
        settings.operations.clone(),
        metrics.clone(),
        Recorder::new(client.clone(), reporter.clone()),
    ));
    let config = controller::Config::default().concurrency(settings.workers);
    let instances = Controller::new(
        Api::<catalog_api::ServiceInstance>::all(client.clone()),
        watcher::Config::default(),
    )
    .with_config(config.clone())
    .run(
        instance::reconcile,
        instance::error_policy,
        operations.clone(),
    )
    .for_each(|result| async move {
        if let Err(error) = result {
            tracing::debug!(%error, "controller event");
        }
    });
    let bindings = Controller::new(
        Api::<catalog_api::ServiceBinding>::all(client.clone()),
        watcher::Config::default(),
    );
    // A binding waiting for its instance is woken by the instance's changes, not by polling.
    let waiting = bindings.store();
    let bindings = bindings
        .watches(
            Api::<catalog_api::ServiceInstance>::all(client.clone()),
            watcher::Config::default(),
            move |instance| {
                let (namespace, name) = (instance.namespace(), instance.name_any());
                waiting
                    .state()
                    .into_iter()
                    .filter(|b| b.namespace() == namespace && b.spec.instance_ref.name == name)
                    .map(|b| ObjectRef::from_obj(&*b))
                    .collect::<Vec<_>>()
            },
        )
        .with_config(config)
        .run(binding::reconcile, binding::error_policy, operations)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "controller event");
            }
        });
    tokio::join!(futures_util::future::join_all(running), instances, bindings);
}
