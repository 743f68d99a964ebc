//! The controller manager's Prometheus metrics, and the HTTP endpoint serving them with
//! `/healthz` and `/readyz`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Reconciles by kind and outcome (`success`, `error`).
    pub reconciles: IntCounterVec,
    /// Reconciles running now, by kind (the work in hand; kube-runtime keeps its queue private).
    in_flight: IntGaugeVec,
    osb_requests: IntCounterVec,
    osb_latency: HistogramVec,
    catalog_classes: IntGaugeVec,
    catalog_plans: IntGaugeVec,
    /// Whether this replica leads (1) or waits (0).
    pub leader: prometheus::IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "servicecatalog_controller_reconciles_total",
                "Reconciles by kind and outcome",
            ),
            &["kind", "outcome"],
        )?;
        let in_flight = IntGaugeVec::new(
            Opts::new(
                "servicecatalog_controller_reconciles_in_flight",
                "Reconciles running now, by kind",
            ),
            &["kind"],
        )?;
        let osb_requests = IntCounterVec::new(
            Opts::new(
                "servicecatalog_osb_requests_total",
                "OSB requests by broker, operation and HTTP status",
            ),
            &["broker", "operation", "code"],
        )?;
        let osb_latency = HistogramVec::new(
            HistogramOpts::new(
                "servicecatalog_osb_request_duration_seconds",
                "OSB request latency",
            )
            .buckets(vec![0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0]),
            &["broker", "operation"],
        )?;
        let catalog_classes = IntGaugeVec::new(
            Opts::new(
                "servicecatalog_broker_classes",
                "Classes offered per broker",
            ),
            &["broker"],
        )?;
        let catalog_plans = IntGaugeVec::new(
            Opts::new("servicecatalog_broker_plans", "Plans offered per broker"),
            &["broker"],
        )?;
        let leader = prometheus::IntGauge::new(
            "servicecatalog_controller_leader",
            "1 while this replica holds the leader lease",
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(osb_requests.clone()))?;
        registry.register(Box::new(osb_latency.clone()))?;
        registry.register(Box::new(catalog_classes.clone()))?;
        registry.register(Box::new(catalog_plans.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        Ok(Self {
            registry,
            reconciles,
            in_flight,
            osb_requests,
            osb_latency,
            catalog_classes,
            catalog_plans,
            leader,
        })
    }

    /// Counts a reconcile as running until the returned guard drops.
    pub fn busy(&self, kind: &str) -> Busy {
        let gauge = self.in_flight.with_label_values(&[kind]);
        gauge.inc();
        Busy(gauge)
    }

    pub fn observe_osb(&self, broker: &str, operation: &str, code: &str, elapsed: Duration) {
        self.osb_requests
            .with_label_values(&[broker, operation, code])
            .inc();
        self.osb_latency
            .with_label_values(&[broker, operation])
            .observe(elapsed.as_secs_f64());
    }

    pub fn set_catalog_size(&self, broker: &str, classes: usize, plans: usize) {
        let as_gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.catalog_classes
            .with_label_values(&[broker])
            .set(as_gauge(classes));
        self.catalog_plans
            .with_label_values(&[broker])
            .set(as_gauge(plans));
    }

    pub fn forget_broker(&self, broker: &str) {
        let _ = self.catalog_classes.remove_label_values(&[broker]);
        let _ = self.catalog_plans.remove_label_values(&[broker]);
    }

    fn render(&self) -> String {
        let mut buffer = Vec::new();
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

/// A running reconcile, counted in the in-flight gauge while it lives.
pub struct Busy(prometheus::IntGauge);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What the health endpoints report.
#[derive(Clone)]
pub struct Health {
    pub metrics: Metrics,
    /// Set once the controllers run (leader) or the replica is waiting as a candidate.
    pub ready: Arc<AtomicBool>,
}

pub fn router(health: Health) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(h): State<Health>| async move { h.metrics.render() }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(h): State<Health>| async move {
                if h.ready.load(Ordering::SeqCst) {
                    (StatusCode::OK, "ok")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting")
                }
            }),
        )
        .with_state(health)
}
