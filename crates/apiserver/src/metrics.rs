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
    /// Storage calls by operation.
    pub storage: HistogramVec,
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
        let storage = HistogramVec::new(
            HistogramOpts::new(
                "apiserver_storage_duration_seconds",
                "Time of storage calls by operation.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
            &["operation"],
        )?;
        registry.register(Box::new(storage.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(watches.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            watches,
            list_source,
            storage,
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

/// A [`Store`](storage::Store) that times every call into [`Metrics::storage`].
pub struct MeteredStore {
    inner: std::sync::Arc<dyn storage::Store>,
    histogram: HistogramVec,
}

impl MeteredStore {
    pub fn new(inner: std::sync::Arc<dyn storage::Store>, metrics: &Metrics) -> Self {
        Self {
            inner,
            histogram: metrics.storage.clone(),
        }
    }

    async fn timed<T>(&self, operation: &str, call: impl std::future::Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let result = call.await;
        self.histogram
            .with_label_values(&[operation])
            .observe(started.elapsed().as_secs_f64());
        result
    }
}

#[async_trait::async_trait]
impl storage::Store for MeteredStore {
    async fn get(&self, key: &str) -> Result<Option<storage::KeyValue>, storage::StorageError> {
        self.timed("get", self.inner.get(key)).await
    }

    async fn list(
        &self,
        options: &storage::ListOptions,
    ) -> Result<storage::ListResult, storage::StorageError> {
        self.timed("list", self.inner.list(options)).await
    }

    async fn count(&self, prefix: &str) -> Result<u64, storage::StorageError> {
        self.timed("count", self.inner.count(prefix)).await
    }

    async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
    ) -> Result<storage::KeyValue, storage::StorageError> {
        self.timed("create", self.inner.create(key, value)).await
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: storage::Revision,
    ) -> Result<storage::KeyValue, storage::StorageError> {
        self.timed("update", self.inner.update(key, value, expected))
            .await
    }

    async fn delete(
        &self,
        key: &str,
        expected: storage::Revision,
    ) -> Result<storage::Deleted, storage::StorageError> {
        self.timed("delete", self.inner.delete(key, expected)).await
    }

    async fn watch(
        &self,
        prefix: &str,
        from_revision: storage::Revision,
    ) -> Result<storage::Watch, storage::StorageError> {
        self.timed("watch", self.inner.watch(prefix, from_revision))
            .await
    }

    async fn compact(&self, revision: storage::Revision) -> Result<(), storage::StorageError> {
        self.timed("compact", self.inner.compact(revision)).await
    }

    async fn current_revision(&self) -> Result<storage::Revision, storage::StorageError> {
        self.inner.current_revision().await
    }

    async fn compact_revision(&self) -> Result<storage::Revision, storage::StorageError> {
        self.inner.compact_revision().await
    }
}
