//! Origin integration tests: the real `app(state)` on a loopback socket, against SQLite
//! always and PostgreSQL and Redis when they run here (see `support`).

// A test crate: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use course_edge_origin::admission::{Class, Limits};
use course_edge_origin::config::Settings;
use futures_util::future::join_all;
use support::{Backend, TestApp, spawn_app, spawn_app_with};

// --- reads, validators, tags -------------------------------------------------------

async fn catalog_pages_filters_and_tags(app: TestApp) {
    let page = app.get_json("/api/catalog?per_page=5&page=2").await;
    assert_eq!(page["page"], 2);
    assert_eq!(page["items"].as_array().unwrap().len(), 5);
    assert_eq!(page["total"], 49);
    assert_eq!(page["has_more"], true);
    let views: Vec<i64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["views"].as_i64().unwrap())
        .collect();
    assert!(
        views.windows(2).all(|w| w[0] >= w[1]),
        "ordered by views: {views:?}"
    );

    let de = app.get_json("/api/catalog?locale=de&per_page=50").await;
    let items = de["items"].as_array().unwrap();
    assert!(!items.is_empty() && items.iter().all(|c| c["locale"] == "de"));
    let tagged = app
        .get_json("/api/catalog?tag=databases&level=beginner")
        .await;
    for c in tagged["items"].as_array().unwrap() {
        assert!(c["tags"].as_array().unwrap().contains(&"databases".into()));
        assert_eq!(c["level"], "beginner");
    }
    let response = app.get("/api/catalog").await;
    assert_eq!(response.headers()["cache-tag"], "catalog");
    assert_eq!(response.headers()["cache-control"], "public, max-age=300");
}
on_every_backend!(catalog, catalog_pages_filters_and_tags);

