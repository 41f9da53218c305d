//! The first route through the whole stack: the edge proxies `/api/health` to the
//! origin's `/healthz`, and answers the documented 503 when the origin is gone.

// A test crate: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used)]

use course_edge_e2e::{Stack, client};
use protocol::EdgeCacheStatus;
use protocol::headers::{EDGE_CACHE, SERVER_TIMING};

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("missing header {name}: {:?}", response.headers()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_proxied_to_the_origin_and_never_cached() {
    let stack = Stack::start().await;
    let http = client();
    for _ in 0..2 {
        let response = http
            .get(stack.edge.url("/api/health"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", stack.edge.log());
        assert_eq!(
            header(&response, EDGE_CACHE),
            EdgeCacheStatus::Bypass.as_str()
        );
        let timing = header(&response, SERVER_TIMING).to_owned();
        assert!(timing.contains("origin;dur="), "{timing}");
        assert!(timing.contains("edge;dur="), "{timing}");
        let body: serde_json::Value = response.json().await.unwrap();
        // The body is the origin's own: it names the store the origin runs on.
        assert_eq!(body["status"], "ok");
        assert_eq!(body["store"], "sqlite");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_origin_with_nothing_cached_is_a_json_503_with_retry_after() {
    let mut stack = Stack::start().await;
    let http = client();
    let up = http
        .get(stack.edge.url("/api/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 200);

    stack.origin.stop();
    let down = http
        .get(stack.edge.url("/api/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(down.status(), 503, "{}", stack.edge.log());
    assert_eq!(header(&down, "retry-after"), "5");
    assert_eq!(header(&down, EDGE_CACHE), "BYPASS");
    assert!(header(&down, "content-type").starts_with("application/json"));
    assert!(header(&down, SERVER_TIMING).contains("edge;dur="));
    let body: protocol::ErrorBody = down.json().await.unwrap();
    assert_eq!(body.error.status, 503);
    assert_eq!(body.error.code, protocol::error::codes::ORIGIN_UNAVAILABLE);

    // The harness can bring it back on the same port; the edge recovers by itself.
    stack.origin.restart().await;
    let back = http
        .get(stack.edge.url("/api/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 200, "{}", stack.origin.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrangler_vars_set_by_a_test_reach_the_worker() {
    let options = course_edge_e2e::EdgeOptions::default()
        .var("RETRY_AFTER_SECS", "42")
        .secret("UNUSED_TEST_SECRET", "not-logged");
    let mut stack = Stack::start_with(options).await;
    stack.origin.stop();
    let down = client()
        .get(stack.edge.url("/api/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(down.status(), 503);
    assert_eq!(header(&down, "retry-after"), "42");
    let log = stack.edge.log();
    // wrangler lists the secret binding by name, never by value.
    assert!(
        log.contains("UNUSED_TEST_SECRET"),
        "secret not bound:\n{log}"
    );
    assert!(!log.contains("not-logged"), "a secret reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_errors_from_the_edge() {
    let stack = Stack::start().await;
    let http = client();
    let cases = [
        (
            reqwest::Method::GET,
            "/static/a%5Cb".to_owned(),
            400,
            "path",
        ),
        (
            reqwest::Method::POST,
            "/api/health".to_owned(),
            405,
            "method",
        ),
        (
            reqwest::Method::GET,
            // Past the router's limit (4096: it holds the edge's own longest redirect).
            format!("/{}", "a".repeat(5000)),
            414,
            "path",
        ),
    ];
    for (method, path, status, field) in cases {
        let response = http
            .request(method.clone(), stack.edge.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            status,
            "{method} {}",
            &path[..path.len().min(40)]
        );
        assert_eq!(header(&response, EDGE_CACHE), "BYPASS");
        let body: protocol::ErrorBody = response.json().await.unwrap();
        assert_eq!(body.error.status, status);
        assert_eq!(body.error.field.as_deref(), Some(field));
    }
    // Unmatched paths pass through to the origin; its JSON 404 (marked no-store by the
    // origin) comes back as it is.
    let missing = http
        .get(stack.edge.url("/no/such/route"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(header(&missing, EDGE_CACHE), "MISS");
    let body: protocol::ErrorBody = missing.json().await.unwrap();
    assert_eq!(body.error.code, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_origin_can_run_beside_the_first() {
    let stack = Stack::start().await;
    let second = course_edge_e2e::Origin::start().await;
    assert_ne!(second.port, stack.origin.port);
    let response = client()
        .get(format!("{}/readyz", second.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
