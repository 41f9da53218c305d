//! The admin API and the invalidator on every backend: edits with If-Match, the purge
//! they commit with them, evictions the next read sees, and every refusal.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use course_edge_origin::storage::Store;
use futures_util::future::join_all;
use support::{ADMIN_TOKEN, TestApp};

fn bearer() -> String {
    format!("Bearer {ADMIN_TOKEN}")
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

async fn put(app: &TestApp, path: &str, etag: &str, body: serde_json::Value) -> reqwest::Response {
    app.client
        .put(app.url(path))
        .header("authorization", bearer())
        .header("if-match", etag)
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn course_edit(title: &str) -> serde_json::Value {
    serde_json::json!({
        "title": title,
        "summary": "Edited through the admin API.",
        "locale": "en",
        "level": "beginner",
        "tags": ["rust", "edited"],
        "plan": "free",
        "cover_image": "covers/rust.jpg"
    })
}

/// The first course of the demo catalog: (slug, id).
async fn first_course(app: &TestApp) -> (String, i64) {
    let page = app.get_json("/api/catalog").await;
    let item = &page["items"][0];
    (
        item["slug"].as_str().unwrap().to_owned(),
        item["id"].as_i64().unwrap(),
    )
}

async fn edit_then_every_copy_is_new(app: TestApp) {
    let (slug, id) = first_course(&app).await;
    let path = format!("/api/courses/{slug}");
    let before = app.get(&path).await;
    let etag = header(&before, "etag");
    // Cached now, and in the catalog, search and feed.
    assert_eq!(header(&app.get(&path).await, "x-origin-cache"), "HIT");
    let search_before = app.get_json("/api/search?q=rust").await;
    let feed_before = app.get_json("/api/feed?segment=anon-en").await;

    let title = format!("Edited title {}", support::unique());
    let response = put(
        &app,
        &format!("/admin/courses/{slug}"),
        &etag,
        course_edit(&title),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "cache-control"), "no-store");
    let new_etag = header(&response, "etag");
    assert_ne!(new_etag, etag);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["course"]["title"], title.as_str());
    assert_eq!(body["purge"]["delivered"], true, "{body}");

    // The next reads see the edit: the course, the catalog, search and the feed.
    let after = app.get(&path).await;
    assert_eq!(header(&after, "etag"), new_etag);
    assert_eq!(header(&after, "x-origin-cache"), "MISS", "evicted");
    assert_eq!(
        after.json::<serde_json::Value>().await.unwrap()["title"],
        title.as_str()
    );
    let catalog = app.get_json("/api/catalog").await;
    assert!(
        catalog["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == id && c["title"] == title.as_str())
    );
    let search = app.get_json("/api/search?q=edited").await;
    assert!(
        search["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == id),
        "{search}"
    );
    assert_ne!(search_before, app.get_json("/api/search?q=rust").await);
    let feed = app.get_json("/api/feed?segment=anon-en").await;
    assert_ne!(feed, feed_before, "the feed was recomputed and evicted");

    // The purge is on record, acknowledged by the origin and the bus step.
    let purge_id = body["purge"]["id"].as_i64().unwrap();
    let purge: serde_json::Value = app
        .client
        .get(app.url(&format!("/admin/purges/{purge_id}")))
        .header("authorization", bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(purge["delivered"], true);
    assert_eq!(purge["acked"], serde_json::json!(["origin", "bus"]));
    assert_eq!(purge["actor"], "tester");
    let tags = purge["change"]["tags"].as_array().unwrap();
    assert!(
        tags.contains(&serde_json::json!(format!("course:{id}"))),
        "{purge}"
    );

    // A second edit with the old ETag is a lost update: 412 naming the current ETag.
    let lost = put(
        &app,
        &format!("/admin/courses/{slug}"),
        &etag,
        course_edit("Lost"),
    )
    .await;
    assert_eq!(lost.status(), 412);
    assert_eq!(header(&lost, "etag"), new_etag);
    let error: serde_json::Value = lost.json().await.unwrap();
    assert_eq!(error["error"]["field"], "if-match");
    assert_eq!(app.get_json(&path).await["title"], title.as_str());
}
on_every_backend!(an_edit_evicts_every_copy, edit_then_every_copy_is_new);

async fn concurrent_edits_with_one_etag(app: TestApp) {
    let (slug, _) = first_course(&app).await;
    // Three rounds of eight racers, each round from the ETag the last one left.
    for round in 0..3 {
        let etag = header(&app.get(&format!("/api/courses/{slug}")).await, "etag");
        let edits = (0..8).map(|i| {
            let app = &app;
            let (slug, etag) = (slug.clone(), etag.clone());
            async move {
                let title = format!("Racer {round}.{i}");
                put(
                    app,
                    &format!("/admin/courses/{slug}"),
                    &etag,
                    course_edit(&title),
                )
                .await
                .status()
                .as_u16()
            }
        });
        let mut statuses = join_all(edits).await;
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            [200, 412, 412, 412, 412, 412, 412, 412],
            "round {round}: exactly one edit wins"
        );
    }
}
on_every_backend!(concurrent_edits_one_wins, concurrent_edits_with_one_etag);

async fn refusals_change_nothing(app: TestApp) {
    let (slug, _) = first_course(&app).await;
    let path = format!("/api/courses/{slug}");
    let etag = header(&app.get(&path).await, "etag");
    let admin = format!("/admin/courses/{slug}");
    let send = |token: Option<&'static str>,
                if_match: Option<String>,
                body: String,
                ctype: &'static str| {
        let mut request = app
            .client
            .put(app.url(&admin))
            .header("content-type", ctype)
            .body(body);
        if let Some(token) = token {
            request = request.header("authorization", token);
        }
        if let Some(m) = if_match {
            request = request.header("if-match", m);
        }
        request.send()
    };
    let good = course_edit("Never").to_string();
    for token in [
        None,
        Some("Bearer wrong-token-wrong-token-wrong"),
        Some("Bearer "),
        Some("Basic test-admin-token-0123456789abcdef"),
        Some(""),
    ] {
        let response = send(token, Some(etag.clone()), good.clone(), "application/json")
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{token:?}");
        assert_eq!(header(&response, "www-authenticate"), "Bearer");
        let error: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "unauthorized");
    }
    let token = Some(Box::leak(bearer().into_boxed_str()) as &'static str);
    let too_big = serde_json::json!({"title": "x".repeat(70 * 1024)}).to_string();
    let cases: Vec<(Option<String>, String, &'static str, u16, &str)> = vec![
        (None, good.clone(), "application/json", 428, "if-match"),
        (
            Some(String::from("*")),
            good.clone(),
            "application/json",
            400,
            "if-match",
        ),
        (
            Some(etag.clone()),
            good.clone(),
            "text/plain",
            415,
            "content-type",
        ),
        (
            Some(etag.clone()),
            String::from("{"),
            "application/json",
            400,
            "body",
        ),
        (
            Some(etag.clone()),
            good.replace("\"en\"", "\"english\""),
            "application/json",
            400,
            "locale",
        ),
        (
            Some(etag.clone()),
            good.replace("\"free\"", "\"gold\""),
            "application/json",
            400,
            "plan",
        ),
        (Some(etag.clone()), too_big, "application/json", 413, "body"),
    ];
    for (if_match, body, ctype, status, field) in cases {
        let response = send(token, if_match, body, ctype).await.unwrap();
        assert_eq!(response.status(), status, "{field}");
        let error: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error["error"]["field"], field, "{error}");
    }
    let missing = put(
        &app,
        "/admin/courses/no-such-course",
        &etag,
        course_edit("x"),
    )
    .await;
    assert_eq!(missing.status(), 404);
    let bad_slug = put(&app, "/admin/courses/Not_A_Slug", &etag, course_edit("x")).await;
    assert_eq!(bad_slug.status(), 400);
    // Nothing changed, and nothing was purged.
    assert_eq!(header(&app.get(&path).await, "etag"), etag);
    assert_eq!(app.state.store.pending_purges().await.unwrap(), 0);
    assert_eq!(header(&app.get(&path).await, "x-origin-cache"), "HIT");

    // The invalidation API: a bad list item is named; unauthenticated changes nothing.
    for (token, body, status, field) in [
        (None, r#"{"tags":["catalog"]}"#, 401, ""),
        (token, r#"{"tags":["a,b"]}"#, 400, "tags[0]"),
        (token, r#"{"urls":["no-slash"]}"#, 400, "urls[0]"),
        (token, r#"{"prefixes":["/a?x=1"]}"#, 400, "prefixes[0]"),
        (token, r#"{"tags":["x"],"mode":"eventually"}"#, 400, "mode"),
        (token, r#"{}"#, 400, "body"),
    ] {
        let mut request = app
            .client
            .post(app.url("/admin/invalidate"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = token {
            request = request.header("authorization", token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{body}");
        if !field.is_empty() {
            let error: serde_json::Value = response.json().await.unwrap();
            assert_eq!(error["error"]["field"], field, "{error}");
        }
    }
    assert_eq!(header(&app.get(&path).await, "x-origin-cache"), "HIT");
}
on_every_backend!(refused_admin_requests, refusals_change_nothing);

async fn invalidate_and_rebuild(app: TestApp) {
    let (slug, _) = first_course(&app).await;
    let path = format!("/api/courses/{slug}");
    app.get(&path).await;
    app.get("/api/catalog?page=2").await;
    assert_eq!(header(&app.get(&path).await, "x-origin-cache"), "HIT");
    let response = app
        .client
        .post(app.url("/admin/invalidate"))
        .header("authorization", bearer())
        .json(&serde_json::json!({"urls": [path], "prefixes": ["/api/catalog"], "mode": "soft"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["purge"]["delivered"], true);
    assert_eq!(body["mode"], "soft");
    assert_eq!(header(&app.get(&path).await, "x-origin-cache"), "MISS");
    assert_eq!(
        header(&app.get("/api/catalog?page=2").await, "x-origin-cache"),
        "MISS"
    );

    app.get("/api/feed?segment=pro-en").await;
    assert_eq!(
        header(&app.get("/api/feed?segment=pro-en").await, "x-origin-cache"),
        "HIT"
    );
    let rebuilt = app
        .client
        .post(app.url("/admin/feeds/rebuild"))
        .header("authorization", bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(rebuilt.status(), 200);
    let body: serde_json::Value = rebuilt.json().await.unwrap();
    assert!(
        body["segments"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("pro-en"))
    );
    assert_eq!(
        header(&app.get("/api/feed?segment=pro-en").await, "x-origin-cache"),
        "MISS"
    );

    // A video edit: If-Match, purge, new body.
    let video = app.get("/api/videos/1").await;
    let etag = header(&video, "etag");
    let mut edit: serde_json::Value = video.json().await.unwrap();
    let edit = serde_json::json!({
        "title": "Renamed video",
        "duration_secs": edit["duration_secs"].take(),
        "hls_playlist": edit["hls_playlist"].take(),
        "renditions": edit["renditions"].take(),
    });
    let response = put(&app, "/admin/videos/1", &etag, edit.clone()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.get_json("/api/videos/1").await["title"],
        "Renamed video"
    );
    assert_eq!(
        put(&app, "/admin/videos/1", &etag, edit).await.status(),
        412
    );
}
on_every_backend!(invalidate_urls_prefixes_and_feeds, invalidate_and_rebuild);

/// With `EDGE_SECRET` set, only requests carrying it choose a segment, and admin routes
/// refuse requests that carry it (they came through the edge).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_secret_gates_segments_and_keeps_admin_off_the_edge() {
    const SECRET: &str = "edge-secret-for-tests-0123456789";
    let settings = course_edge_origin::config::Settings {
        edge_secret: Some(SECRET.into()),
        ..support::test_settings()
    };
    let app = support::spawn_app_with(support::Backend::Sqlite, settings)
        .await
        .unwrap();
    let segment = |extra: Option<(&'static str, &'static str)>, query: &'static str| {
        let mut request = app
            .client
            .get(app.url(&format!("/api/feed{query}")))
            .header("x-course-segment", "pro-en");
        if let Some((name, value)) = extra {
            request = request.header(name, value);
        }
        async move {
            let body: serde_json::Value = request.send().await.unwrap().json().await.unwrap();
            body["segment"].as_str().unwrap().to_owned()
        }
    };
    assert_eq!(
        segment(None, "").await,
        "anon-en",
        "a direct caller chooses no segment"
    );
    assert_eq!(
        segment(Some(("x-edge-secret", "wrong")), "").await,
        "anon-en"
    );
    assert_eq!(segment(Some(("x-edge-secret", SECRET)), "").await, "pro-en");
    let query: serde_json::Value = app
        .client
        .get(app.url("/api/feed?segment=pro-en"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(query["segment"], "anon-en");

    let invalidate = |with_edge_secret: bool| {
        let mut request = app
            .client
            .post(app.url("/admin/invalidate"))
            .header("authorization", bearer())
            .json(&serde_json::json!({"tags": ["catalog"]}));
        if with_edge_secret {
            request = request.header("x-edge-secret", SECRET);
        }
        request.send()
    };
    assert_eq!(invalidate(true).await.unwrap().status(), 404);
    assert_eq!(invalidate(false).await.unwrap().status(), 202);
}
