//! Prometheus metrics of the API server, named as kube-apiserver names its own so existing
//! dashboards read them: requests by verb, resource and code, request latency, live watches.

use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub watches: IntGauge,
    /// Lists answered from the watch cache or from the store.
    pub list_source: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "apiserver_request_total",
                "Requests by verb, group, resource and HTTP code.",
            ),
            &["verb", "group", "resource", "code"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "apiserver_request_duration_seconds",
                "Time to answer (to the first byte for watches).",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["verb", "group", "resource"],
        )?;
        let watches = IntGauge::new("apiserver_longrunning_requests", "Open watches.")?;
        let list_source = IntCounterVec::new(
            Opts::new(
                "apiserver_list_source_total",
                "Lists answered from the watch cache or the store.",
            ),
            &["source"],
        )?;
        registry.register(Box::new(list_source.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(watches.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            watches,
            list_source,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

/// Decrements the watch gauge when a watch stream ends, however it ends.
pub struct WatchGuard(pub IntGauge);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
