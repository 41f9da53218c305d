//! The invalidator beyond one process: Redis generations and bounded tag sets, two
//! origin instances told over NATS or Redis pub/sub, and delivery to the edge and to
//! Cloudflare's API (a recording stand-in that refuses what the API refuses), with
//! retries until acknowledged.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use course_edge_origin::AppState;
use course_edge_origin::cache::{CacheKey, Entry, Eviction, RedisL2};
use course_edge_origin::domain::VideoId;
use course_edge_origin::invalidation::plan::CallLimits;
use course_edge_origin::invalidation::{
    Bus, CloudflareTarget, DeliverySettings, EdgeTarget, Targets,
};
use course_edge_origin::storage::{SqlStore, Store};
use protocol::CacheTag;
use support::cloudflare::{Plan, Recorder, refuse_body};
use support::{ADMIN_TOKEN, TestApp, service_url, test_settings, unique};

fn entry(body: &'static str, tags: Vec<CacheTag>) -> Entry {
    Entry::new(
        Bytes::from_static(body.as_bytes()),
        format!("\"{body}\""),
        tags,
    )
}

async fn redis(cap: usize) -> Option<RedisL2> {
    let url = service_url("REDIS_URL", 6379, "Redis")?;
    Some(
        RedisL2::connect(&url, &format!("ce-test:{}", unique()))
            .await
            .unwrap()
            .with_tag_cap(cap),
    )
}

mod redis_generations {
    use super::*;

    /// Across instances: a put whose load began before another instance's eviction of
    /// its tag, key or domain is refused; one that began after is stored.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis() {
        let Some(l2) = super::redis(10_000).await else {
            return;
        };
        let key = CacheKey::video(VideoId(9));
        let ttl = Duration::from_secs(60);
        for eviction in [
            Eviction::Tag(CacheTag::Video(9)),
            Eviction::Key(key.clone()),
            Eviction::Domain(course_edge_origin::cache::Domain::Video),
            Eviction::All,
        ] {
            let since = l2.epoch().await.unwrap();
            l2.evict(&eviction).await.unwrap();
            l2.put(&key, &entry("old", vec![CacheTag::Video(9)]), ttl, since)
                .await;
            assert!(
                l2.peek(&key).await.is_none(),
                "{eviction:?}: the old value came back"
            );
            let since = l2.epoch().await.unwrap();
            l2.put(&key, &entry("new", vec![CacheTag::Video(9)]), ttl, since)
                .await;
            assert_eq!(l2.peek(&key).await.unwrap().body, "new", "{eviction:?}");
        }
        // An unrelated eviction does not refuse the put.
        let since = l2.epoch().await.unwrap();
        l2.evict(&Eviction::Tag(CacheTag::Video(10))).await.unwrap();
        let other = CacheKey::video(VideoId(11));
        l2.put(
            &other,
            &entry("kept", vec![CacheTag::Video(11)]),
            ttl,
            since,
        )
        .await;
        assert!(l2.peek(&other).await.is_some());
    }
}

mod redis_tag_sets {
    use super::*;

    /// A tag's set holds at most the cap; keys dropped from it lose their data too, so
    /// an eviction by tag still removes every key carrying it. Expired members go.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis() {
        let Some(l2) = super::redis(50).await else {
            return;
        };
        let ttl = Duration::from_secs(60);
        for i in 0..80 {
            let since = l2.epoch().await.unwrap();
            l2.put(
                &CacheKey::video(VideoId(i)),
                &entry("v", vec![CacheTag::Catalog]),
                ttl,
                since,
            )
            .await;
        }
        assert_eq!(l2.tag_members(&CacheTag::Catalog).await.unwrap(), 50);
        let mut present = 0;
        for i in 0..80 {
            present += usize::from(l2.peek(&CacheKey::video(VideoId(i))).await.is_some());
        }
        assert_eq!(
            present, 50,
            "a key is never in Redis without being in its tag's set"
        );
        assert_eq!(
            l2.evict(&Eviction::Tag(CacheTag::Catalog)).await.unwrap(),
            50
        );
        for i in 0..80 {
            assert!(l2.peek(&CacheKey::video(VideoId(i))).await.is_none());
        }
        // Members whose data expired are dropped on the next put.
        let short = Duration::from_secs(1);
        for i in 0..5 {
            let since = l2.epoch().await.unwrap();
            l2.put(
                &CacheKey::video(VideoId(i)),
                &entry("s", vec![CacheTag::Search]),
                short,
                since,
            )
            .await;
        }
        assert_eq!(l2.tag_members(&CacheTag::Search).await.unwrap(), 5);
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let since = l2.epoch().await.unwrap();
        l2.put(
            &CacheKey::video(VideoId(99)),
            &entry("s", vec![CacheTag::Search]),
            ttl,
            since,
        )
        .await;
        assert_eq!(l2.tag_members(&CacheTag::Search).await.unwrap(), 1);
    }
}