async fn site_pages_render_from_the_store(app: TestApp) {
    let home = app.get("/").await;
    assert_eq!(home.status(), 200);
    assert_eq!(home.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(home.headers()["cache-tag"], "catalog");
    let html = home.text().await.unwrap();
    assert!(
        html.contains(r#"src="/media/demo/"#) && html.contains(r#"width="3840" height="2400""#)
    );

    let course = app.get("/courses/rust-beginner").await;
    assert_eq!(course.status(), 200);
    assert!(
        course.headers()["cache-tag"]
            .to_str()
            .unwrap()
            .starts_with("course:")
    );
    let etag = course.headers()["etag"].to_str().unwrap().to_owned();
    let html = course.text().await.unwrap();
    assert!(
        html.contains("Taught by <strong>Grace Okafor</strong>"),
        "{html}"
    );
    assert!(html.contains(r#"data-edge-plan="anon""#));
    let again = app
        .get_with("/courses/rust-beginner", "if-none-match", &etag)
        .await;
    assert_eq!(again.status(), 304);

    let lesson = app
        .get("/learn/rust-beginner/1")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        lesson.contains(r#"src="/video/demo/lesson.webm""#),
        "{lesson}"
    );
    for missing in [
        "/learn/rust-beginner/99",
        "/learn/rust-beginner/x",
        "/courses/no-such-course",
        "/courses/NOT%20A%20SLUG",
    ] {
        let response = app.get(missing).await;
        assert_eq!(response.status(), 404, "{missing}");
        assert!(response.text().await.unwrap().contains("does not exist"));
    }
    let search = app.get("/?q=rust").await.text().await.unwrap();
    assert!(search.contains("Results for “rust”"));
    let form = app.get("/signin?next=//evil.example").await;
    assert_eq!(form.headers()["cache-control"], "private, no-store");
    assert!(
        form.text()
            .await
            .unwrap()
            .contains(r#"name="next" value="/""#)
    );
}
on_every_backend!(site, site_pages_render_from_the_store);

async fn course_video_and_validators(app: TestApp) {
    let response = app.get("/api/courses/rust-beginner").await;
    assert_eq!(response.status(), 200);
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    assert!(
        etag.starts_with('"') && !etag.starts_with("W/"),
        "strong: {etag}"
    );
    let tag = response.headers()["cache-tag"].to_str().unwrap().to_owned();
    assert!(tag.starts_with("course:"), "{tag}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["slug"], "rust-beginner");
    assert!(!body["lessons"].as_array().unwrap().is_empty());

    let revalidated = app
        .get_with("/api/courses/rust-beginner", "if-none-match", &etag)
        .await;
    assert_eq!(revalidated.status(), 304);
    assert_eq!(revalidated.headers()["etag"].to_str().unwrap(), etag);

    let video = app.get("/api/videos/3").await;
    assert_eq!(video.headers()["cache-tag"], "video:3");
    assert_eq!(video.headers()["cache-control"], "public, max-age=1800");
    let video: serde_json::Value = video.json().await.unwrap();
    assert_eq!(video["renditions"].as_array().unwrap().len(), 3);

    let feed = app.get("/api/feed").await;
    assert_eq!(feed.status(), 400, "a feed needs a segment");
    let feed = app
        .get_with("/api/feed", protocol::headers::SEGMENT, "pro-de")
        .await;
    assert_eq!(feed.headers()["cache-tag"], "feed:pro-de");
    let feed: serde_json::Value = feed.json().await.unwrap();
    assert_eq!(feed["segment"], "pro-de");
    assert!(
        feed["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["locale"] == "de")
    );
}
on_every_backend!(course_video_feed, course_video_and_validators);

async fn search_ranks_title_matches_first_and_matches_prefixes(app: TestApp) {
    let results = app.get_json("/api/search?q=ownership").await;
    let slugs: Vec<&str> = results["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["slug"].as_str().unwrap())
        .collect();
    // The one course with the word in its title outranks those with it in the summary.
    assert_eq!(slugs.first(), Some(&"ownership-deep-dive"), "{slugs:?}");
    assert!(slugs.len() > 1, "summary matches are found too: {slugs:?}");

    let prefix = app.get_json("/api/search?q=postgr").await;
    let first = prefix["items"][0]["slug"].as_str().unwrap();
    assert!(first.starts_with("postgres-"), "prefix match: {first}");

    let both = app.get_json("/api/search?q=Rust+beginners").await;
    assert_eq!(both["items"][0]["slug"], "rust-beginner");
    assert_eq!(both["query"], "rust beginners");

    let none = app.get_json("/api/search?q=zzzzqqq").await;
    assert_eq!(none["items"].as_array().unwrap().len(), 0);
}
on_every_backend!(
    search,
    search_ranks_title_matches_first_and_matches_prefixes
);

// --- cache-aside ---------------------------------------------------------------------

/// The least-viewed course: never among the warmed ones, so its key starts cold.
fn coldest_course() -> String {
    let demo = course_edge_origin::storage::demo::DemoData::from_json(include_bytes!(
        "../demo/catalog.json"
    ))
    .unwrap();
    demo.courses
        .iter()
        .min_by_key(|c| c.views)
        .unwrap()
        .slug
        .clone()
}

async fn a_stampede_on_a_cold_key_reaches_the_store_once(app: TestApp) {
    let before = app.queries();
    // A course (never shed) rather than search, which sheds above 512 in flight.
    let url = app.url(&format!("/api/courses/{}", coldest_course()));
    let requests = (0..1000).map(|_| {
        let client = app.client.clone();
        let url = url.clone();
        async move { client.get(&url).send().await.map(|r| r.status().as_u16()) }
    });
    let statuses = join_all(requests).await;
    assert!(statuses.iter().all(|s| matches!(s, Ok(200))), "all 200");
    assert_eq!(
        app.queries() - before,
        1,
        "the store was queried exactly once"
    );
}
on_every_backend!(coalescing, a_stampede_on_a_cold_key_reaches_the_store_once);

async fn warmed_keys_cost_no_store_queries_after_ready(app: TestApp) {
    assert!(app.state.is_ready());
    let before = app.queries();
    for path in [
        "/api/catalog",
        "/api/catalog?page=2",
        "/api/catalog?page=3&per_page=20",
        "/api/courses/ownership-deep-dive",
        "/api/feed?segment=anon-en",
        "/api/feed?segment=free-de",
        "/api/feed?segment=pro-fr",
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["x-origin-cache"], "HIT", "{path}");
    }
    assert_eq!(app.queries(), before, "warmed keys reached the store");
}
on_every_backend!(warming, warmed_keys_cost_no_store_queries_after_ready);

#[tokio::test]
async fn readyz_waits_for_warming() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fresh = course_edge_origin::AppState::new(
        std::sync::Arc::new(
            course_edge_origin::storage::SqlStore::open_sqlite(dir.path())
                .await
                .unwrap(),
        ),
        None,
        course_edge_origin::ephemeral_session_keys(),
        Settings::default(),
    );
    assert!(!fresh.is_ready());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, course_edge_origin::app(fresh.clone())).into_future());
    let not_ready = reqwest::get(format!("http://{addr}/readyz")).await.unwrap();
    assert_eq!(not_ready.status(), 503);
    assert!(not_ready.headers().contains_key("retry-after"));
    course_edge_origin::warm::warm(&fresh).await.unwrap();
    fresh.mark_ready();
    assert_eq!(
        reqwest::get(format!("http://{addr}/readyz"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(app.get("/readyz").await.status(), 200);
}

// --- sessions ------------------------------------------------------------------------

fn cookie_of(response: &reqwest::Response) -> String {
    let set = response.headers()["set-cookie"].to_str().unwrap();
    assert!(set.contains("HttpOnly") && set.contains("Secure") && set.contains("SameSite=Lax"));
    set.split(';').next().unwrap().to_owned()
}

async fn sessions_are_write_through(app: TestApp) {
    let login = app
        .client
        .post(app.url("/api/sessions"))
        .json(&serde_json::json!({"email": "Ada@Example.com", "password": "demo-password-ada"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 201);
    assert_eq!(login.headers()["cache-control"], "private, no-store");
    let cookie = cookie_of(&login);
    let body: serde_json::Value = login.json().await.unwrap();
    assert_eq!(body["segment"], "pro-en");

    // Written to the store at once (write-through), not only to the cache.
    let before = app.queries();
    let current = app
        .get_with("/api/sessions/current", "cookie", &cookie)
        .await;
    assert_eq!(current.status(), 200);
    assert_eq!(
        app.queries(),
        before,
        "a fresh session is read from the cache"
    );
    let body: serde_json::Value = current.json().await.unwrap();
    assert_eq!(body["user"]["display_name"], "Ada");

    let logout = app
        .client
        .delete(app.url("/api/sessions/current"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    // Never a session the store no longer has.
    let after = app
        .get_with("/api/sessions/current", "cookie", &cookie)
        .await;
    assert_eq!(after.status(), 401);
}
on_every_backend!(sessions, sessions_are_write_through);

#[tokio::test]
async fn a_session_evicted_from_the_cache_is_read_back_from_the_store() {
    // Two apps over one SQLite file: the second has an empty cache, so it can only
    // answer from the store — proving the login wrote the row, not just the cache.
    let dir = tempfile::tempdir().unwrap();
    let keys = "k1:".to_owned() + &"A".repeat(43);
    let mk = |store| {
        course_edge_origin::AppState::new(
            std::sync::Arc::new(store),
            None,
            protocol::SessionKeys::parse(&keys).unwrap(),
            Settings::default(),
        )
    };
    let a = mk(
        course_edge_origin::storage::SqlStore::open_sqlite(dir.path())
            .await
            .unwrap(),
    );
    let demo = course_edge_origin::storage::demo::DemoData::from_json(include_bytes!(
        "../demo/catalog.json"
    ))
    .unwrap();
    use course_edge_origin::storage::Store;
    a.store.load_demo(&demo, 1).await.unwrap();
    let b = mk(
        course_edge_origin::storage::SqlStore::open_sqlite(dir.path())
            .await
            .unwrap(),
    );
    let now = 1_800_000_000;
    let (session, token) = a
        .sessions
        .login(&*a.store, "bo@example.com", "demo-password-bo", now)
        .await
        .unwrap();
    let read = b.sessions.current(&*b.store, &token, now).await.unwrap();
    assert_eq!(read, session);
    a.sessions.logout(&*a.store, &token, now).await.unwrap();
    // b still has it cached locally: a single-instance cache. With Redis the cache is
    // shared (the `sessions::redis` test covers that path end to end).
    assert!(a.sessions.current(&*a.store, &token, now).await.is_err());
}

// --- shedding ------------------------------------------------------------------------

#[tokio::test]
async fn under_overload_the_feed_is_shed_first_then_search_and_the_core_keeps_serving() {
    let settings = Settings {
        limits: Limits {
            shed_feed_at: 2,
            shed_search_at: 4,
            max_in_flight: 8,
            queue_timeout: Duration::from_millis(50),
        },
        ..Settings::default()
    };
    let app = spawn_app_with(Backend::Sqlite, settings).await.unwrap();
    // Prime the last copy of one feed.
    assert_eq!(app.get("/api/feed?segment=anon-en").await.status(), 200);

    // Simulated load: requests in flight that have not finished.
    let mut load = Vec::new();
    for _ in 0..2 {
        load.push(app.state.admission.enter(Class::Catalog).await.unwrap());
    }
    let feed = app.get("/api/feed?segment=anon-en").await;
    assert_eq!(feed.status(), 200, "a shed feed serves its last copy");
    assert_eq!(feed.headers()["x-origin-degraded"], "shed");
    // Warming served every stored feed, so only a segment with no copy at all is left:
    // a shed request does not touch the store to find out it would be a 404.
    let never_served = app.get("/api/feed?segment=anon-xx").await;
    assert_eq!(never_served.status(), 503, "no last copy: 503");
    assert!(never_served.headers().contains_key("retry-after"));
    assert_eq!(
        app.get("/api/search?q=rust").await.status(),
        200,
        "search still serves"
    );

    for _ in 0..2 {
        load.push(app.state.admission.enter(Class::Catalog).await.unwrap());
    }
    let search = app.get("/api/search?q=rust").await;
    assert_eq!(search.status(), 503, "then search is shed");
    let body: protocol::ErrorBody = search.json().await.unwrap();
    assert_eq!(body.error.code, "overloaded");
    for path in [
        "/api/catalog",
        "/api/courses/rust-beginner",
        "/api/videos/1",
    ] {
        assert_eq!(app.get(path).await.status(), 200, "{path} keeps serving");
    }

    // Past the global limit the core waits a bounded time, then 503.
    for _ in 0..4 {
        load.push(app.state.admission.enter(Class::Catalog).await.unwrap());
    }
    let started = std::time::Instant::now();
    let queued = app.get("/api/catalog").await;
    assert_eq!(queued.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "bounded queue wait"
    );
    drop(load);
    assert_eq!(app.get("/api/catalog").await.status(), 200, "recovers");
}

// --- bad input: every 4xx path ---------------------------------------------------------

#[tokio::test]
async fn bad_input_gets_a_json_4xx_naming_the_field() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let long_q = format!("/api/search?q={}", "x".repeat(101));
    let long_query = format!("/api/catalog?tag={}", "a".repeat(2000));
    let get_cases: Vec<(&str, u16, Option<&str>)> = vec![
        ("/api/courses/no-such-course", 404, None),
        ("/api/courses/Bad_Slug", 400, Some("slug")),
        ("/api/videos/0", 400, Some("id")),
        ("/api/videos/abc", 400, Some("id")),
        ("/api/videos/999999", 404, None),
        ("/api/catalog?page=0", 400, Some("page")),
        ("/api/catalog?per_page=1000", 400, Some("per_page")),
        ("/api/catalog?locale=english", 400, Some("locale")),
        ("/api/catalog?level=guru", 400, Some("level")),
        ("/api/catalog?tag=%ZZ", 400, Some("query")),
        (&long_query, 400, Some("query")),
        ("/api/search", 400, Some("q")),
        ("/api/search?q=%20%20", 400, Some("q")),
        (&long_q, 400, Some("q")),
        ("/api/search?q=rust&limit=0", 400, Some("limit")),
        ("/api/feed", 400, Some("segment")),
        ("/api/feed?segment=vip-en", 400, Some("segment")),
        ("/api/feed?segment=anon-xx", 404, None),
        ("/api/sessions/current", 401, None),
        ("/no/such/route", 404, None),
    ];
    for (path, status, field) in get_cases {
        let response = app.get(path).await;
        assert_eq!(response.status(), status, "{}", &path[..path.len().min(60)]);
        assert_eq!(response.headers()["content-type"], "application/json");
        let body: protocol::ErrorBody = response.json().await.unwrap();
        assert_eq!(body.error.status, status);
        assert_eq!(body.error.field.as_deref(), field, "{path}");
    }

    let post = |body: reqwest::Body, content_type: &'static str| {
        app.client
            .post(app.url("/api/sessions"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let cases: Vec<(reqwest::Body, &str, u16, Option<&str>)> = vec![
        ("{not json".into(), "application/json", 400, Some("body")),
        ("{}".into(), "application/json", 400, Some("body")),
        (
            r#"{"email":"a@b","password":"x","admin":true}"#.into(),
            "application/json",
            400,
            Some("body"),
        ),
        (
            r#"{"email":"nope","password":"x"}"#.into(),
            "application/json",
            400,
            Some("email"),
        ),
        (
            r#"{"email":"a@b.c","password":""}"#.into(),
            "application/json",
            400,
            Some("password"),
        ),
        (
            r#"{"email":"a@b.c","password":"x"}"#.into(),
            "text/plain",
            415,
            Some("content-type"),
        ),
        (
            "x".repeat(20_000).into(),
            "application/json",
            413,
            Some("body"),
        ),
        (
            r#"{"email":"ada@example.com","password":"wrong"}"#.into(),
            "application/json",
            401,
            None,
        ),
        (
            r#"{"email":"nobody@example.com","password":"x"}"#.into(),
            "application/json",
            401,
            None,
        ),
    ];
    for (body, content_type, status, field) in cases {
        let response = post(body, content_type).await.unwrap();
        assert_eq!(response.status(), status, "{content_type} {field:?}");
        let body: protocol::ErrorBody = response.json().await.unwrap();
        assert_eq!(body.error.field.as_deref(), field);
    }

    let forged = app
        .get_with(
            "/api/sessions/current",
            "cookie",
            "ce_session=v1.ephemeral.e30.AAAA",
        )
        .await;
    assert_eq!(forged.status(), 401);
    let wrong_method = app
        .client
        .delete(app.url("/api/catalog"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
}

#[tokio::test]
async fn metrics_expose_requests_cache_and_store_counters() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    app.get("/api/catalog").await;
    app.get("/api/search?q=linux").await;
    let text = app.get("/metrics").await.text().await.unwrap();
    for needle in [
        "origin_http_requests_total{route=\"/api/catalog\"",
        "origin_http_request_duration_seconds_bucket{route=\"/api/search\"",
        "origin_cache_lookups_total{domain=\"catalog\",result=\"HIT\"}",
        "origin_store_queries_total{op=\"search\"}",
    ] {
        assert!(text.contains(needle), "missing {needle}");
    }
}

// --- logins under attack and under faults ------------------------------------------------

/// A TCP relay to `target` that can be cut (every connection dropped, the port closed)
/// and restored on the same port: a Redis outage without touching the shared server.
struct Relay {
    port: u16,
    target: String,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Relay {
    async fn start(target: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let relay = Self {
            port,
            target: target.to_owned(),
            tasks: Default::default(),
        };
        relay.serve(listener);
        relay
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let tasks = self.tasks.clone();
        let target = self.target.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let target = target.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().unwrap().push(conn);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    fn cut(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    async fn restore(&self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        self.serve(listener);
    }
}

mod logout_survives_a_redis_outage {
    use super::*;

    /// Review finding: the revoked-marker write returned early when Redis failed, so the
    /// session row survived and the user stayed signed in.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis() {
        let Some(url) = support::service_url("REDIS_URL", 6379, "Redis") else {
            return;
        };
        let target = url
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_owned();
        let relay = Relay::start(&target).await;
        let prefix = format!("ce-test-logout-{}", std::process::id());
        let via_relay = course_edge_origin::cache::RedisL2::connect(
            &format!("redis://127.0.0.1:{}", relay.port),
            &prefix,
        )
        .await
        .unwrap();
        let direct = course_edge_origin::cache::RedisL2::connect(&url, &prefix)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = course_edge_origin::storage::SqlStore::open_sqlite(dir.path())
            .await
            .unwrap();
        let demo = course_edge_origin::storage::demo::DemoData::from_json(include_bytes!(
            "../demo/catalog.json"
        ))
        .unwrap();
        use course_edge_origin::storage::Store;
        store.load_demo(&demo, 1).await.unwrap();
        let keys = || protocol::SessionKeys::parse(&("k1:".to_owned() + &"A".repeat(43))).unwrap();
        let login = course_edge_origin::login_limits::LoginSettings::default();
        let ttl = Duration::from_secs(600);
        let a = course_edge_origin::sessions::Sessions::new(keys(), ttl, Some(via_relay), &login);
        let b = course_edge_origin::sessions::Sessions::new(keys(), ttl, Some(direct), &login);
        let now = 1_800_000_000;
        let (session, token) = a
            .login(&store, "bo@example.com", "demo-password-bo", now)
            .await
            .unwrap();
        // Both instances see it through the shared cache.
        assert_eq!(b.current(&store, &token, now).await.unwrap(), session);

        relay.cut();
        a.logout(&store, &token, now)
            .await
            .expect("a logout takes effect in the store whatever Redis does");
        assert_eq!(
            store.session(&session.id).await.unwrap(),
            None,
            "the row is gone"
        );
        assert!(
            a.current(&store, &token, now).await.is_err(),
            "this instance refuses it"
        );

        // Redis is back: the marker is written, so the Live copy other instances still
        // read from Redis is replaced and they refuse the session too.
        relay.restore().await;
        let mut refused = false;
        for _ in 0..60 {
            if b.current(&store, &token, now).await.is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(refused, "the revoked marker reached Redis after the outage");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_have_their_own_budget_and_reads_keep_serving_during_a_flood() {
    let settings = Settings {
        limits: Limits {
            shed_feed_at: 8,
            shed_search_at: 12,
            max_in_flight: 16,
            queue_timeout: Duration::from_millis(200),
        },
        login: course_edge_origin::login_limits::LoginSettings {
            per_ip_per_minute: 3,
            per_account_per_minute: 1000,
            hash_wait: Duration::from_millis(20),
            concurrent_hashes: 1,
        },
        ..Settings::default()
    };
    let app = spawn_app_with(Backend::Sqlite, settings).await.unwrap();
    let login = |ip: String| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/api/sessions"))
                .header("x-edge-client-ip", ip)
                .json(&serde_json::json!({"email": "bo@example.com", "password": "wrong"}))
                .send()
                .await
                .unwrap()
        }
    };
    // Per IP: the fourth login in a minute from one address is a 429 with Retry-After.
    for _ in 0..3 {
        assert_eq!(login("198.51.100.7".into()).await.status(), 401);
    }
    let limited = login("198.51.100.7".into()).await;
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");

    // A flood from many addresses: more logins than the one hashing slot can take in
    // its 20 ms wait get 429s (never a queue without end), and catalog reads are never
    // shed meanwhile (before, each waiting login held one of the 16 admission slots).
    let flood = join_all((0..40).map(|i| login(format!("203.0.113.{i}"))));
    let reads = join_all((0..12).map(|_| app.get("/api/catalog")));
    let (flood, reads) = tokio::join!(flood, reads);
    let busy = flood.iter().filter(|r| r.status() == 429).count();
    assert!(busy > 0, "the hashing budget turns a flood away");
    assert!(
        flood
            .iter()
            .all(|r| matches!(r.status().as_u16(), 401 | 429))
    );
    for read in &reads {
        assert_eq!(
            read.status(),
            200,
            "reads keep serving during a login flood"
        );
    }
}
