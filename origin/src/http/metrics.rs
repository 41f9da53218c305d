//! Request metrics (a counter per route and status class, a latency histogram per
//! route) and the
//! `/metrics` endpoint in Prometheus text format.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const LATENCY: &str = "origin_http_request_duration_seconds";

/// The process-wide recorder (installed once; tests build many apps in one process).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(LATENCY.to_owned()),
                &[
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0, 2.5,
                ],
            )
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (only in tests); keep the handle.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// One route's metric handles, registered once when the router is built so the hot
/// path only does atomic increments (no label hashing or allocation per request).
#[derive(Clone)]
pub(super) struct RouteMetrics {
    /// `origin_http_requests_total{route, status}` per status class 1xx..5xx.
    requests: [Counter; 5],
    latency: Histogram,
}

impl RouteMetrics {
    pub(super) fn new(route: &'static str) -> Self {
        let _ = handle();
        let class = |status: &'static str| metrics::counter!("origin_http_requests_total", "route" => route, "status" => status);
        Self {
            requests: [
                class("1xx"),
                class("2xx"),
                class("3xx"),
                class("4xx"),
                class("5xx"),
            ],
            latency: metrics::histogram!(LATENCY, "route" => route),
        }
    }
}

pub(super) async fn track(
    State(metrics): State<RouteMetrics>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let response = next.run(request).await;
    let class = usize::from(response.status().as_u16() / 100).clamp(1, 5) - 1;
    metrics.requests[class].increment(1);
    metrics.latency.record(started.elapsed().as_secs_f64());
    response
}

pub(super) async fn render() -> Response {
    let handle = handle();
    handle.run_upkeep();
    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}
