//! Invalidation end to end, in workerd with the real origin: an edit through the admin
//! API reaches the edge within the documented bound, soft purges serve the old copy
//! only while it is revalidated, purging an original reaches its derivatives, and
//! nothing unauthenticated changes anything; uploads through the edge replace an
//! original and every derivative of it (`purge/uploads.rs`); a purge survives a SIGKILL
//! of the origin, and an edit on one of two origin instances reaches the edge served by
//! the other (`purge/instances.rs`). One stack for the file.

// A test crate: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use course_edge_e2e::{
    EdgeOptions, Stack, TEST_ADMIN_TOKEN, TEST_PURGE_SECRET, client, fixtures, header,
};

#[path = "purge/instances.rs"]
mod instances;
#[path = "purge/uploads.rs"]
mod uploads;

/// One stack, the scenarios in turn (they use different keys; the stack is torn down
/// when the test ends).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_end_to_end() {
    let mut stack = Stack::start_with(
        EdgeOptions::default()
            .object("covers/purge-me.jpg", fixtures::photo(320, 200))
            .var("UPLOAD_MAX_BYTES", &uploads::LIMIT.to_string()),
    )
    .await;
    an_edit_through_the_admin_api_reaches_the_edge_within_the_bound(&stack).await;
    a_soft_purge_serves_the_old_copy_only_while_it_is_revalidated(&stack).await;
    purging_an_original_reaches_its_derivatives(&stack).await;
    unauthenticated_purges_and_admin_calls_through_the_edge_change_nothing(&stack).await;
    oversized_purges_are_refused_whole(&stack).await;
    a_repeated_delivery_is_applied_once(&stack).await;
    uploads::replacing_an_original_changes_every_derivative_and_removes_the_old_ones(&stack).await;
    uploads::bad_or_unauthenticated_uploads_are_refused_and_change_nothing(&stack).await;
    uploads::an_uploaded_cover_renders_with_its_size_on_the_course_page(&stack).await;
    uploads::the_upload_script_shows_progress_and_resumes(&stack).await;
    uploads::the_cron_run_applies_purges_left_in_the_outbox(&stack).await;
    uploads::the_next_upload_flushes_the_outbox_and_large_bodies_arrive_whole(&stack).await;
    // Last: these restart the origin (the second moves it onto PostgreSQL).
    instances::a_purge_committed_before_a_sigkill_reaches_the_edge_once_after_restart(&mut stack)
        .await;
    instances::an_edit_on_one_instance_evicts_on_the_other_behind_the_edge(&mut stack).await;
}

async fn get(url: &str) -> reqwest::Response {
    client().get(url).send().await.unwrap()
}

fn status(response: &reqwest::Response) -> String {
    header(response, "x-edge-cache")
}

/// The bound a purge takes to be seen: the memo (PURGE_MEMO_MS, 1 s in wrangler.toml)
/// plus a Durable Object round trip; the test allows a generous margin over it.
const BOUND: Duration = Duration::from_millis(2500);

async fn admin(stack: &Stack, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    client()
        .request(method, format!("{}{path}", stack.origin.url()))
        .header("authorization", format!("Bearer {TEST_ADMIN_TOKEN}"))
}

