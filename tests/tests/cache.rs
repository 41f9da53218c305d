//! The cache policy and edge caching, in workerd against the real origin. Windows are
//! set short through `POLICY_*` vars so nothing waits long.

// A test crate: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use course_edge_e2e::{EdgeOptions, Stack, client, header};
use protocol::headers::{EDGE_CACHE, SEGMENT, SERVER_TIMING};

fn status_of(response: &reqwest::Response) -> String {
    header(response, EDGE_CACHE)
}

async fn get(url: &str) -> reqwest::Response {
    client().get(url).send().await.unwrap()
}

async fn n_of(response: reqwest::Response) -> u64 {
    let body: serde_json::Value = response.json().await.unwrap();
    body["n"]
        .as_u64()
        .unwrap_or_else(|| panic!("no n in {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_is_a_miss_then_a_hit_with_the_policy_headers() {
    let stack = Stack::start().await;
    let url = stack.edge.url("/api/catalog?locale=en&page=1");
    let first = get(&url).await;
    assert_eq!(first.status(), 200, "{}", stack.edge.log());
    assert_eq!(status_of(&first), "MISS");
    assert_eq!(
        header(&first, "cache-control"),
        "public, max-age=60, stale-while-revalidate=60, stale-if-error=86400"
    );
    assert_eq!(
        header(&first, "cdn-cache-control"),
        "max-age=300, stale-while-revalidate=60, stale-if-error=86400"
    );
    assert_eq!(
        header(&first, "cache-tag"),
        "catalog",
        "the origin's Cache-Tag is kept"
    );
    assert!(header(&first, SERVER_TIMING).contains("origin;dur="));
    let etag = header(&first, "etag");

    let second = get(&url).await;
    assert_eq!(status_of(&second), "HIT");
    assert!(header(&second, "age").parse::<u64>().is_ok());
    assert!(
        !header(&second, SERVER_TIMING).contains("origin"),
        "a hit never asks the origin"
    );

    // Conditional requests are answered from the edge's copy.
    let revalidated = client()
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), 304);
    assert_eq!(status_of(&revalidated), "HIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_and_tracking_urls_share_one_entry_and_cookies_are_stripped() {
    let stack = Stack::start().await;
    let first = get(&stack.edge.url("/api/catalog?page=2&per_page=5")).await;
    assert_eq!(status_of(&first), "MISS");
    for variant in [
        "/api/catalog?per_page=5&page=2",
        "/api/catalog?utm_source=news&per_page=5&fbclid=abc&page=2&gclid=x",
    ] {
        let response = get(&stack.edge.url(variant)).await;
        assert_eq!(status_of(&response), "HIT", "{variant}");
    }
    // A signed-in visitor's cookie does not split the catalog entry.
    let with_cookie = client()
        .get(stack.edge.url("/api/catalog?page=2&per_page=5"))
        .header("cookie", "ce_session=anything; theme=dark")
        .send()
        .await
        .unwrap();
    assert_eq!(status_of(&with_cookie), "HIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_entry_is_served_then_refreshed_in_the_background() {
    let options = EdgeOptions::default().var("POLICY_SEARCH", "browser=1 edge=1 swr=30 sie=30");
    let stack = Stack::start_with(options).await;
    let url = stack.edge.url("/api/search?q=rust");
    assert_eq!(status_of(&get(&url).await), "MISS");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let stale = get(&url).await;
    assert_eq!(status_of(&stale), "STALE", "{}", stack.edge.log());
    assert!(header(&stale, "age").parse::<u64>().unwrap() >= 1);
    // The background refresh stored a fresh copy.
    let mut refreshed = String::new();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let response = get(&url).await;
        refreshed = status_of(&response);
        if refreshed == "HIT" {
            assert_eq!(header(&response, "age"), "0");
            break;
        }
    }
    assert_eq!(refreshed, "HIT", "{}", stack.edge.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_origin_down_a_copy_is_served_inside_stale_if_error_then_503() {
    let options = EdgeOptions::default().var("POLICY_VIDEO_META", "browser=1 edge=1 swr=0 sie=3");
    let mut stack = Stack::start_with(options).await;
    let url = stack.edge.url("/api/videos/3");
    assert_eq!(status_of(&get(&url).await), "MISS");
    stack.origin.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stale = get(&url).await;
    assert_eq!(stale.status(), 200, "{}", stack.edge.log());
    assert_eq!(status_of(&stale), "STALE");
    let body: serde_json::Value = stale.json().await.unwrap();
    assert_eq!(body["id"], 3);

    tokio::time::sleep(Duration::from_millis(3000)).await;
    let gone = get(&url).await;
    assert_eq!(gone.status(), 503);
    assert_eq!(header(&gone, "retry-after"), "5");
    let body: protocol::ErrorBody = gone.json().await.unwrap();
    assert_eq!(body.error.code, "origin_unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_304_revalidates_the_stored_copy() {
    let stack = Stack::start().await;
    let url = stack.edge.url("/test/echo?id=reval&etag=v1&cc=max-age%3D1");
    let first = get(&url).await;
    assert_eq!(status_of(&first), "MISS");
    assert_eq!(n_of(first).await, 1);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let second = get(&url).await;
    assert_eq!(status_of(&second), "REVALIDATED", "{}", stack.edge.log());
    // The body is the stored one: the origin only said 304.
    assert_eq!(n_of(second).await, 1);
    let third = get(&url).await;
    assert_eq!(status_of(&third), "HIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_cookie_500_and_private_answers_are_never_stored() {
    let stack = Stack::start().await;
    let cases = [
        (
            "/test/echo?id=cookie&cookie=1&cc=public%2C+max-age%3D60",
            "set-cookie",
            200,
        ),
        (
            "/test/echo?id=err&status=500&cc=public%2C+max-age%3D60",
            "status",
            500,
        ),
        (
            "/test/echo?id=slow&status=429&cc=max-age%3D60",
            "status",
            429,
        ),
        (
            "/test/echo?id=priv&cc=private%2C+max-age%3D60",
            "origin-private",
            200,
        ),
        ("/test/echo?id=nolife", "no-lifetime", 200),
    ];
    for (path, reason, status) in cases {
        for round in 1..=2 {
            let response = get(&stack.edge.url(path)).await;
            assert_eq!(response.status(), status, "{path}");
            assert_eq!(status_of(&response), "MISS", "{path} round {round}");
            assert_eq!(header(&response, "x-edge-no-store"), reason, "{path}");
            assert_eq!(
                n_of(response).await,
                round,
                "{path}: the origin saw every request"
            );
        }
    }
    let stored = stack.edge.url("/test/echo?id=ok&cc=public%2C+max-age%3D60");
    assert_eq!(status_of(&get(&stored).await), "MISS");
    let hit = get(&stored).await;
    assert_eq!(
        status_of(&hit),
        "HIT",
        "pass-through honours the origin's max-age"
    );
    assert_eq!(header(&hit, "cache-control"), "public, max-age=60");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_credentials_bypass_the_cache() {
    let stack = Stack::start().await;
    let login = client()
        .post(stack.edge.url("/api/sessions"))
        .json(&serde_json::json!({"email":"bo@example.com","password":"demo-password-bo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 201, "{}", stack.edge.log());
    assert_eq!(status_of(&login), "BYPASS");
    assert_eq!(header(&login, "cache-control"), "private, no-store");
    assert!(header(&login, "set-cookie").starts_with("ce_session="));

    // Credentials bypass only the class that forwards them (pass-through); a shared
    // class never sends them to the origin, so they cannot make its answer personal.
    let authorized = |path: &'static str| {
        client()
            .get(stack.edge.url(path))
            .header("authorization", "Bearer x")
            .send()
    };
    let catalog = authorized("/api/catalog").await.unwrap();
    assert_eq!(status_of(&catalog), "MISS");
    assert!(header(&catalog, "cache-control").starts_with("public"));
    let echo = authorized("/test/echo?id=auth&cc=public%2C+max-age%3D60")
        .await
        .unwrap();
    assert_eq!(status_of(&echo), "BYPASS");
    assert_eq!(header(&echo, "x-edge-no-store"), "authorization");
    let body: serde_json::Value = echo.json().await.unwrap();
    assert_eq!(body["seen_auth"], true, "forwarded where the class uses it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_is_cached_per_segment_from_the_verified_cookie() {
    let stack = Stack::start().await;
    let feed = |cookie: Option<String>, spoof: Option<&'static str>| {
        let mut request = client().get(stack.edge.url("/api/feed"));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        if let Some(segment) = spoof {
            request = request.header(SEGMENT, segment);
        }
        request.send()
    };
    let anon = feed(None, None).await.unwrap();
    assert_eq!(status_of(&anon), "MISS", "{}", stack.edge.log());
    assert_eq!(header(&anon, "cache-control"), "private, no-cache");
    let body: serde_json::Value = anon.json().await.unwrap();
    assert_eq!(body["segment"], "anon-en");

    // A client cannot pick its segment: the header is ignored.
    let spoofed = feed(None, Some("pro-en")).await.unwrap();
    assert_eq!(status_of(&spoofed), "HIT");
    let body: serde_json::Value = spoofed.json().await.unwrap();
    assert_eq!(body["segment"], "anon-en");

    // A signed-in pro member gets the pro entry, keyed by segment, shared by members.
    let login = client()
        .post(stack.edge.url("/api/sessions"))
        .json(&serde_json::json!({"email":"ada@example.com","password":"demo-password-ada"}))
        .send()
        .await
        .unwrap();
    let cookie = header(&login, "set-cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let pro = feed(Some(cookie.clone()), None).await.unwrap();
    assert_eq!(status_of(&pro), "MISS", "another segment is another entry");
    let body: serde_json::Value = pro.json().await.unwrap();
    assert_eq!(body["segment"], "pro-en");
    assert_eq!(status_of(&feed(Some(cookie), None).await.unwrap()), "HIT");

    // A forged cookie is anonymous.
    let forged = feed(Some(String::from("ce_session=v1.test.e30.AAAA")), None)
        .await
        .unwrap();
    let body: serde_json::Value = forged.json().await.unwrap();
    assert_eq!(body["segment"], "anon-en");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origins_internal_endpoints_are_not_reachable_through_the_edge() {
    let options = EdgeOptions::default().var("INTERNAL_PATHS", "/metrics,/healthz,/readyz,/test/");
    let stack = Stack::start_with(options).await;
    for path in ["/metrics", "/readyz", "/healthz", "/test/echo?id=x"] {
        let response = get(&stack.edge.url(path)).await;
        assert_eq!(response.status(), 404, "{path}");
        let body: protocol::ErrorBody = response.json().await.unwrap();
        assert_eq!(body.error.code, "not_found");
    }
    // The edge's own health route still answers.
    assert_eq!(get(&stack.edge.url("/api/health")).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_through_never_shares_a_cookie_or_vary_dependent_answer() {
    let stack = Stack::start().await;
    // `Vary: Accept-Language`: one stored variant per value, never another's.
    let path = "/test/echo?id=vary&cc=public%2C+max-age%3D60&vary=Accept-Language";
    let ask = |lang: &'static str| {
        client()
            .get(stack.edge.url(path))
            .header("accept-language", lang)
            .send()
    };
    let en = ask("en").await.unwrap();
    assert_eq!(status_of(&en), "MISS", "{}", stack.edge.log());
    assert_eq!(n_of(en).await, 1);
    let de = ask("de").await.unwrap();
    assert_eq!(status_of(&de), "MISS", "another value is another variant");
    assert_eq!(n_of(de).await, 2);
    let mut again = ask("en").await.unwrap();
    for _ in 0..20 {
        if status_of(&again) == "HIT" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        again = ask("en").await.unwrap();
    }
    assert_eq!(status_of(&again), "HIT");
    assert_eq!(header(&again, "vary"), "Accept-Language");
    assert_eq!(
        n_of(again).await,
        1,
        "the en variant, not the last one stored"
    );
    let with_cookie = "/test/echo?id=reqcookie&cc=max-age%3D60";
    for round in 1..=2 {
        let response = client()
            .get(stack.edge.url(with_cookie))
            .header("cookie", "user=1")
            .send()
            .await
            .unwrap();
        assert_eq!(header(&response, "x-edge-no-store"), "request-cookie");
        assert_eq!(n_of(response).await, round);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_and_video_objects_come_from_r2_with_ranges() {
    let segment: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let options = EdgeOptions::default()
        .object("video/42/720p/seg-00001.ts", segment.clone())
        .object("video/42/master.m3u8", b"#EXTM3U\n".to_vec())
        .object("static/app.3f9a2c1d.js", b"console.log(1)".to_vec());
    let stack = Stack::start_with(options).await;
    let http = client();

    let whole = get(&stack.edge.url("/video/42/720p/seg-00001.ts")).await;
    assert_eq!(whole.status(), 200, "{}", stack.edge.log());
    assert_eq!(header(&whole, "content-type"), "video/mp2t");
    assert_eq!(header(&whole, "accept-ranges"), "bytes");
    assert!(header(&whole, "cache-control").contains("immutable"));
    let etag = header(&whole, "etag");
    assert_eq!(whole.bytes().await.unwrap().to_vec(), segment);

    let part = http
        .get(stack.edge.url("/video/42/720p/seg-00001.ts"))
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(header(&part, "content-range"), "bytes 100-199/10000");
    assert_eq!(
        part.bytes().await.unwrap().to_vec(),
        segment[100..200].to_vec()
    );

    let tail = http
        .get(stack.edge.url("/video/42/720p/seg-00001.ts"))
        .header("range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&tail, "content-range"), "bytes 9990-9999/10000");

    let impossible = http
        .get(stack.edge.url("/video/42/720p/seg-00001.ts"))
        .header("range", "bytes=20000-")
        .send()
        .await
        .unwrap();
    assert_eq!(impossible.status(), 416);
    assert_eq!(header(&impossible, "content-range"), "bytes */10000");

    let not_modified = http
        .get(stack.edge.url("/video/42/720p/seg-00001.ts"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), 304);

    let head = http
        .head(stack.edge.url("/static/app.3f9a2c1d.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(header(&head, "content-length"), "14");
    assert_eq!(
        header(&head, "content-type"),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        header(&head, "cache-control"),
        "public, max-age=31536000, immutable"
    );

    let playlist = get(&stack.edge.url("/video/42/master.m3u8")).await;
    assert_eq!(
        header(&playlist, "content-type"),
        "application/vnd.apple.mpegurl"
    );
    assert!(header(&playlist, "cache-control").starts_with("public, max-age=300"));

    let missing = get(&stack.edge.url("/static/app.deadbeef.js")).await;
    assert_eq!(missing.status(), 404);
    assert_eq!(header(&missing, "cache-control"), "private, no-store");
    assert_eq!(header(&missing, "x-edge-no-store"), "origin-no-store");
    assert_eq!(header(&missing, "content-type"), "application/json");

    // Dot segments are resolved by URL parsing before routing; what survives encoded
    // (a backslash, an encoded slash) is refused.
    for bad in ["/static/a%5Cb", "/static/a%2F..%2Fb"] {
        let refused = get(&stack.edge.url(bad)).await;
        assert_eq!(refused.status(), 400, "{bad}");
    }
}
