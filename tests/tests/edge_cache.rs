//! The edge as one cache for every class, end to end in workerd on one shared stack:
//! R2 classes (static, video, `/media`) and image derivatives kept in the Cache API and
//! served from it (ranges, HEAD, 304), images revalidated by their source ETag only
//! past `IMAGE_SOURCE_TTL` (and served stale meanwhile), a failed transform remembered,
//! request collapsing (200 cold requests → one origin fetch, one transform), per-class
//! query allow-lists, and a sample of the pass-through class's RFC 9111 rules. The rules
//! themselves are tested natively in `worker/src/policy/flow`.

// A test crate: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use course_edge_e2e::fixtures::photo;
use course_edge_e2e::{EdgeOptions, Stack, client, header};
use course_edge_worker::image::decode::read_header;
use protocol::headers::{EDGE_CACHE, SERVER_TIMING};

const LEGACY: &str = "*/*";

fn cache_of(response: &reqwest::Response) -> String {
    header(response, EDGE_CACHE)
}

async fn send(request: reqwest::RequestBuilder) -> reqwest::Response {
    tokio::time::timeout(Duration::from_secs(20), request.send())
        .await
        .expect("the edge answered within 20 s")
        .unwrap()
}

/// The `Server-Timing` entry names of a response (`r2`, `origin`, `decode`, …).
fn timed(response: &reqwest::Response) -> Vec<String> {
    header(response, SERVER_TIMING)
        .split(',')
        .filter_map(|e| e.trim().split(';').next().map(str::to_owned))
        .collect()
}

