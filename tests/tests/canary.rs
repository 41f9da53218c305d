//! The origin canary in workerd with two real origins: which visitors the canary
//! serves (stickily, across requests and sign-in), that one arm's cached answers never
//! reach the other, and the circuit breaker tripping on a real process answering 500s
//! and recovering when the canary origin is back. One edge for the whole story.

// A test crate: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use course_edge_e2e::{
    EdgeOptions, Group, Origin, Stack, TEST_ADMIN_TOKEN, client, free_port, header, printed_port,
    stack_origin_env,
};
use course_edge_worker::canary::{BreakerSettings, Canary};
use course_edge_worker::visitor::{VisitorId, existing};

const SLUG: &str = "rust-beginner";
const CANARY_TITLE: &str = "Rust for beginners (canary build)";
/// The breaker under test: 4 outcomes, more than half failing, 2 s open.
const MIN_REQUESTS: u32 = 4;
const COOL_DOWN: Duration = Duration::from_secs(2);
const WINDOW: Duration = Duration::from_secs(3);

/// The canary as the edge under test is configured (for picking visitor ids).
fn canary(port: u16) -> Canary {
    Canary {
        url: format!("http://127.0.0.1:{port}"),
        percent: 50,
        salt: String::from(Canary::DEFAULT_SALT),
        killed: false,
        breaker: BreakerSettings::default(),
    }
}

fn ids(canary: &Canary, inside: bool) -> impl Iterator<Item = VisitorId> + '_ {
    (0u32..)
        .map(|i| {
            let mut bytes = [0u8; 16];
            bytes[..4].copy_from_slice(&i.to_be_bytes());
            bytes[15] = 0xce;
            VisitorId::from_bytes(bytes)
        })
        .filter(move |id| canary.includes(id) == inside)
}

struct Answer {
    status: u16,
    arm: String,
    cache: String,
    timing: String,
    set_cookie: String,
    body: String,
}

async fn get(stack: &Stack, path: &str, cookie: &str) -> Answer {
    let mut request = client().get(stack.edge.url(path));
    if !cookie.is_empty() {
        request = request.header("cookie", cookie);
    }
    let response = request.send().await.unwrap();
    Answer {
        status: response.status().as_u16(),
        arm: header(&response, "x-edge-arm"),
        cache: header(&response, "x-edge-cache"),
        timing: header(&response, "server-timing"),
        set_cookie: response
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default(),
        body: response.text().await.unwrap(),
    }
}

fn vid(id: &VisitorId) -> String {
    format!("ce_vid={}", id.as_str())
}

#[tokio::test]
async fn the_canary_serves_its_share_stickily_and_its_breaker_trips_and_recovers() {
    let canary_port = free_port();
    let stack = Stack::start_with(
        EdgeOptions::default()
            .var(
                "CANARY_ORIGIN_URL",
                &format!("http://127.0.0.1:{canary_port}"),
            )
            .var("CANARY_PERCENT", "50")
            .var("CANARY_BREAKER_WINDOW_MS", &WINDOW.as_millis().to_string())
            .var("CANARY_BREAKER_MIN_REQUESTS", &MIN_REQUESTS.to_string())
            .var("CANARY_BREAKER_ERROR_PERCENT", "50")
            .var(
                "CANARY_BREAKER_COOL_DOWN_MS",
                &COOL_DOWN.as_millis().to_string(),
            ),
    )
    .await;
    let mut canary_origin = Origin::start_on(canary_port, stack_origin_env(stack.edge.port)).await;
    let config = canary(canary_port);
    let inside: Vec<VisitorId> = ids(&config, true).take(3).collect();
    let outside: Vec<VisitorId> = ids(&config, false).take(3).collect();

    arms_are_sticky_and_named(&stack, &config, &inside, &outside).await;
    one_arms_answers_never_reach_the_other(&stack, &canary_origin, &inside, &outside).await;
    sign_in_keeps_the_arm(&stack, &canary_origin, &inside[0], &outside[0]).await;
    the_breaker_trips_on_a_failing_canary_and_recovers(
        &stack,
        &mut canary_origin,
        &inside[1],
        &outside[1],
    )
    .await;
    // Every answer wrote its outcome data point (Analytics Engine and the version
    // metadata are bound in wrangler dev too; a failed write is logged).
    let log = stack.edge.full_log();
    assert!(
        !log.contains("outcome data point") && log.contains("GET /api/catalog"),
        "{}",
        stack.edge.log()
    );
}

