//! Never a lost purge, with the real edge in front: an origin killed (SIGKILL) between
//! committing an edit and delivering its purge delivers it after a restart, and the edge
//! applies it once; two origin instances over PostgreSQL, Redis and NATS, an edit on one
//! and the edge served by the other: the edge never stores the old course again. Both
//! run on the purge file's stack (its origin is restarted, then moved onto PostgreSQL).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use course_edge_e2e::{Origin, Stack, TEST_ADMIN_TOKEN, client, header, stack_origin_env};

async fn course(stack: &Stack, slug: &str) -> (String, String, serde_json::Value) {
    let response = client()
        .get(stack.edge.url(&format!("/api/courses/{slug}")))
        .send()
        .await
        .unwrap();
    let cache = header(&response, "x-edge-cache");
    let etag = header(&response, "etag");
    (cache, etag, response.json().await.unwrap())
}

async fn edit(origin: &Origin, slug: &str, etag: &str, title: &str) -> serde_json::Value {
    let response = client()
        .put(format!("{}/admin/courses/{slug}", origin.url()))
        .header("authorization", format!("Bearer {TEST_ADMIN_TOKEN}"))
        .header("if-match", etag)
        .json(&serde_json::json!({
            "title": title, "summary": "s", "locale": "en", "level": "advanced",
            "tags": ["sql"], "plan": "free", "cover_image": null
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", origin.log());
    response.json().await.unwrap()
}

/// Polls the edge until it answers `title` for `slug` (at most `within`); every other
/// answer must be the old copy as a HIT. Returns how long it took.
async fn until_fresh(stack: &Stack, slug: &str, title: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let (cache, _, body) = course(stack, slug).await;
        if body["title"] == title {
            assert!(matches!(cache.as_str(), "MISS" | "REVALIDATED"), "{cache}");
            return started.elapsed();
        }
        assert_eq!(
            cache, "HIT",
            "the old copy stays a HIT until the purge: {body}"
        );
        assert!(
            started.elapsed() < within,
            "the edge still serves {:?} after {:?}\n{}\n{}",
            body["title"],
            started.elapsed(),
            stack.origin.log(),
            stack.edge.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn a_purge_committed_before_a_sigkill_reaches_the_edge_once_after_restart(
    stack: &mut Stack,
) {
    let slug = "sql-advanced";
    stack
        .origin
        .set_env("ORIGIN_FAULT_PAUSE", Some("before-delivery"));
    stack.origin.set_env("ADMIN_WAIT_MS", Some("300"));
    stack.origin.set_env("OUTBOX_LEASE_MS", Some("1000"));
    stack.origin.restart().await;
    assert_eq!(course(stack, slug).await.0, "MISS");
    let (cache, etag, _) = course(stack, slug).await;
    assert_eq!(cache, "HIT");

    let title = "Committed, then the origin was killed";
    let edited = edit(&stack.origin, slug, &etag, title).await;
    assert_eq!(
        edited["purge"]["delivered"], false,
        "paused before delivery"
    );
    let id = edited["purge"]["id"].as_i64().unwrap();
    let started = Instant::now();
    while !stack.origin.log().contains("fault: paused before delivery") {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{}",
            stack.origin.log()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stack.origin.kill();
    // The edge never heard of the edit: still the old copy.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (cache, _, body) = course(stack, slug).await;
    assert_eq!(cache, "HIT");
    assert_ne!(body["title"], title);

    stack.origin.set_env("ORIGIN_FAULT_PAUSE", None);
    stack.origin.restart().await;
    // The dead instance's lease (1 s) runs out, the purge goes out, the edge applies it.
    let took = until_fresh(stack, slug, title, Duration::from_secs(10)).await;
    eprintln!("SIGKILL before delivery → restart → fresh edge answer: {took:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Delivery is at least once (a retry answers applied=false); the effect, once.
    let log = stack.edge.full_log();
    let applied = format!("purge o{id}-");
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(&applied)).collect();
    assert_eq!(
        lines.iter().filter(|l| l.contains("applied=true")).count(),
        1,
        "applied exactly once: {lines:#?}"
    );
    let row: serde_json::Value = client()
        .get(format!("{}/admin/purges/{id}", stack.origin.url()))
        .header("authorization", format!("Bearer {TEST_ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(row["delivered"], true, "{row}");
    stack.origin.set_env("ADMIN_WAIT_MS", None);
    stack.origin.set_env("OUTBOX_LEASE_MS", None);
}

/// A service's URL from the environment `scripts/test` exports; `None` (skipped, said
/// so) only when nothing answers on its port — one that answers while the variable is
/// unset fails, as in the origin's tests.
fn service_url(var: &str, port: u16, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let open = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            assert!(
                !open,
                "{what} answers on 127.0.0.1:{port} but {var} is unset, so this test would not run: use scripts/test"
            );
            eprintln!("no {what} here: the two-instance scenario is skipped");
            None
        }
    }
}

fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}_{nanos}", std::process::id())
}

/// A database made for one scenario, dropped when it ends (a failed one too), with the
/// Redis keys stored under its name.
struct FreshDatabase {
    admin_url: String,
    name: String,
    redis_url: String,
}

impl FreshDatabase {
    fn create(admin_url: &str, redis_url: &str) -> Self {
        let name = format!("course_edge_e2e_{}", unique());
        psql(admin_url, &format!("CREATE DATABASE {name}"));
        Self {
            admin_url: admin_url.to_owned(),
            name,
            redis_url: redis_url.to_owned(),
        }
    }

    fn redis_prefix(&self) -> String {
        format!("ce-e2e:{}", self.name)
    }

    fn url(&self) -> String {
        let base = self
            .admin_url
            .rsplit_once('/')
            .map_or(self.admin_url.as_str(), |(b, _)| b);
        format!("{base}/{}", self.name)
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .arg(&self.admin_url)
            .args(["-q", "-c"])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .output();
        let script =
            "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end return 0";
        let cleaned = std::process::Command::new("redis-cli")
            .args(["-u", &self.redis_url, "EVAL", script, "0"])
            .arg(format!("{}*", self.redis_prefix()))
            .output();
        eprintln!("removed the scenario's Redis keys: {cleaned:?}");
    }
}

/// `psql` against the server's maintenance database.
fn psql(admin_url: &str, sql: &str) {
    let output = std::process::Command::new("psql")
        .arg(admin_url)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .unwrap_or_else(|e| panic!("running psql (PostgreSQL's client): {e}"));
    assert!(
        output.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

pub async fn an_edit_on_one_instance_evicts_on_the_other_behind_the_edge(stack: &mut Stack) {
    let (Some(pg), Some(redis), Some(nats)) = (
        service_url("DATABASE_URL", 5432, "PostgreSQL"),
        service_url("REDIS_URL", 6379, "Redis"),
        service_url("NATS_URL", 4222, "NATS"),
    ) else {
        return;
    };
    let database = FreshDatabase::create(&pg, &redis);
    let name = &database.name;
    let shared: BTreeMap<String, String> = [
        ("DATABASE_URL", database.url()),
        ("REDIS_URL", redis),
        ("REDIS_PREFIX", database.redis_prefix()),
        ("NATS_URL", nats),
        ("PURGE_SUBJECT", format!("ce-e2e.{name}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    // A: the stack's origin, moved onto the shared backends; the edge fetches from it.
    for (k, v) in &shared {
        stack.origin.set_env(k, Some(v));
    }
    stack.origin.reseed();
    stack.origin.restart().await;
    // B: a second instance on the same database, cache and bus; edits go through it.
    let mut env = stack_origin_env(stack.edge.port);
    env.extend(shared.clone());
    let mut b = Origin::start_with_env(env).await;

    let slug = "webassembly-advanced";
    assert_eq!(course(stack, slug).await.0, "MISS");
    let (cache, etag, _) = course(stack, slug).await;
    assert_eq!(cache, "HIT");
    // A holds the course in its process cache now (the edge's miss loaded it there).
    let title = "Edited on B, served by A";
    let edited = edit(&b, slug, &etag, title).await;
    assert_eq!(edited["purge"]["delivered"], true, "{edited}");
    // The edge refetches from A: unless A was told over NATS, A answers its cached old
    // course and the edge stores it under the purge's generation.
    let took = until_fresh(stack, slug, title, Duration::from_millis(2500)).await;
    eprintln!("edit on B → fresh edge answer from A: {took:?}");
    let (cache, _, body) = course(stack, slug).await;
    assert_eq!(
        (cache.as_str(), &body["title"]),
        ("HIT", &serde_json::json!(title))
    );
    let metrics = client()
        .get(format!("{}/metrics", stack.origin.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("origin_bus_received_total") && !l.ends_with(" 0")),
        "A counts the purge it was told: {metrics}"
    );

    b.stop();
    stack.origin.stop();
}