async fn seen(stack: &Stack, id: &str) -> u64 {
    let url = format!("{}/test/seen?id={id}", stack.origin.url());
    let body: serde_json::Value = client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["seen"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_is_one_cache_for_every_class() {
    let segment: Vec<u8> = (0..=255u8).cycle().take(50_000).collect();
    // Larger than a ranged miss waits for (policy::flow::RANGE_AFTER_STORE_MAX).
    let big: Vec<u8> = (0..9 * 1024 * 1024 + 7)
        .map(|i: usize| (i % 251) as u8)
        .collect();
    let options = EdgeOptions::default()
        .var("IMAGE_SOURCE_TTL", "1")
        .object("static/app.3f9a2c1d.js", b"console.log(1)".to_vec())
        .object("static/site.css", b"body{margin:0}".to_vec())
        .object("video/7/master.m3u8", b"#EXTM3U\n".to_vec())
        .object("video/7/720p/seg-00001.ts", segment.clone())
        .object("video/7/lesson.mp4", big.clone())
        .object("uploads/page.html", b"<script>alert(1)</script>".to_vec())
        .object("img/p.jpg", photo(400, 200))
        .object("img/swap.jpg", photo(400, 200))
        .object("img/broken.jpg", b"not an image at all".to_vec())
        .object("img/stampede.jpg", photo(1600, 1200));
    let stack = Stack::start_with(options).await;
    let log = || stack.edge.log();
    let http = client();
    let url = |p: &str| stack.edge.url(p);

    // 1. R2 classes: read once, then served from the Cache API.
    for path in [
        "/static/app.3f9a2c1d.js",
        "/static/site.css",
        "/video/7/master.m3u8",
        "/video/7/720p/seg-00001.ts",
        "/media/uploads/page.html",
    ] {
        let first = send(http.get(url(path))).await;
        assert_eq!(first.status(), 200, "{path}: {}", log());
        assert_eq!(cache_of(&first), "MISS", "{path}");
        assert!(timed(&first).contains(&String::from("r2")), "{path}");
        let body = first.bytes().await.unwrap();
        let mut hit = None;
        for _ in 0..20 {
            let again = send(http.get(url(path))).await;
            if cache_of(&again) == "HIT" {
                hit = Some(again);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let hit = hit.unwrap_or_else(|| panic!("{path} never became a HIT: {}", log()));
        assert!(
            !timed(&hit).contains(&String::from("r2")),
            "{path}: a HIT never reads R2"
        );
        assert!(header(&hit, "cdn-cache-control").starts_with("max-age="));
        assert_eq!(header(&hit, "x-content-type-options"), "nosniff");
        assert_eq!(hit.bytes().await.unwrap(), body, "{path}");
    }
    let active = send(http.get(url("/media/uploads/page.html"))).await;
    assert_eq!(cache_of(&active), "HIT");
    assert_eq!(
        header(&active, "content-disposition"),
        "attachment",
        "the sandbox is stored with the entry"
    );

    // 2. Ranges, HEAD and conditionals from the stored copy.
    let seg = "/video/7/720p/seg-00001.ts";
    let part = send(http.get(url(seg)).header("range", "bytes=100-199")).await;
    assert_eq!(part.status(), 206, "{}", log());
    assert_eq!(cache_of(&part), "HIT");
    assert_eq!(header(&part, "content-range"), "bytes 100-199/50000");
    assert_eq!(
        part.bytes().await.unwrap().to_vec(),
        segment[100..200].to_vec()
    );
    let tail = send(http.get(url(seg)).header("range", "bytes=-10")).await;
    assert_eq!(header(&tail, "content-range"), "bytes 49990-49999/50000");
    let beyond = send(http.get(url(seg)).header("range", "bytes=60000-")).await;
    assert_eq!(beyond.status(), 416);
    assert_eq!(header(&beyond, "content-range"), "bytes */50000");
    let head = send(http.head(url(seg))).await;
    assert_eq!(head.status(), 200);
    assert_eq!(cache_of(&head), "HIT");
    assert_eq!(header(&head, "content-length"), "50000");
    let etag = header(&head, "etag");
    let not_modified = send(http.get(url(seg)).header("if-none-match", &etag)).await;
    assert_eq!(not_modified.status(), 304);
    assert_eq!(cache_of(&not_modified), "HIT");
    assert_eq!(header(&not_modified, "etag"), etag);
    let stale_range = send(
        http.get(url(seg))
            .header("range", "bytes=0-9")
            .header("if-range", "\"old\""),
    )
    .await;
    assert_eq!(
        stale_range.status(),
        200,
        "If-Range of another version: all of it"
    );

    // A cold range of a large object: the part from R2 at once (a 206, as video
    // players need), the whole object stored behind it; later ranges from the entry.
    let mp4 = "/video/7/lesson.mp4";
    let cold = send(http.get(url(mp4)).header("range", "bytes=9437000-9437099")).await;
    assert_eq!(cold.status(), 206, "{}", log());
    assert_eq!(cache_of(&cold), "MISS");
    assert!(timed(&cold).contains(&String::from("r2-range")));
    assert_eq!(
        header(&cold, "content-range"),
        format!("bytes 9437000-9437099/{}", big.len())
    );
    assert_eq!(
        cold.bytes().await.unwrap().to_vec(),
        big[9_437_000..9_437_100].to_vec()
    );
    let mut warm = None;
    for _ in 0..40 {
        let r = send(http.get(url(mp4)).header("range", "bytes=5-9")).await;
        if cache_of(&r) == "HIT" {
            warm = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let warm = warm.unwrap_or_else(|| panic!("the large object was never stored: {}", log()));
    assert_eq!(warm.status(), 206);
    assert_eq!(warm.bytes().await.unwrap().to_vec(), big[5..10].to_vec());

    // 3. Image derivatives: no R2 on a hit; ranges, HEAD, 304 like any class.
    let img = "/img/w=200/img/p.jpg";
    let first = send(http.get(url(img)).header("accept", LEGACY)).await;
    assert_eq!(first.status(), 200, "{}", log());
    assert_eq!(cache_of(&first), "MISS");
    let bytes = first.bytes().await.unwrap();
    let mut hit = send(http.get(url(img)).header("accept", LEGACY)).await;
    for _ in 0..20 {
        if cache_of(&hit) == "HIT" {
            break;
        }
        // The entry is written after the response (`wait_until`).
        tokio::time::sleep(Duration::from_millis(50)).await;
        hit = send(http.get(url(img)).header("accept", LEGACY)).await;
    }
    assert_eq!(cache_of(&hit), "HIT", "{}", log());
    let names = timed(&hit);
    assert!(
        !names.iter().any(|n| n.starts_with("r2")),
        "a derivative hit asks R2 nothing: {names:?}"
    );
    let etag = header(&hit, "etag");
    assert_eq!(header(&hit, "vary"), "Accept");
    let not_modified = send(
        http.get(url(img))
            .header("accept", LEGACY)
            .header("if-none-match", &etag),
    )
    .await;
    assert_eq!(not_modified.status(), 304);
    let head = send(http.head(url(img)).header("accept", LEGACY)).await;
    assert_eq!(header(&head, "content-length"), bytes.len().to_string());
    let part = send(
        http.get(url(img))
            .header("accept", LEGACY)
            .header("range", "bytes=0-9"),
    )
    .await;
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap(), bytes.slice(0..10));

    // 4. A replaced original: inside IMAGE_SOURCE_TTL the stored derivative stands;
    //    past it, served stale once while R2 is asked in the background, then new.
    let swap = "/img/w=100/img/swap.jpg";
    let before = send(http.get(url(swap)).header("accept", LEGACY)).await;
    assert_eq!(
        read_header(&before.bytes().await.unwrap()).unwrap().height,
        50
    );
    stack.edge.put_object("img/swap.jpg", &photo(300, 300));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let stale = send(http.get(url(swap)).header("accept", LEGACY)).await;
    assert_eq!(cache_of(&stale), "STALE", "{}", log());
    assert_eq!(
        read_header(&stale.bytes().await.unwrap()).unwrap().height,
        50
    );
    let mut height = 0;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = send(http.get(url(swap)).header("accept", LEGACY)).await;
        height = read_header(&now.bytes().await.unwrap()).unwrap().height;
        if height == 100 {
            break;
        }
    }
    assert_eq!(height, 100, "the new original is seen: {}", log());

    // 5. A source that cannot be transformed is remembered, not decoded every time.
    let broken = "/img/w=100/img/broken.jpg";
    let first = send(http.get(url(broken)).header("accept", LEGACY)).await;
    let status = first.status();
    assert!(matches!(status.as_u16(), 415 | 422), "{status}");
    let mut again = None;
    for _ in 0..20 {
        let r = send(http.get(url(broken)).header("accept", LEGACY)).await;
        if cache_of(&r) == "HIT" {
            again = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = again.unwrap_or_else(|| panic!("the failure was not remembered: {}", log()));
    assert_eq!(again.status(), status);
    assert!(!timed(&again).contains(&String::from("decode")));

    // 6. Stampedes: 200 cold requests for one key → one origin fetch; for one
    //    derivative → one transform.
    let cold = "/test/echo?id=stampede&cc=public%2C+max-age%3D60&delay_ms=300";
    let answers = futures_util::future::join_all((0..200).map(|_| send(http.get(url(cold))))).await;
    let mut statuses = std::collections::BTreeMap::new();
    for a in &answers {
        *statuses
            .entry(format!("{} {}", a.status(), cache_of(a)))
            .or_insert(0) += 1;
    }
    assert!(
        statuses.keys().all(|k| k.starts_with("200")),
        "{statuses:?}: {}",
        log()
    );
    assert_eq!(seen(&stack, "stampede").await, 1, "{}", log());
    let big = "/img/w=800/img/stampede.jpg";
    let answers = futures_util::future::join_all(
        (0..200).map(|_| send(http.get(url(big)).header("accept", LEGACY))),
    )
    .await;
    let mut transforms = 0;
    for a in &answers {
        assert_eq!(a.status(), 200, "{}", log());
        if timed(a).contains(&String::from("decode")) {
            transforms += 1;
        }
    }
    assert_eq!(transforms, 1, "one transform for 200 requests");

    // 7. Keys: a class keys (and forwards) only the parameters it reads; credentials
    //    do not bypass a class that never forwards them.
    let a = send(http.get(url("/api/catalog?page=1&z=8123"))).await;
    assert_eq!(a.status(), 200, "{}", log());
    let b = send(http.get(url("/api/catalog?z=99&page=1&utm_source=x"))).await;
    assert_eq!(
        cache_of(&b),
        "HIT",
        "unknown parameters do not mint entries"
    );
    let authorized = send(
        http.get(url("/api/catalog?page=1"))
            .header("authorization", "Bearer x"),
    )
    .await;
    assert_eq!(cache_of(&authorized), "HIT");

    // 8. Pass-through, judged as an RFC 9111 shared cache (a sample; every rule is
    //    tested natively in policy::flow).
    let verbatim = send(http.get(url("/test/echo?id=ns&cc=no-store"))).await;
    assert_eq!(
        header(&verbatim, "cache-control"),
        "no-store",
        "not rewritten"
    );
    let redirect = "/test/echo?id=redir&status=302&location=%2Fsomewhere&cc=max-age%3D60";
    let first = send(http.get(url(redirect))).await;
    assert_eq!(first.status(), 302, "passed on, not followed: {}", log());
    assert_eq!(header(&first, "location"), "/somewhere");
    let second = send(http.get(url(redirect))).await;
    assert_eq!(
        (second.status().as_u16(), cache_of(&second).as_str()),
        (302, "HIT")
    );
    let empty = "/test/echo?id=nc&status=204&cc=max-age%3D60";
    assert_eq!(send(http.get(url(empty))).await.status(), 204);
    let stored_204 = send(http.get(url(empty))).await;
    assert_eq!(
        (stored_204.status().as_u16(), cache_of(&stored_204).as_str()),
        (204, "HIT")
    );
    let aged = "/test/echo?id=aged&cc=max-age%3D600&age=30&hop=x-hop&cdn=max-age%3D5";
    let first = send(http.get(url(aged))).await;
    assert_eq!(header(&first, "age"), "30", "the upstream Age is passed on");
    assert!(first.headers().get("x-hop").is_none(), "Connection-listed");
    assert_eq!(header(&first, "cdn-cache-control"), "max-age=5");
    let body = first.bytes().await.unwrap();
    let hit = send(http.get(url(aged))).await;
    assert_eq!(cache_of(&hit), "HIT");
    assert!(header(&hit, "age").parse::<u32>().unwrap() >= 30);
    assert_eq!(header(&hit, "cache-control"), "max-age=600");
    let head = send(http.head(url(aged))).await;
    assert_eq!(header(&head, "content-length"), body.len().to_string());
    let part = send(http.get(url(aged)).header("range", "bytes=0-4")).await;
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap(), body.slice(0..5));

    // 9. A run of conditional, ranged and Vary requests: every one answered, none 5xx
    //    (a promise that never settled, and a 500, were found here before).
    for round in 0..3 {
        for (path, name, value) in [
            (
                "/test/echo?id=mix1&etag=e1&cc=max-age%3D1",
                "if-none-match",
                "\"e1\"",
            ),
            (
                "/test/echo?id=mix1&etag=e1&cc=max-age%3D1",
                "if-none-match",
                "\"zz\"",
            ),
            (
                "/test/echo?id=mix2&vary=Accept&cc=max-age%3D60",
                "accept",
                "text/x",
            ),
            (
                "/test/echo?id=mix3&status=204&etag=e3&cc=max-age%3D1",
                "if-none-match",
                "\"e3\"",
            ),
            (
                "/test/echo?id=mix4&etag=e4&cc=max-age%3D60",
                "range",
                "bytes=2-3",
            ),
            ("/test/echo?id=mix5&status=304", "if-none-match", "*"),
            (
                "/test/echo?id=mix6&vary=*&cc=max-age%3D60",
                "if-modified-since",
                "Wed, 25 Nov 2026 10:00:00 GMT",
            ),
        ] {
            let r = send(http.get(url(path)).header(name, value)).await;
            assert!(
                r.status().as_u16() < 500,
                "{path} {name}: {} {}",
                r.status(),
                log()
            );
            let _ = r.bytes().await.unwrap();
            let h = send(http.head(url(path)).header(name, value)).await;
            assert!(h.status().as_u16() < 500, "HEAD {path}: {}", h.status());
        }
        if round == 0 {
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
    }
}