/// An origin instance on a shared PostgreSQL database, Redis prefix and bus.
/// Only the seeding instance delivers (the other never polls the shared outbox), so what
/// reaches the other can only come over the bus.
async fn instance(db_url: &str, redis_url: &str, prefix: &str, bus: Bus, seed: bool) -> TestApp {
    let delivery = DeliverySettings {
        poll: if seed {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(3600)
        },
        ..DeliverySettings::default()
    };
    let store = SqlStore::open_postgres(db_url).await.unwrap();
    if seed {
        store
            .load_demo(&support::demo(), 1_700_000_000)
            .await
            .unwrap();
    }
    let l2 = RedisL2::connect(redis_url, prefix).await.unwrap();
    let state = AppState::new(
        Arc::new(store),
        Some(l2),
        course_edge_origin::ephemeral_session_keys(),
        test_settings(),
    )
    .with_invalidation(bus, Targets::default(), delivery);
    support::serve(state, None, None).await
}

/// Two instances: a course read on B (cached in B's process), edited through A; B's
/// next read is the new course, with B's TTL far away: B was told.
async fn edit_on_one_evicts_on_the_other(
    make_bus: impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Bus>>>,
) {
    let Some((db_url, _db)) = support::fresh_postgres().await else {
        return;
    };
    let Some(redis_url) = service_url("REDIS_URL", 6379, "Redis") else {
        return;
    };
    let prefix = format!("ce-test:{}", unique());
    let a = instance(&db_url, &redis_url, &prefix, make_bus().await, true).await;
    let b = instance(&db_url, &redis_url, &prefix, make_bus().await, false).await;
    // Let both subscriptions settle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let page = b.get_json("/api/catalog").await;
    let slug = page["items"][0]["slug"].as_str().unwrap().to_owned();
    let path = format!("/api/courses/{slug}");
    let etag = b.get(&path).await.headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(b.get(&path).await.headers()["x-origin-cache"], "HIT");
    let title = format!("Told over the bus {}", unique());
    let edit = a
        .client
        .put(a.url(&format!("/admin/courses/{slug}")))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("if-match", &etag)
        .json(&serde_json::json!({
            "title": title, "summary": "s", "locale": "en", "level": "beginner",
            "tags": ["rust"], "plan": "free", "cover_image": null
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(edit.status(), 200);
    // B evicts when the bus message arrives (the edit answered after publishing it).
    let started = std::time::Instant::now();
    loop {
        let body = b.get_json(&path).await;
        if body["title"] == title.as_str() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "B still serves the old course"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

mod two_instances {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nats() {
        let Some(url) = service_url("NATS_URL", 4222, "NATS") else {
            return;
        };
        let subject = format!("course-edge.test.{}", unique());
        edit_on_one_evicts_on_the_other(|| {
            let (url, subject) = (url.clone(), subject.clone());
            Box::pin(async move { Bus::nats(&url, &subject).await.unwrap() })
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis() {
        let Some(url) = service_url("REDIS_URL", 6379, "Redis") else {
            return;
        };
        let channel = format!("ce-test:{}:purge", unique());
        edit_on_one_evicts_on_the_other(|| {
            let (url, channel) = (url.clone(), channel.clone());
            Box::pin(async move { Bus::redis(&url, &channel).unwrap() })
        })
        .await;
    }
}

async fn app_with_targets(
    recorder: &Recorder,
    limits: CallLimits,
    per_minute: u32,
    burst: u32,
) -> TestApp {
    app_with(
        recorder,
        limits,
        per_minute,
        burst,
        DeliverySettings::default(),
    )
    .await
}

async fn app_with(
    recorder: &Recorder,
    limits: CallLimits,
    per_minute: u32,
    burst: u32,
    delivery: DeliverySettings,
) -> TestApp {
    let store = SqlStore::open_sqlite(&std::env::temp_dir().join(format!("ce-inv-{}", unique())))
        .await
        .unwrap();
    store
        .load_demo(&support::demo(), 1_700_000_000)
        .await
        .unwrap();
    let client = Targets::client();
    let targets = Targets {
        edge: Some(EdgeTarget {
            url: recorder.edge_url(),
            secret: Recorder::EDGE_SECRET.into(),
            client: client.clone(),
        }),
        cloudflare: Some(CloudflareTarget {
            base: recorder.api_base(),
            zone: Recorder::ZONE.into(),
            token: Recorder::TOKEN.into(),
            public_base: "https://courses.example.com".into(),
            limits,
            client,
            pace: CloudflareTarget::pace(per_minute, burst),
        }),
    };
    let delivery = DeliverySettings {
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(400),
        ..delivery
    };
    let state = AppState::new(
        Arc::new(store),
        None,
        course_edge_origin::ephemeral_session_keys(),
        test_settings(),
    )
    .with_invalidation(Bus::Local, targets, delivery);
    support::serve(state, None, None).await
}

async fn invalidate(app: &TestApp, body: serde_json::Value) -> serde_json::Value {
    let response = app
        .client
        .post(app.url("/admin/invalidate"))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    response.json().await.unwrap()
}

async fn wait_delivered(app: &TestApp, id: i64) -> serde_json::Value {
    let started = std::time::Instant::now();
    loop {
        let row: serde_json::Value = app
            .client
            .get(app.url(&format!("/admin/purges/{id}")))
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if row["delivered"] == true {
            return row;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never delivered: {row}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[test]
fn the_stand_in_refuses_what_the_api_refuses() {
    use serde_json::json;
    let plan = Plan::FREE;
    for good in [
        json!({"tags": ["a"]}),
        json!({"files": ["https://x.example/a"]}),
        json!({"prefixes": ["x.example/a"]}),
        json!({"purge_everything": true}),
    ] {
        assert!(refuse_body(&good, plan).is_none(), "{good}");
    }
    for bad in [
        json!({"tags": ["a"], "files": ["https://x/a"]}),
        json!({"tags": []}),
        json!({"tags": vec!["t"; 101]}),
        json!({"prefixes": ["https://x.example/a"]}),
        json!({"files": ["/relative"]}),
        json!({"tags": ["has space"]}),
        json!({"everything": true}),
        json!([]),
    ] {
        assert!(refuse_body(&bad, plan).is_some(), "{bad}");
    }
}

/// One purge of 100 tags, 2 URLs and a prefix, on a plan of 40 operations per call,
/// becomes five valid calls (one kind per call), each acknowledged once; the edge gets
/// the purge with its id once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_reach_the_edge_and_cloudflare_within_the_plan() {
    let plan = Plan {
        max_per_call: 40,
        ..Plan::FREE
    };
    let recorder = Recorder::start(plan).await;
    let limits = CallLimits {
        max_items: 40,
        max_urls: 40,
    };
    let app = app_with_targets(&recorder, limits, 5, 25).await;
    let tags: Vec<String> = (0..100).map(|i| format!("tag-{i}")).collect();
    let answer = invalidate(
        &app,
        serde_json::json!({"tags": tags, "urls": ["/api/feed", "/media/a.jpg"], "prefixes": ["/media/covers"]}),
    )
    .await;
    assert_eq!(answer["purge"]["delivered"], true, "{answer}");
    let calls = recorder.calls();
    assert_eq!(calls.len(), 5, "{calls:?}");
    assert!(calls.iter().all(|c| c.status == 200), "{calls:?}");
    assert_eq!(calls[0].body["tags"].as_array().unwrap().len(), 40);
    assert_eq!(calls[2].body["tags"].as_array().unwrap().len(), 20);
    assert_eq!(
        calls[3].body,
        serde_json::json!({"prefixes": ["courses.example.com/media/covers"]})
    );
    assert_eq!(
        calls[4].body,
        serde_json::json!({"files": ["https://courses.example.com/api/feed", "https://courses.example.com/media/a.jpg"]})
    );
    let purges = recorder.edge_purges();
    assert_eq!(purges.len(), 1);
    assert_eq!(purges[0].change.tags.len(), 100);
    assert!(
        purges[0]
            .id
            .starts_with(&format!("o{}-", answer["purge"]["id"]))
    );
    assert_eq!(recorder.applied(), (1, 0));
}

/// The edge fails twice, then Cloudflare's rate limit is hit: the purge is retried
/// with backoff (never repeating acknowledged calls) until every target acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_purges_are_retried_until_acknowledged() {
    // A plan with a bucket of 2 calls and a quick refill, so the test hits 429.
    let plan = Plan {
        max_per_call: 100,
        per_minute: 120.0,
        bucket: 2.0,
    };
    let recorder = Recorder::start(plan).await;
    recorder.fail_edge(2);
    // The origin's own pacing is looser than the plan: the API's 429 must be handled.
    let app = app_with_targets(
        &recorder,
        CallLimits {
            max_items: 1,
            max_urls: 1,
        },
        600,
        50,
    )
    .await;
    let answer = invalidate(&app, serde_json::json!({"tags": ["a", "b", "c", "d"]})).await;
    let id = answer["purge"]["id"].as_i64().unwrap();
    let row = wait_delivered(&app, id).await;
    assert!(row["attempts"].as_i64().unwrap() >= 3, "{row}");
    let calls = recorder.calls();
    let ok: Vec<_> = calls.iter().filter(|c| c.status == 200).collect();
    assert_eq!(
        ok.len(),
        4,
        "each tag's call acknowledged exactly once: {calls:?}"
    );
    assert!(
        calls.iter().any(|c| c.status == 429),
        "the plan's rate was hit: {calls:?}"
    );
    let mut tags: Vec<String> = ok
        .iter()
        .map(|c| c.body["tags"][0].as_str().unwrap().to_owned())
        .collect();
    tags.sort();
    assert_eq!(tags, ["a", "b", "c", "d"]);
    assert_eq!(recorder.applied(), (1, 0), "the edge applied it once");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("origin_purges_total{outcome=\"retried\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("origin_purges_total{outcome=\"acknowledged\"}"));
    assert!(metrics.contains("origin_purges_pending"));
}

/// Warming after a purge: once the edge acknowledged an edit's purge, the purged URLs
/// under the configured prefixes are requested through the edge (and nothing else).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purged_hot_urls_are_warmed_through_the_edge() {
    let recorder = Recorder::start(Plan::FREE).await;
    let delivery = DeliverySettings {
        warm_base: Some(recorder.public_base()),
        warm_prefixes: vec![String::from("/api/courses")],
        ..DeliverySettings::default()
    };
    let app = app_with(&recorder, CallLimits::default(), 5, 25, delivery).await;
    let page = app.get_json("/api/catalog").await;
    let slug = page["items"][0]["slug"].as_str().unwrap().to_owned();
    let etag = app.get(&format!("/api/courses/{slug}")).await.headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let edit = app
        .client
        .put(app.url(&format!("/admin/courses/{slug}")))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("if-match", &etag)
        .json(&serde_json::json!({
            "title": "Warmed", "summary": "s", "locale": "en", "level": "beginner",
            "tags": ["rust"], "plan": "free", "cover_image": null
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(edit.status(), 200);
    let started = std::time::Instant::now();
    while recorder.warmed().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "nothing was warmed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        recorder.warmed(),
        [format!("/api/courses/{slug}")],
        "only the configured prefix"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("origin_purge_warms_total{outcome=\"warmed\"}"),
        "{metrics}"
    );
}

/// An instance whose NATS connection drops may miss purges meanwhile, so it forgets its
/// whole in-process cache when the client reports the drop, and again when it is back
/// (from the client's events: no blip falls between two polls). A private NATS server,
/// so stopping it disturbs no other test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_loses_nats_forgets_its_process_cache() {
    if service_url("NATS_URL", 4222, "NATS").is_none() {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    /// The private server, killed however the test ends.
    struct Server(std::process::Child);
    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let start_server = || {
        let child = std::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("nats-server (NATS answers here, so it is installed): {e}"));
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "nats-server never listened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Server(child)
    };
    let server = start_server();
    let bus = Bus::nats(
        &format!("nats://127.0.0.1:{port}"),
        "course-edge.test.flush",
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::open_sqlite(&dir.path().join("origin.db"))
        .await
        .unwrap();
    store
        .load_demo(&support::demo(), 1_700_000_000)
        .await
        .unwrap();
    let state = AppState::new(
        Arc::new(store),
        None,
        course_edge_origin::ephemeral_session_keys(),
        test_settings(),
    )
    .with_invalidation(bus, Targets::default(), DeliverySettings::default());
    let app = support::serve(state, Some(dir), None).await;
    let flushes = |metrics: &str, reason: &str| {
        metrics.contains(&format!("origin_bus_flushes_total{{reason=\"{reason}\"}}"))
    };
    let path = "/api/courses/rust-beginner";
    app.get(path).await;
    assert!(hit(&app, path).await, "cached in the process");
    // The initial connect is not a reconnect: nothing flushed yet.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        !flushes(&metrics, "reconnected") && !flushes(&metrics, "disconnected"),
        "{metrics}"
    );
    assert!(hit(&app, path).await, "still cached");

    drop(server);
    wait_for_miss(&app, path, "the connection dropped").await;
    app.get(path).await;
    assert!(hit(&app, path).await, "cached again while NATS is down");

    let _server = start_server();
    wait_for_miss(&app, path, "the connection came back").await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for reason in ["disconnected", "reconnected"] {
        assert!(flushes(&metrics, reason), "{reason}: {metrics}");
    }
}

async fn hit(app: &TestApp, path: &str) -> bool {
    app.get(path).await.headers()["x-origin-cache"] == "HIT"
}

/// Asks `path` until the answer is not a process-cache hit (at most 10 s).
async fn wait_for_miss(app: &TestApp, path: &str, after: &str) {
    let started = std::time::Instant::now();
    loop {
        if !hit(app, path).await {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the process cache was not forgotten after {after}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