async fn arms_are_sticky_and_named(
    stack: &Stack,
    config: &Canary,
    inside: &[VisitorId],
    outside: &[VisitorId],
) {
    let path = format!("/api/courses/{SLUG}");
    for round in 0..3 {
        for id in inside {
            let answer = get(stack, &path, &vid(id)).await;
            assert_eq!(answer.status, 200, "{}", answer.body);
            assert_eq!(answer.arm, "canary", "round {round}, {id:?}");
            assert!(
                answer.timing.contains("arm;desc=\"canary:inside-share\""),
                "{}",
                answer.timing
            );
        }
        for id in outside {
            let answer = get(stack, &path, &vid(id)).await;
            assert_eq!(answer.arm, "stable", "round {round}, {id:?}");
            assert!(
                answer.timing.contains("arm;desc=\"stable:outside-share\""),
                "{}",
                answer.timing
            );
        }
    }
    // A shared class sets no visitor cookie: without one, the stable arm.
    let anonymous = get(stack, &path, "").await;
    assert_eq!(anonymous.arm, "stable");
    assert!(anonymous.timing.contains("stable:no-visitor"));
    assert!(!anonymous.set_cookie.contains("ce_vid"));
    // A page mints the id, and serves the arm of the id it sets.
    let mut seen = [false, false];
    for _ in 0..12 {
        let page = get(stack, "/", "").await;
        assert_eq!(page.status, 200);
        let minted = existing(Some(page.set_cookie.split(';').next().unwrap())).unwrap();
        let expected = if config.includes(&minted) {
            "canary"
        } else {
            "stable"
        };
        assert_eq!(page.arm, expected, "{minted:?}");
        seen[usize::from(expected == "canary")] = true;
        // … and keeps it on the next request with that cookie.
        assert_eq!(get(stack, "/", &vid(&minted)).await.arm, expected);
    }
    assert!(seen[0] && seen[1], "12 new visitors all landed in one arm");
}