async fn an_edit_through_the_admin_api_reaches_the_edge_within_the_bound(stack: &Stack) {
    let slug = "rust-intermediate";
    let url = stack.edge.url(&format!("/api/courses/{slug}"));
    assert_eq!(status(&get(&url).await), "MISS", "{}", stack.edge.log());
    let hit = get(&url).await;
    assert_eq!(status(&hit), "HIT");
    let etag = header(&hit, "etag");

    let title = "Edited at the origin, seen at the edge";
    let edit = admin(
        stack,
        reqwest::Method::PUT,
        &format!("/admin/courses/{slug}"),
    )
    .await
    .header("if-match", &etag)
    .json(&serde_json::json!({
        "title": title, "summary": "s", "locale": "en", "level": "intermediate",
        "tags": ["rust"], "plan": "free", "cover_image": null
    }))
    .send()
    .await
    .unwrap();
    assert_eq!(edit.status(), 200);
    let edited: serde_json::Value = edit.json().await.unwrap();
    assert_eq!(
        edited["purge"]["delivered"],
        true,
        "the edge acknowledged: {edited}\n{}",
        stack.origin.log()
    );
    let written = Instant::now();
    loop {
        let response = get(&url).await;
        let cache = status(&response);
        let body: serde_json::Value = response.json().await.unwrap();
        if body["title"] == title {
            assert!(matches!(cache.as_str(), "MISS" | "REVALIDATED"), "{cache}");
            break;
        }
        assert_eq!(
            cache, "HIT",
            "the old copy is served only as a hit inside the memo"
        );
        assert!(
            written.elapsed() < BOUND,
            "still the old course after {:?}",
            written.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("edit → fresh edge answer: {:?}", written.elapsed());
    assert_eq!(
        status(&get(&url).await),
        "HIT",
        "stored again under the new generation"
    );
}

async fn a_soft_purge_serves_the_old_copy_only_while_it_is_revalidated(stack: &Stack) {
    let url = stack.edge.url("/api/search?q=rust");
    assert_eq!(status(&get(&url).await), "MISS");
    let before = get(&url).await;
    assert_eq!(status(&before), "HIT");
    let stored_under: u64 = header(&before, "x-edge-generation").parse().unwrap();
    let checked: u64 = header(&before, "x-edge-checked-against").parse().unwrap();
    assert!(checked >= stored_under, "{checked} < {stored_under}");

    let purge = admin(stack, reqwest::Method::POST, "/admin/invalidate")
        .await
        .json(&serde_json::json!({"tags": ["search"], "mode": "soft"}))
        .send()
        .await
        .unwrap();
    assert_eq!(purge.status(), 202);
    // Past the memo, the first request sees the purge: the old copy, while it refreshes.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let first = get(&url).await;
    assert_eq!(status(&first), "STALE", "{}", stack.edge.log());
    let checked: u64 = header(&first, "x-edge-checked-against").parse().unwrap();
    assert!(
        checked > stored_under,
        "checked against the purge's generation: {checked} vs {stored_under}"
    );
    let started = Instant::now();
    loop {
        let next = get(&url).await;
        if status(&next) == "HIT" {
            let now_under: u64 = header(&next, "x-edge-generation").parse().unwrap();
            assert!(
                now_under > stored_under,
                "revalidated under a newer generation"
            );
            break;
        }
        assert_eq!(status(&next), "STALE");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the revalidation never landed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn invalidate(stack: &Stack, change: serde_json::Value) {
    let purge = admin(stack, reqwest::Method::POST, "/admin/invalidate")
        .await
        .json(&change)
        .send()
        .await
        .unwrap();
    assert_eq!(purge.status(), 202);
    let body: serde_json::Value = purge.json().await.unwrap();
    assert_eq!(body["purge"]["delivered"], true, "{body}");
}

/// A purge of an original reaches its derivatives in the edge cache and in R2: a purge by
/// URL deletes the stored ones, and one by prefix (which names no object) leaves them,
/// but they record an older purge generation, so they are made again, never read back.
async fn purging_an_original_reaches_its_derivatives(stack: &Stack) {
    let url = stack.edge.url("/img/width=96/covers/purge-me.jpg");
    let first = get(&url).await;
    assert_eq!(status(&first), "MISS", "{}", stack.edge.log());
    let stored = header(&first, "x-edge-derivative");
    uploads::wait_for_object(stack, &stored).await;
    assert_eq!(status(&get(&url).await), "HIT");

    invalidate(
        stack,
        serde_json::json!({"urls": ["/media/covers/purge-me.jpg"]}),
    )
    .await;
    // Deleted just after the purge's answer (in the route's wait_until).
    let started = Instant::now();
    while stack.edge.get_object(&stored).is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a URL purge of the original deletes its stored derivatives\n{}",
            stack.edge.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let after = get(&url).await;
    assert_eq!(
        status(&after),
        "MISS",
        "a derivative of a purged original is not served as is"
    );
    assert_eq!(after.status(), 200);
    assert!(
        header(&after, "server-timing").contains("transform;dur="),
        "made again: {}",
        header(&after, "server-timing")
    );
    uploads::wait_for_object(stack, &stored).await;
    assert_eq!(status(&get(&url).await), "HIT");

    invalidate(
        stack,
        serde_json::json!({"prefixes": ["/media/covers"], "mode": "hard"}),
    )
    .await;
    assert!(
        stack.edge.get_object(&stored).is_some(),
        "a prefix purge names no object and deletes nothing"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let again = get(&url).await;
    assert_eq!(status(&again), "MISS");
    assert!(
        header(&again, "server-timing").contains("transform;dur="),
        "a derivative stored before a purge of its source is made again, not read from R2: {}",
        header(&again, "server-timing")
    );
    stack
        .edge
        .log_shows(&format!("{stored} is older than a purge of its source"))
        .await;
}

/// `POST path` with `body` sent in 8 KiB chunks (`Transfer-Encoding: chunked`, no
/// length) on a raw connection; the whole answer as text.
async fn post_chunked(stack: &Stack, path: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let url = reqwest::Url::parse(&stack.edge.url("/")).unwrap();
    let socket = tokio::net::TcpStream::connect((url.host_str().unwrap(), url.port().unwrap()))
        .await
        .unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {TEST_PURGE_SECRET}\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        url.authority()
    )
    .into_bytes();
    for chunk in body.chunks(8192) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    // The edge may answer before it read everything: the answer is read while the body
    // is still being written, and a refused write is not the test.
    let (mut read, mut write) = socket.into_split();
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&request).await;
        write
    });
    let mut answer = Vec::new();
    let _ = read.read_to_end(&mut answer).await;
    let _ = writer.await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The purge route's body limit holds with and without a declared length.
async fn oversized_purges_are_refused_whole(stack: &Stack) {
    let purge_url = stack.edge.url("/__edge/purge");
    let tags: Vec<String> = (0..6000).map(|i| format!("tag-{i:05}")).collect();
    let body = serde_json::json!({"id": "big1", "change": {"tags": tags}}).to_string();
    assert!(body.len() > 64 * 1024);
    let declared = client()
        .post(&purge_url)
        .header("authorization", format!("Bearer {TEST_PURGE_SECRET}"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(declared.status(), 413);
    let error: serde_json::Value = declared.json().await.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("65536"),
        "{error}"
    );
    // Chunked: no Content-Length; the route stops reading at the limit.
    let answer = post_chunked(stack, "/__edge/purge", body.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
}

async fn unauthenticated_purges_and_admin_calls_through_the_edge_change_nothing(stack: &Stack) {
    let url = stack.edge.url("/api/videos/2");
    get(&url).await;
    assert_eq!(status(&get(&url).await), "HIT");
    let purge_url = stack.edge.url("/__edge/purge");
    let body = serde_json::json!({"id": "x1", "change": {"tags": ["video:2"]}});
    for auth in [
        None,
        Some("Bearer wrong-secret-wrong-secret-wrong"),
        Some("Bearer "),
    ] {
        let mut request = client().post(&purge_url).json(&body);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let refused = request.send().await.unwrap();
        assert_eq!(refused.status(), 401, "{auth:?}");
        let error: serde_json::Value = refused.json().await.unwrap();
        assert_eq!(error["error"]["field"], "authorization");
    }
    let bad = client()
        .post(&purge_url)
        .header("authorization", format!("Bearer {TEST_PURGE_SECRET}"))
        .json(&serde_json::json!({"id": "x2", "change": {"tags": ["a,b"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let error: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(error["error"]["field"], "tags[0]");
    // The drills' fault route does not exist without FAULT_INJECTION=on, even with the
    // purge secret: R2 stays readable.
    let fault = client()
        .post(stack.edge.url("/__edge/fault?r2=down"))
        .header("authorization", format!("Bearer {TEST_PURGE_SECRET}"))
        .send()
        .await
        .unwrap();
    assert_eq!(fault.status(), 404);
    let wrong_method = client().get(&purge_url).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);

    // The origin's admin API is not reachable through the edge, in any spelling.
    for path in [
        "/admin/invalidate",
        "//admin/invalidate",
        "/%61dmin/invalidate",
        "/ADMIN/invalidate",
    ] {
        let through = client()
            .post(stack.edge.url(path))
            .header("authorization", format!("Bearer {TEST_ADMIN_TOKEN}"))
            .json(&serde_json::json!({"tags": ["video:2"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(through.status(), 404, "{path}");
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(status(&get(&url).await), "HIT", "nothing was purged");
}

async fn a_repeated_delivery_is_applied_once(stack: &Stack) {
    let purge_url = stack.edge.url("/__edge/purge");
    let send = || {
        client()
            .post(&purge_url)
            .header("authorization", format!("Bearer {TEST_PURGE_SECRET}"))
            .json(&serde_json::json!({"id": "repeat-1", "change": {"tags": ["nothing-cached"]}}))
            .send()
    };
    let first: serde_json::Value = send().await.unwrap().json().await.unwrap();
    let again: serde_json::Value = send().await.unwrap().json().await.unwrap();
    assert_eq!(first["applied"], true);
    assert_eq!(again["applied"], false);
    assert_eq!(first["generation"], again["generation"]);
}

/// Warm after purge, in workerd: once the edge acknowledged an edit's purge, the origin
/// re-requests the course through the edge, so the first visitor after the edit gets
/// the new course as a HIT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purged_hot_urls_are_warmed_so_the_first_visitor_hits() {
    let stack = Stack::start_with_origin_env(EdgeOptions::default(), |edge| {
        std::collections::BTreeMap::from([
            (String::from("WARM_AFTER_PURGE_BASE"), edge.to_owned()),
            (
                String::from("WARM_AFTER_PURGE"),
                String::from("/api/courses"),
            ),
        ])
    })
    .await;
    let slug = "sql-beginner";
    let url = stack.edge.url(&format!("/api/courses/{slug}"));
    get(&url).await;
    let hit = get(&url).await;
    assert_eq!(status(&hit), "HIT", "{}", stack.edge.log());
    let etag = header(&hit, "etag");
    let title = "Warmed before anyone asked";
    let edit = admin(
        &stack,
        reqwest::Method::PUT,
        &format!("/admin/courses/{slug}"),
    )
    .await
    .header("if-match", &etag)
    .json(&serde_json::json!({
        "title": title, "summary": "s", "locale": "en", "level": "beginner",
        "tags": ["sql"], "plan": "free", "cover_image": null
    }))
    .send()
    .await
    .unwrap();
    assert_eq!(edit.status(), 200, "{}", stack.origin.log());
    let started = Instant::now();
    let warmed = "origin_purge_warms_total{outcome=\"warmed\"}";
    loop {
        let metrics = get(&format!("{}/metrics", stack.origin.url()))
            .await
            .text()
            .await
            .unwrap();
        if metrics.lines().any(|l| l.starts_with(warmed)) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "nothing warmed:\n{}",
            stack.origin.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = get(&url).await;
    assert_eq!(status(&first), "HIT", "the warm request paid the miss");
    let body: serde_json::Value = first.json().await.unwrap();
    assert_eq!(body["title"], title);
}

/// The ledger unreachable: a stored copy is never served blindly — it is revalidated
/// with the origin (a conditional request), and with the origin down too it stands in
/// only as stale-on-error, marked so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_ledger_unreachable_hits_are_revalidated_not_served_blindly() {
    let mut stack =
        Stack::start_with(EdgeOptions::default().var("PURGE_LEDGER_FAULT", "unreachable")).await;
    let url = stack.edge.url("/api/videos/3");
    assert_eq!(status(&get(&url).await), "MISS", "{}", stack.edge.log());
    for _ in 0..3 {
        let again = get(&url).await;
        assert_eq!(status(&again), "REVALIDATED", "never a blind HIT");
        assert_eq!(again.status(), 200);
    }
    uploads::an_upload_whose_purge_cannot_be_applied_keeps_it_in_the_outbox(&stack).await;
    stack.origin.stop();
    let down = get(&url).await;
    assert_eq!(down.status(), 200);
    assert_eq!(status(&down), "STALE", "stale-on-error, marked");
}
