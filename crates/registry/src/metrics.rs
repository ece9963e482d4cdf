//! Prometheus metrics of one registry instance (its own registry, so
//! several instances can live in one process).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, TextEncoder,
};

pub struct Metrics {
    pub registry: prometheus::Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounter,
    pub uploads_in_progress: IntGauge,
    pub storage_bytes: IntGauge,
    pub storage_blobs: IntGauge,
    pub storage_free_bytes: IntGauge,
    pub storage_total_bytes: IntGauge,
    pub pulls_recorded: IntCounter,
    /// What became of uploads a [`crate::BlobObserver`] was asked about.
    pub streamed_uploads: IntCounterVec,
    /// Manifest reads the pull gate refused, by the rule's reason.
    pub pull_gate_refusals: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = prometheus::Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "drydock_http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "drydock_http_request_duration_seconds",
                "HTTP request latency by route, method and status (until the response head)",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0,
            ]),
            &["route", "method", "status"],
        )
        .expect("metric");
        let bytes_in = IntCounter::new(
            "drydock_http_received_bytes_total",
            "Blob and manifest bytes received",
        )
        .expect("metric");
        let bytes_out = IntCounter::new(
            "drydock_http_sent_bytes_total",
            "Blob and manifest bytes sent",
        )
        .expect("metric");
        let uploads_in_progress =
            IntGauge::new("drydock_uploads_in_progress", "Open blob upload sessions")
                .expect("metric");
        let storage_bytes =
            IntGauge::new("drydock_storage_bytes", "Bytes of blobs in the store").expect("metric");
        let storage_blobs =
            IntGauge::new("drydock_storage_blobs", "Number of blobs in the store").expect("metric");
        let storage_free_bytes = IntGauge::new(
            "drydock_storage_free_bytes",
            "Bytes free (for the registry) on the data directory's filesystem",
        )
        .expect("metric");
        let storage_total_bytes = IntGauge::new(
            "drydock_storage_total_bytes",
            "Size in bytes of the data directory's filesystem",
        )
        .expect("metric");
        let pulls_recorded = IntCounter::new(
            "drydock_manifest_pulls_total",
            "Manifest pulls recorded in the pull record",
        )
        .expect("metric");
        let streamed_uploads = IntCounterVec::new(
            Opts::new(
                "drydock_upload_streams_total",
                "Uploads shown to the blob observer (the assessor's catalog-on-upload) as they \
                 streamed in, by outcome: committed (watched whole, then verified), declined \
                 (not watched), fell_behind (the observer could not keep pace with the client \
                 and reads the rest after the commit), abandoned (mismatch, cancel or failed \
                 chunk)",
            ),
            &["outcome"],
        )
        .expect("metric");
        let pull_gate_refusals = IntCounterVec::new(
            Opts::new(
                "drydock_pull_gate_refusals_total",
                "Manifest reads refused by the pull gate, by reason",
            ),
            &["reason"],
        )
        .expect("metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(bytes_in.clone()),
            Box::new(bytes_out.clone()),
            Box::new(uploads_in_progress.clone()),
            Box::new(storage_bytes.clone()),
            Box::new(storage_blobs.clone()),
            Box::new(storage_free_bytes.clone()),
            Box::new(storage_total_bytes.clone()),
            Box::new(pulls_recorded.clone()),
            Box::new(streamed_uploads.clone()),
            Box::new(pull_gate_refusals.clone()),
        ] {
            registry.register(c).expect("register metric");
        }
        Metrics {
            registry,
            requests,
            latency,
            bytes_in,
            bytes_out,
            uploads_in_progress,
            storage_bytes,
            storage_blobs,
            storage_free_bytes,
            storage_total_bytes,
            pulls_recorded,
            streamed_uploads,
            pull_gate_refusals,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// One collector under two boxes, so [`crate::Registry::register_metrics`]
/// can name it to `unregister` and still `register` it.
#[derive(Clone)]
pub(crate) struct SharedCollector(std::sync::Arc<dyn prometheus::core::Collector>);

impl SharedCollector {
    pub(crate) fn new(c: Box<dyn prometheus::core::Collector>) -> SharedCollector {
        SharedCollector(std::sync::Arc::from(c))
    }
}

impl prometheus::core::Collector for SharedCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.0.collect()
    }
}