async fn one_arms_answers_never_reach_the_other(
    stack: &Stack,
    canary_origin: &Origin,
    inside: &[VisitorId],
    outside: &[VisitorId],
) {
    let path = format!("/api/courses/{SLUG}");
    // The canary origin's data changes (as a new build's output would); the stable
    // origin's does not.
    let current = client()
        .get(format!("{}{path}", canary_origin.url()))
        .send()
        .await
        .unwrap();
    let etag = header(&current, "etag");
    let edit = client()
        .put(format!("{}/admin/courses/{SLUG}", canary_origin.url()))
        .header("authorization", format!("Bearer {TEST_ADMIN_TOKEN}"))
        .header("if-match", &etag)
        .json(&serde_json::json!({
            "title": CANARY_TITLE, "summary": "s", "locale": "en", "level": "beginner",
            "tags": ["rust"], "plan": "free", "cover_image": null
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(edit.status(), 200, "{}", edit.text().await.unwrap());
    // The edit's purge reaches the edge within its bound; then the canary arm shows it.
    let started = Instant::now();
    loop {
        let answer = get(stack, &path, &vid(&inside[0])).await;
        if answer.body.contains(CANARY_TITLE) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the canary arm never showed the canary's edit: {}",
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Both arms' copies are cached now; each arm gets only its own, hit after hit.
    for _ in 0..3 {
        for id in inside {
            let answer = get(stack, &path, &vid(id)).await;
            assert_eq!(answer.arm, "canary");
            assert!(answer.body.contains(CANARY_TITLE), "{}", answer.body);
        }
        for id in outside {
            let answer = get(stack, &path, &vid(id)).await;
            assert_eq!(answer.arm, "stable");
            assert!(
                !answer.body.contains(CANARY_TITLE),
                "a stable visitor got the canary's answer ({})",
                answer.cache
            );
        }
        let anonymous = get(stack, &path, "").await;
        assert!(!anonymous.body.contains(CANARY_TITLE));
    }
    let hit = get(stack, &path, &vid(&inside[1])).await;
    assert_eq!(hit.cache, "HIT", "the canary's copy is cached");
    let hit = get(stack, &path, &vid(&outside[1])).await;
    assert_eq!(hit.cache, "HIT", "the stable copy is cached");
}

/// `route="/signin"` requests counted by an origin's `/metrics`.
async fn sign_ins(origin: &Origin) -> u64 {
    let text = client()
        .get(format!("{}/metrics", origin.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("origin_http_requests_total{") && l.contains("route=\"/signin\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

async fn sign_in_keeps_the_arm(
    stack: &Stack,
    canary_origin: &Origin,
    inside: &VisitorId,
    outside: &VisitorId,
) {
    for (id, arm) in [(inside, "canary"), (outside, "stable")] {
        let (stable_before, canary_before) =
            (sign_ins(&stack.origin).await, sign_ins(canary_origin).await);
        let response = client()
            .post(stack.edge.url("/signin"))
            .header("origin", stack.edge.url("").trim_end_matches('/'))
            .header("sec-fetch-site", "same-origin")
            .header("cookie", vid(id))
            .form(&[
                ("email", "ada@example.com"),
                ("password", "demo-password-ada"),
                ("next", "/"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303);
        assert_eq!(header(&response, "x-edge-arm"), arm);
        let session = header(&response, "set-cookie");
        let session = session.split(';').next().unwrap().to_owned();
        assert!(session.starts_with("ce_session="), "{session}");
        // The sign-in went to the arm's origin, and only there.
        let (stable_after, canary_after) =
            (sign_ins(&stack.origin).await, sign_ins(canary_origin).await);
        let (by_canary, by_stable) = (canary_after - canary_before, stable_after - stable_before);
        assert_eq!(
            (by_canary, by_stable),
            if arm == "canary" { (1, 0) } else { (0, 1) }
        );
        // Signed in, the visitor keeps the arm on every class.
        let cookie = format!("{}; {session}", vid(id));
        for path in [
            "/",
            &format!("/courses/{SLUG}"),
            "/api/feed",
            "/api/catalog",
        ] {
            let answer = get(stack, path, &cookie).await;
            assert_eq!(answer.status, 200, "{path}: {}", answer.body);
            assert_eq!(answer.arm, arm, "{path} signed in");
        }
        let page = get(stack, "/", &cookie).await;
        assert!(
            page.body.contains("Ada"),
            "the page is filled for the signed-in visitor"
        );
    }
}

async fn the_breaker_trips_on_a_failing_canary_and_recovers(
    stack: &Stack,
    canary_origin: &mut Origin,
    inside: &VisitorId,
    outside: &VisitorId,
) {
    // The canary origin is replaced by a process that answers 500 to everything.
    canary_origin.stop();
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_failing-origin"));
    command.arg(canary_origin.port.to_string());
    let mut failing = Group::spawn("failing-origin", command, dir.path());
    printed_port(
        &mut failing,
        "failing-origin: http://127.0.0.1:",
        "failing-origin",
    )
    .await;
    // The earlier phases' canary successes leave the window first.
    tokio::time::sleep(WINDOW).await;

    // Uncached paths (a new query each time), so every request reaches an origin.
    let mut n = 0;
    let mut search = |stack: &'static str| {
        n += 1;
        format!("/api/search?q=breaker{n}{stack}")
    };
    for i in 0..MIN_REQUESTS {
        let answer = get(stack, &search(""), &vid(inside)).await;
        assert_eq!(
            answer.arm, "canary",
            "request {i} before the breaker decided"
        );
        assert_eq!(answer.status, 500, "{}", answer.body);
        // The stable arm is untouched meanwhile.
        let stable = get(stack, &search("s"), &vid(outside)).await;
        assert_eq!((stable.arm.as_str(), stable.status), ("stable", 200));
    }
    // The fourth failure opened it: the canary's visitors go to the stable origin.
    let opened = Instant::now();
    for _ in 0..5 {
        let answer = get(stack, &search(""), &vid(inside)).await;
        assert_eq!(answer.arm, "stable", "{}", stack.edge.log());
        assert_eq!(answer.status, 200);
        assert!(
            answer.timing.contains("stable:breaker-open"),
            "{}",
            answer.timing
        );
    }
    assert!(
        opened.elapsed() < COOL_DOWN,
        "the checks outlasted the cool-down"
    );
    // wrangler prints the worker's console lines a little after the request lines.
    stack.edge.log_shows("canary breaker opened: 4 of 4").await;

    // The canary origin comes back; after the cool-down, probes close the breaker.
    failing.stop();
    canary_origin.restart().await;
    tokio::time::sleep(COOL_DOWN.saturating_sub(opened.elapsed())).await;
    for i in 0..6 {
        let answer = get(stack, &search(""), &vid(inside)).await;
        assert_eq!(answer.arm, "canary", "probe {i}: {}", answer.timing);
        assert_eq!(answer.status, 200);
    }
    stack.edge.log_shows("canary breaker half-open").await;
    stack.edge.log_shows("canary breaker closed").await;
}
