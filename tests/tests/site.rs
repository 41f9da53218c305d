//! The personalized course site in workerd against the real origin: pages cached per
//! segment (and arm), per-user slots filled at the edge, sign-in and sign-out through
//! the edge, revocation within the purge bound, the origin check of the forms, and the
//! browser test (headless Chromium) — all on one shared stack.

// A test crate: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use course_edge_e2e::{EdgeOptions, Stack, TEST_SESSION_KEYS, client, header, repo_root};
use course_edge_worker::visitor::{VisitorId, parse_experiments};
use protocol::headers::EDGE_CACHE;

const EXPERIMENTS: &str =
    r#"[{"name":"hero","salt":"e2e-1","arms":[["control",50],["bold",50]],"classes":["html"]}]"#;

struct Page {
    status: u16,
    cache: String,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Page {
    fn arm(&self) -> &str {
        let at = self
            .body
            .find("data-experiments=\"hero=")
            .unwrap_or_else(|| panic!("no arm on the page: {:.300}", self.body));
        let rest = &self.body[at + "data-experiments=\"hero=".len()..];
        &rest[..rest.find('"').unwrap()]
    }
}

async fn page(stack: &Stack, path: &str, cookie: &str) -> Page {
    let mut request = client().get(stack.edge.url(path));
    if !cookie.is_empty() {
        request = request.header("cookie", cookie);
    }
    let response = request.send().await.unwrap();
    Page {
        status: response.status().as_u16(),
        cache: response
            .headers()
            .get(EDGE_CACHE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    }
}

/// The site's own origin, as a browser on the edge would send it.
fn own_origin(stack: &Stack) -> String {
    stack.edge.url("").trim_end_matches('/').to_owned()
}

/// Signs in through the edge's form; returns the session cookie's value.
async fn sign_in(stack: &Stack, email: &str, vid: &str) -> String {
    let password = format!("demo-password-{}", email.split('@').next().unwrap());
    let response = client()
        .post(stack.edge.url("/signin"))
        .header("origin", own_origin(stack))
        .header("sec-fetch-site", "same-origin")
        .header("cookie", format!("ce_vid={vid}"))
        .form(&[
            ("email", email),
            ("password", password.as_str()),
            ("next", "/courses/rust-beginner"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    assert_eq!(header(&response, "location"), "/courses/rust-beginner");
    let set = header(&response, "set-cookie");
    for attr in ["HttpOnly", "Secure", "SameSite=Lax"] {
        assert!(set.contains(attr), "{set}");
    }
    set.split(';')
        .next()
        .unwrap()
        .trim_start_matches("ce_session=")
        .to_owned()
}

/// A `Server-Timing` entry's duration (0 when absent).
fn dur(timing: &str, name: &str) -> f64 {
    timing
        .split(',')
        .map(str::trim)
        .find(|e| e.starts_with(&format!("{name};")))
        .and_then(|e| e.split("dur=").nth(1))
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0)
}

fn median(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * q).round() as usize]
}

fn vid(n: u8) -> String {
    VisitorId::from_bytes([n; 16]).as_str().to_owned()
}

fn arm_of(vid: &str) -> String {
    let experiments = parse_experiments(EXPERIMENTS).unwrap();
    experiments[0]
        .arm(&VisitorId::parse(vid).unwrap())
        .to_owned()
}

/// Two visitor ids in the same arm and one in the other.
fn visitors() -> (String, String, String) {
    let first = vid(1);
    let arm = arm_of(&first);
    let same = (2..=255u8).map(vid).find(|v| arm_of(v) == arm).unwrap();
    let other = (2..=255u8).map(vid).find(|v| arm_of(v) != arm).unwrap();
    (first, same, other)
}

fn fixture(name: &str) -> Vec<u8> {
    course_edge_e2e::fixtures::real(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_personalized_site_end_to_end() {
    let options = EdgeOptions::default()
        .var("EXPERIMENTS", EXPERIMENTS)
        .object("demo/rhythm.jpg", fixture("rhythm.jpg"))
        .object("demo/string.jpg", fixture("string.jpg"))
        .object("demo/the-mouse.jpg", fixture("the-mouse.jpg"))
        .object("demo/firstgeneration.jpg", fixture("firstgeneration.jpg"))
        .object("demo/city.png", fixture("city.png"))
        .object("video/demo/lesson.webm", fixture("lesson.webm"));
    let stack = Stack::start_with(options).await;
    let (v1, v2, v3) = visitors();

    // An anonymous visitor: a segment page, the sign-in link, responsive images, and a
    // visitor id set once.
    // (Another URL than the arm checks below: its random id lands in either arm.)
    let fresh = page(&stack, "/?page=2", "").await;
    assert_eq!(fresh.status, 200, "{}", stack.edge.log());
    let set = fresh.headers["set-cookie"].to_str().unwrap();
    assert!(set.starts_with("ce_vid="), "{set}");
    for attr in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    assert_eq!(fresh.headers["cache-control"], "private, no-cache");
    // The page asks for the client hints `width=auto` and `scq` read on its images.
    let accept_ch = fresh.headers["accept-ch"].to_str().unwrap();
    for hint in [
        "Sec-CH-Width",
        "Sec-CH-Viewport-Width",
        "Sec-CH-DPR",
        "ECT",
        "Save-Data",
    ] {
        assert!(accept_ch.contains(hint), "{accept_ch}");
    }
    assert!(
        !fresh.headers.contains_key("etag"),
        "a filled page has no validator"
    );
    assert!(fresh.body.contains(r#"<a href="/signin">Sign in</a>"#));
    assert!(!fresh.body.contains("Hi, "), "the greeting is for members");
    assert!(!fresh.body.contains("data-edge"), "every mark is consumed");
    assert!(
        fresh.body.contains(r#"srcset="/img/w=96/demo/"#),
        "{:.2000}",
        fresh.body
    );

    // `/?page=1`: the harness's readiness probe already stored `/` for a random arm.
    let anon1 = page(&stack, "/?page=1", &format!("ce_vid={v1}")).await;
    assert_eq!(anon1.cache, "MISS");
    assert!(!anon1.headers.contains_key("set-cookie"), "an id is kept");
    assert_eq!(anon1.arm(), arm_of(&v1));
    let anon2 = page(&stack, "/?page=1", &format!("ce_vid={v2}")).await;
    assert_eq!(anon2.arm(), anon1.arm());
    assert_eq!(anon2.cache, "HIT", "one entry per segment and arm");
    let anon3 = page(&stack, "/?page=1", &format!("ce_vid={v3}")).await;
    assert_ne!(anon3.arm(), anon1.arm());
    assert_eq!(anon3.cache, "MISS", "the other arm has its own entry");

    // Signing in keeps the visitor's arm; the page greets them with their plan's call
    // to action, and the origin never saw who they are (the page is per segment).
    let ada = sign_in(&stack, "ada@example.com", &v1).await;
    let course = "/courses/rust-beginner";
    let ada_page = page(&stack, course, &format!("ce_vid={v1}; ce_session={ada}")).await;
    assert_eq!(ada_page.status, 200);
    assert_eq!(
        ada_page.arm(),
        arm_of(&v1),
        "sign-in does not change the arm"
    );
    assert!(
        ada_page.body.contains("Hi, <span>Ada</span>"),
        "{:.1500}",
        ada_page.body
    );
    assert!(
        ada_page
            .body
            .contains(r#"<form method="post" action="/signout">"#)
    );
    assert!(ada_page.body.contains("Start the course"));
    assert!(!ada_page.body.contains("Sign in to enrol"));

    // Another member of the same segment gets the same entry with their own name:
    // had Ada's name entered the entry, Dan would see it here.
    let dan = sign_in(&stack, "dan@example.com", &v2).await;
    let dan_page = page(&stack, course, &format!("ce_vid={v2}; ce_session={dan}")).await;
    assert_eq!(dan_page.cache, "HIT", "same segment, same arm: one entry");
    assert!(dan_page.body.contains("Hi, <span>Dan</span>"));
    assert!(!dan_page.body.contains("Ada"), "a per-user value leaked");
    let anon_course = page(&stack, course, &format!("ce_vid={v1}")).await;
    assert!(!anon_course.body.contains("Ada") && !anon_course.body.contains("Dan"));
    assert!(anon_course.body.contains("Sign in to enrol"));

    // A free member is another segment, with the upsell on a Pro course.
    let bo = sign_in(&stack, "bo@example.com", &v1).await;
    let pro_course = "/courses/rust-advanced";
    let bo_page = page(&stack, pro_course, &format!("ce_vid={v1}; ce_session={bo}")).await;
    assert_eq!(bo_page.cache, "MISS");
    assert!(bo_page.body.contains("Upgrade to Pro to enrol"));
    assert!(bo_page.body.contains("Hi, <span>Bo</span>"));
    let ada_pro = page(
        &stack,
        pro_course,
        &format!("ce_vid={v1}; ce_session={ada}"),
    )
    .await;
    assert_eq!(ada_pro.cache, "MISS", "pro-en is not free-en");
    assert!(!ada_pro.body.contains("Upgrade") && !ada_pro.body.contains("Bo<"));

    // A tampered cookie: anonymous, logged by its reason, never an error, never the token.
    let mut forged = ada.clone().into_bytes();
    let at = forged.len() - 5;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let tampered = page(&stack, course, &format!("ce_vid={v1}; ce_session={forged}")).await;
    assert_eq!(tampered.status, 200);
    assert!(tampered.body.contains("Sign in to enrol") && !tampered.body.contains("Ada"));
    let malformed = page(&stack, course, "ce_session=%%%not-a-token").await;
    assert_eq!(malformed.status, 200);
    // wrangler prints the worker's console lines a little after the request's.
    stack
        .edge
        .log_shows("session cookie refused: bad_signature")
        .await;
    stack
        .edge
        .log_shows("session cookie refused: malformed")
        .await;
    let log = stack.edge.full_log();
    assert!(
        !log.contains(&forged) && !log.contains(&ada),
        "a token reached the log"
    );

    // What the revocation check costs a hit: sessions the isolate has not seen (one
    // Durable Object round trip each) against anonymous hits (none). Printed, not judged:
    // budgets live in scripts/bench-*.
    let keys = protocol::SessionKeys::parse(TEST_SESSION_KEYS).unwrap();
    let mut checked = Vec::new();
    let mut edge_signed = Vec::new();
    let mut edge_anon = Vec::new();
    for i in 0..30 {
        let token = keys.sign(&protocol::Claims {
            sid: format!("probe-{i}"),
            uid: 1000 + i,
            name: format!("Probe {i}"),
            plan: protocol::Plan::Pro,
            locale: protocol::Locale::parse("en").unwrap(),
            exp: i64::MAX / 2,
        });
        let signed = page(&stack, course, &format!("ce_vid={v1}; ce_session={token}")).await;
        assert_eq!(signed.cache, "HIT");
        assert!(signed.body.contains(&format!("Hi, <span>Probe {i}</span>")));
        let timing = signed.headers["server-timing"].to_str().unwrap().to_owned();
        checked.push(dur(&timing, "session"));
        edge_signed.push(dur(&timing, "edge"));
        let anon = page(&stack, course, &format!("ce_vid={v1}")).await;
        edge_anon.push(dur(anon.headers["server-timing"].to_str().unwrap(), "edge"));
    }
    println!(
        "revocation check on a hit, 30 unseen sessions: ledger round trip median {:.1} ms (p90 {:.1}); \
         edge time signed-in median {:.1} ms vs anonymous {:.1} ms",
        median(&mut checked, 0.5),
        median(&mut checked, 0.9),
        median(&mut edge_signed, 0.5),
        median(&mut edge_anon, 0.5)
    );

    // The forms refuse other sites (and bounded bodies).
    let own = own_origin(&stack);
    for (origin, site, forwarded) in [
        ("https://evil.example", Some("cross-site"), None),
        (own.as_str(), Some("cross-site"), None),
        // The Origin check on its own (no or a lying Sec-Fetch-Site).
        ("https://evil.example", Some("same-origin"), None),
        ("https://evil.example", None, None),
        // The client cannot name the expected host: the edge sets x-forwarded-host.
        ("https://evil.example", None, Some("evil.example")),
    ] {
        let mut request = client()
            .post(stack.edge.url("/signout"))
            .header("origin", origin)
            .header("cookie", format!("ce_session={ada}"));
        if let Some(site) = site {
            request = request.header("sec-fetch-site", site);
        }
        if let Some(host) = forwarded {
            request = request.header("x-forwarded-host", host);
        }
        let refused = request.send().await.unwrap();
        assert_eq!(refused.status(), 403);
        let body: serde_json::Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["field"], "origin", "{body}");
    }
    let open_redirect = client()
        .post(stack.edge.url("/signin"))
        .header("origin", own.as_str())
        .form(&[
            ("email", "bo@example.com"),
            ("password", "demo-password-bo"),
            ("next", "//evil.example/x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(open_redirect.status(), 303);
    assert_eq!(
        header(&open_redirect, "location"),
        "/",
        "next= stays on the site"
    );

    // A filled page: no validator, no CDN directive, no range; a client's segment
    // header changes nothing.
    let ranged = client()
        .get(stack.edge.url(course))
        .header("cookie", format!("ce_vid={v2}; ce_session={dan}"))
        .header("range", "bytes=0-99")
        .header("if-none-match", "*")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 200, "a page is always whole");
    for name in [
        "etag",
        "cdn-cache-control",
        "content-range",
        "last-modified",
    ] {
        assert!(
            !ranged.headers().contains_key(name),
            "{name} on a filled page"
        );
    }
    assert!(
        ranged
            .text()
            .await
            .unwrap()
            .contains("Hi, <span>Dan</span>")
    );
    let headed = client()
        .head(stack.edge.url(course))
        .header("cookie", format!("ce_vid={v1}"))
        .send()
        .await
        .unwrap();
    assert_eq!(headed.status(), 200);
    assert!(
        !headed.headers().contains_key("etag")
            && !headed.headers().contains_key("cdn-cache-control")
    );
    assert_eq!(header(&headed, "cache-control"), "private, no-cache");
    let spoofed = client()
        .get(stack.edge.url(pro_course))
        .header("cookie", format!("ce_vid={v1}"))
        .header("x-course-segment", "pro-en")
        .header("x-course-experiments", "hero=evil")
        .send()
        .await
        .unwrap();
    let spoofed = spoofed.text().await.unwrap();
    assert!(spoofed.contains("Sign in to enrol") && !spoofed.contains("hero=evil"));
    // The visitor cookie is never set on a publicly cacheable answer.
    let catalog = client()
        .get(stack.edge.url("/api/catalog"))
        .send()
        .await
        .unwrap();
    assert!(!catalog.headers().contains_key("set-cookie"));

    let wrong = client()
        .post(stack.edge.url("/signin"))
        .header("origin", own_origin(&stack))
        .form(&[("email", "ada@example.com"), ("password", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(
        wrong
            .text()
            .await
            .unwrap()
            .contains("Wrong email or password.")
    );
    let huge = client()
        .post(stack.edge.url("/signin"))
        .header("origin", own_origin(&stack))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("email=a%40b.c&password={}", "x".repeat(20_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);
    let body: serde_json::Value = huge.json().await.unwrap();
    assert_eq!(body["error"]["field"], "body", "{body}");

    // Sign-out: the cookie stops working at the edge within the purge bound (memo time
    // plus one Durable Object round trip, after the origin's delivery).
    let signed_out = client()
        .post(stack.edge.url("/signout"))
        .header("origin", own_origin(&stack))
        .header("cookie", format!("ce_session={ada}"))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), 303);
    assert!(header(&signed_out, "set-cookie").contains("Max-Age=0"));
    let started = Instant::now();
    let stale_cookie = format!("ce_vid={v1}; ce_session={ada}");
    let bound = Duration::from_secs(5);
    loop {
        let after = page(&stack, course, &stale_cookie).await;
        if !after.body.contains("Ada") {
            assert!(after.body.contains("Sign in to enrol"));
            break;
        }
        assert!(
            started.elapsed() < bound,
            "the signed-out cookie still worked after {bound:?}\n{}",
            stack.edge.log()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let took = started.elapsed();
    println!(
        "sign-out took effect at the edge after {} ms",
        took.as_millis()
    );
    stack
        .edge
        .log_shows("session cookie refused: revoked")
        .await;
    // Every per-segment class stops honouring it (the feed is per segment too).
    let feed = client()
        .get(stack.edge.url("/api/feed"))
        .header("cookie", &stale_cookie)
        .send()
        .await
        .unwrap();
    let feed: serde_json::Value = feed.json().await.unwrap();
    assert_eq!(feed["segment"], "anon-en", "{feed}");
    // Dan's session is untouched.
    let dan_again = page(&stack, course, &format!("ce_vid={v2}; ce_session={dan}")).await;
    assert!(dan_again.body.contains("Hi, <span>Dan</span>"));

    // The lesson page plays the video from R2 (ranges).
    let lesson = page(&stack, "/learn/rust-beginner/1", &format!("ce_vid={v1}")).await;
    assert!(lesson.body.contains(r#"src="/video/demo/lesson.webm""#));
    let range = client()
        .get(stack.edge.url("/video/demo/lesson.webm"))
        .header("range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(range.status(), 206);
    assert_eq!(range.bytes().await.unwrap().len(), 100);

    // The browser test: headless Chromium through this same edge.
    browser(&stack).await;
}

/// Runs `tests/browser/site.mjs` (playwright-core driving Debian's Chromium) against the
/// edge; it asserts in the browser and saves screenshots under `target/browser/`.
async fn browser(stack: &Stack) {
    let root = repo_root();
    let artefacts = root.join("target/browser");
    std::fs::create_dir_all(&artefacts).unwrap();
    let output = tokio::process::Command::new("node")
        .arg(root.join("tests/browser/site.mjs"))
        .arg(own_origin(stack))
        .arg(&artefacts)
        .current_dir(&root)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}\n--- edge log ---\n{}",
        stack.edge.log()
    );
}
