//! `scripts/rollout` run for real against a recording stand-in for `wrangler`
//! (`tests/src/bin/wrangler-standin.rs`: documented `versions`/`deployments` arguments
//! only) and a stand-in for Cloudflare's API (here: the Analytics Engine SQL API, whose
//! query shape it checks, and the Workers script list). Healthy → 100 %; 1.5 % errors
//! at 25 % → rollback; too few requests → waits, then decides; a pending Durable Object
//! migration → refuses; interrupted → resumes.

// A test crate: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use course_edge_e2e::repo_root;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const OLD: &str = "01d01d00-0000-4000-8000-000000000001";
const ACCOUNT: &str = "0123456789abcdef0123456789abcdef";
const TOKEN: &str = "standin-api-token-0123456789";

/// What the API stand-in answers and saw.
#[derive(Default)]
struct Api {
    /// `(requests, errors)` per SQL query, in order (the last repeats).
    readings: VecDeque<(u64, u64)>,
    last: (u64, u64),
    applied_migration: Option<String>,
    /// The canary origin's cumulative `(answers, 5xx)` per `/metrics` scrape (the last
    /// repeats).
    scrapes: VecDeque<(u64, u64)>,
    last_scrape: (u64, u64),
    queries: Vec<String>,
    violations: Vec<String>,
}

/// The documented SQL API shape: one SELECT over the outcomes dataset for one version
/// over a trailing window, counted by `_sample_interval`, as JSON.
fn check_query(sql: &str) -> Result<(), String> {
    let sql = sql.trim();
    let ok = sql.starts_with("SELECT ")
        && sql.ends_with(" FORMAT JSON")
        && !sql.contains(';')
        && sql.contains("SUM(_sample_interval) AS requests")
        && sql.contains(" FROM course_edge_outcomes WHERE index1 = '")
        && sql.contains("AND timestamp > NOW() - INTERVAL '");
    let interval = sql
        .split("INTERVAL '")
        .nth(1)
        .and_then(|rest| rest.split_once("' SECOND"))
        .map(|(n, _)| n.parse::<u64>().is_ok());
    let version = sql
        .split("index1 = '")
        .nth(1)
        .and_then(|rest| rest.split_once('\''))
        .map(|(v, _)| v.len() == 36);
    if ok && interval == Some(true) && version == Some(true) {
        Ok(())
    } else {
        Err(format!("not the documented query shape: {sql}"))
    }
}

fn respond(status: u16, body: &str) -> String {
    format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

async fn serve_api(api: Arc<Mutex<Api>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!(
        "http://127.0.0.1:{}/client/v4",
        listener.local_addr().unwrap().port()
    );
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let api = api.clone();
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut buf = [0u8; 8192];
                let head_end = loop {
                    let n = stream.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buf[..n]);
                    if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                        break at + 4;
                    }
                };
                let head = String::from_utf8_lossy(&data[..head_end]).to_string();
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (n, v) = l.split_once(':')?;
                        n.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                while data.len() < head_end + length {
                    let n = stream.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    data.extend_from_slice(&buf[..n]);
                }
                let body = String::from_utf8_lossy(&data[head_end..]).to_string();
                let request_line = head.lines().next().unwrap_or("").to_owned();
                let authorized = head
                    .lines()
                    .any(|l| l.eq_ignore_ascii_case(&format!("authorization: Bearer {TOKEN}")));
                let answer = {
                    let mut api = api.lock().unwrap();
                    if request_line == "GET /metrics HTTP/1.1" {
                        // The canary origin's Prometheus text (its own format, no token).
                        let (total, errors) = api.scrapes.pop_front().unwrap_or(api.last_scrape);
                        api.last_scrape = (total, errors);
                        let text = format!(
                            "# TYPE origin_http_requests_total counter\n\
                             origin_http_requests_total{{route=\"/api/catalog\",status=\"2xx\"}} {}\n\
                             origin_http_requests_total{{route=\"/api/feed\",status=\"5xx\"}} {errors}\n\
                             origin_shed_total{{class=\"feed\"}} 3\n",
                            total - errors
                        );
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                            text.len()
                        )
                    } else if !authorized {
                        api.violations
                            .push(format!("unauthenticated: {request_line}"));
                        respond(
                            401,
                            r#"{"success":false,"errors":[{"code":10000,"message":"Authentication error"}]}"#,
                        )
                    } else if request_line
                        == format!(
                            "POST /client/v4/accounts/{ACCOUNT}/analytics_engine/sql HTTP/1.1"
                        )
                    {
                        match check_query(&body) {
                            Ok(()) => {
                                api.queries.push(body);
                                let (requests, errors) =
                                    api.readings.pop_front().unwrap_or(api.last);
                                api.last = (requests, errors);
                                respond(
                                    200,
                                    &format!(
                                        r#"{{"meta":[{{"name":"requests","type":"Float64"}},{{"name":"errors","type":"Float64"}}],"data":[{{"requests":{requests},"errors":{errors}}}],"rows":1}}"#
                                    ),
                                )
                            }
                            Err(e) => {
                                api.violations.push(e.clone());
                                respond(422, &serde_json::json!({"error": e}).to_string())
                            }
                        }
                    } else if request_line
                        == format!("GET /client/v4/accounts/{ACCOUNT}/workers/scripts HTTP/1.1")
                    {
                        let tag = api
                            .applied_migration
                            .as_ref()
                            .map_or(serde_json::Value::Null, |t| serde_json::json!(t));
                        respond(
                            200,
                            &serde_json::json!({"success": true, "errors": [], "messages": [],
                                "result": [{"id": "course-edge", "migration_tag": tag}]})
                            .to_string(),
                        )
                    } else {
                        api.violations
                            .push(format!("undocumented request: {request_line}"));
                        respond(
                            404,
                            r#"{"success":false,"errors":[{"code":7003,"message":"No route"}]}"#,
                        )
                    }
                };
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    base
}

/// One rollout's world: a stand-in account, the API stand-in, a state directory.
struct World {
    dir: tempfile::TempDir,
    api: Arc<Mutex<Api>>,
    base: String,
}

impl World {
    async fn new(readings: &[(u64, u64)], applied: Option<&str>) -> Self {
        Self::with_scrapes(readings, &[], applied).await
    }

    async fn with_scrapes(
        readings: &[(u64, u64)],
        scrapes: &[(u64, u64)],
        applied: Option<&str>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("account.json"),
            serde_json::json!({"versions": [OLD], "deployment": [[OLD, 100]],
                               "applied_migration": applied})
            .to_string(),
        )
        .unwrap();
        // The repository's own wrangler.toml: the config the rollout really reads.
        std::fs::copy(
            repo_root().join("wrangler.toml"),
            dir.path().join("wrangler.toml"),
        )
        .unwrap();
        let api = Arc::new(Mutex::new(Api {
            readings: readings.iter().copied().collect(),
            applied_migration: applied.map(str::to_owned),
            scrapes: scrapes.iter().copied().collect(),
            ..Api::default()
        }));
        let base = serve_api(api.clone()).await;
        Self { dir, api, base }
    }

    fn command(&self, args: &[&str]) -> Command {
        let bin = std::env::var_os("COURSE_ROLLOUT_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target/debug/course-rollout"));
        assert!(
            bin.exists(),
            "{} is missing: cargo build -p course-edge-origin --bins (scripts/test does)",
            bin.display()
        );
        let mut command = Command::new(repo_root().join("scripts/rollout"));
        command
            .args([
                "--config",
                self.path("wrangler.toml").to_str().unwrap(),
                "--state",
                self.path("rollout/state.json").to_str().unwrap(),
                "--min-requests",
                "500",
            ])
            .args(args)
            .env("COURSE_ROLLOUT_BIN", bin)
            .env("WRANGLER", env!("CARGO_BIN_EXE_wrangler-standin"))
            .env("STANDIN_DIR", self.dir.path())
            .env("CLOUDFLARE_API_BASE_URL", &self.base)
            .env("CLOUDFLARE_ACCOUNT_ID", ACCOUNT)
            .env("CLOUDFLARE_API_TOKEN", TOKEN);
        command
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The stand-in's recorded calls, less `--config <path>`.
    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("calls"))
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let parts: Vec<&str> = line.split('\t').collect();
                let mut kept = Vec::new();
                let mut i = 0;
                while i < parts.len() {
                    if parts[i] == "--config" {
                        i += 2;
                        continue;
                    }
                    kept.push(parts[i]);
                    i += 1;
                }
                kept.join(" ")
            })
            .collect()
    }

    fn new_version(&self) -> String {
        let account: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(self.path("account.json")).unwrap())
                .unwrap();
        account["versions"][1].as_str().unwrap().to_owned()
    }

    fn deployment(&self) -> serde_json::Value {
        let account: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(self.path("account.json")).unwrap())
                .unwrap();
        account["deployment"].clone()
    }

    fn assert_no_violations(&self) {
        let api = self.api.lock().unwrap();
        assert!(api.violations.is_empty(), "{:?}", api.violations);
    }
}

fn deploys(calls: &[String]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.starts_with("versions deploy"))
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_healthy_rollout_goes_5_25_100() {
    let world = World::new(&[(2000, 4), (4000, 20), (9000, 45)], Some("v1")).await;
    let (code, out) = tokio::task::spawn_blocking({
        let command = world.command(&["--soak", "300ms"]);
        move || run_command(command)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
    let new = world.new_version();
    let calls = world.calls();
    assert_eq!(calls[0], "deployments status --json", "{calls:?}");
    assert!(
        calls[1].starts_with("versions upload --message"),
        "{calls:?}"
    );
    assert_eq!(
        deploys(&calls),
        [
            format!("versions deploy {new}@5% {OLD}@95% --message scripts/rollout (5 %) --yes"),
            format!("versions deploy {new}@25% {OLD}@75% --message scripts/rollout (25 %) --yes"),
            format!("versions deploy {new}@100% --message scripts/rollout (100 %) --yes"),
        ]
    );
    assert_eq!(world.deployment(), serde_json::json!([[new, 100.0]]));
    for line in [
        "step 1/3: 5 % to",
        "4 errors in 2000 requests",
        "= 0.20 % (limit 1.00 % on at least 500 requests): healthy, next step",
        "20 errors in 4000 requests",
        "45 errors in 9000 requests over",
        "healthy, done",
        "done:",
    ] {
        assert!(out.contains(line), "{line:?} missing from:\n{out}");
    }
    let queries = world.api.lock().unwrap().queries.clone();
    assert_eq!(queries.len(), 3);
    assert!(queries.iter().all(|q| q.contains(&new)), "{queries:?}");
    world.assert_no_violations();
}

fn run_command(mut command: Command) -> (i32, String) {
    let output = command.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[tokio::test]
async fn errors_above_one_percent_at_25_roll_back() {
    let world = World::new(&[(1000, 2), (2000, 30)], Some("v1")).await;
    let command = world.command(&["--soak", "200ms"]);
    let (code, out) = tokio::task::spawn_blocking(move || run_command(command))
        .await
        .unwrap();
    assert_eq!(code, 1, "a rollback exits non-zero:\n{out}");
    let new = world.new_version();
    let calls = deploys(&world.calls());
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(calls[1].starts_with(&format!("versions deploy {new}@25% {OLD}@75%")));
    assert!(
        calls[2].starts_with(&format!(
            "versions deploy {OLD}@100% --message rollback of {new}"
        )),
        "{calls:?}"
    );
    assert!(calls[2].ends_with("--yes"));
    assert_eq!(world.deployment(), serde_json::json!([[OLD, 100.0]]));
    assert!(
        out.contains("30 errors in 2000 requests") && out.contains("= 1.50 %"),
        "{out}"
    );
    assert!(out.contains("failing, rolling back"), "{out}");
    assert!(out.contains("rolled back:"), "{out}");
    // Run again: the state says it was rolled back; nothing is uploaded or deployed
    // until the operator asks for a new rollout.
    let before = world.calls().len();
    let command = world.command(&["--soak", "200ms"]);
    let (code, out) = tokio::task::spawn_blocking(move || run_command(command))
        .await
        .unwrap();
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--restart"), "{out}");
    assert_eq!(world.calls().len(), before);
    world.assert_no_violations();
}

#[tokio::test]
async fn too_few_requests_wait_then_decide() {
    let world = World::new(&[(40, 0), (120, 1), (900, 3), (5000, 10)], Some("v1")).await;
    let command = world.command(&["--soak", "300ms", "--steps", "5,100", "--max-waits", "3"]);
    let (code, out) = tokio::task::spawn_blocking(move || run_command(command))
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.matches("too few requests, soaking again").count(),
        2,
        "{out}"
    );
    assert!(out.contains("3 errors in 900 requests"), "{out}");
    // The window grows with the waits: each query covers the step since it began.
    let queries = world.api.lock().unwrap().queries.clone();
    let seconds: Vec<u64> = queries
        .iter()
        .map(|q| {
            q.split("INTERVAL '")
                .nth(1)
                .unwrap()
                .split('\'')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(
        seconds.windows(2).take(2).all(|w| w[0] <= w[1]),
        "{seconds:?}"
    );
    assert_eq!(deploys(&world.calls()).len(), 2);

    // With no traffic at all it stops after its waits, resumable, the split untouched.
    let idle = World::new(&[(0, 0)], Some("v1")).await;
    let command = idle.command(&["--soak", "100ms", "--max-waits", "1"]);
    let (code, out) = tokio::task::spawn_blocking(move || run_command(command))
        .await
        .unwrap();
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("no verdict after 1 extra soaks"), "{out}");
    let new = idle.new_version();
    assert_eq!(
        idle.deployment(),
        serde_json::json!([[new, 5.0], [OLD, 95.0]])
    );
    world.assert_no_violations();
    idle.assert_no_violations();
}

#[tokio::test]
async fn a_pending_durable_object_migration_is_refused() {
    // The config carries v1 and v2; the account applied v1 only.
    let world = World::new(&[], Some("v1")).await;
    let config = world.path("wrangler.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}\n[[migrations]]\ntag = \"v2\"\nnew_sqlite_classes = [\"Drills\"]\n"),
    )
    .unwrap();
    let command = world.command(&["--soak", "100ms"]);
    let (code, out) = tokio::task::spawn_blocking(move || run_command(command))
        .await
        .unwrap();
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("migration(s) v2"), "{out}");
    assert!(out.contains("wrangler deploy"), "{out}");
    assert!(
        !world.calls().iter().any(|c| c.starts_with("versions")),
        "nothing was uploaded or deployed: {:?}",
        world.calls()
    );
    // The stand-in refuses such an upload too, as the API does (code 10211).
    let output = Command::new(env!("CARGO_BIN_EXE_wrangler-standin"))
        .args(["versions", "upload", "--config", config.to_str().unwrap()])
        .env("STANDIN_DIR", world.dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("[code: 10211]"));
    // … and anything wrangler does not document for these commands.
    for args in [
        vec!["versions", "deploy", "nonsense"],
        vec!["versions", "deploy", &format!("{OLD}@100%")],
        vec!["versions", "deploy", &format!("{OLD}@60%"), "--yes"],
        vec!["versions", "upload", "--percentage", "5"],
        vec!["deploy"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_wrangler-standin"))
            .args(&args)
            .env("STANDIN_DIR", world.dir.path())
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?} was accepted");
    }
    world.assert_no_violations();
}

#[tokio::test]
async fn an_interrupted_rollout_resumes_from_its_state_file() {
    let world = World::new(&[(2000, 0)], Some("v1")).await;
    let mut command = world.command(&["--soak", "1500ms"]);
    let log = world.path("first-run.log");
    command
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::null());
    let mut child = command.spawn().unwrap();
    // Killed (no chance to clean up) while the 25 % step soaks.
    let started = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains(" s at 25 %")
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let new = world.new_version();
    assert_eq!(
        world.deployment(),
        serde_json::json!([[new, 25.0], [OLD, 75.0]])
    );

    // Had an operator rolled back by hand meanwhile, resuming would undo it: refused.
    let account_path = world.path("account.json");
    let split = std::fs::read_to_string(&account_path).unwrap();
    let mut by_hand: serde_json::Value = serde_json::from_str(&split).unwrap();
    by_hand["deployment"] = serde_json::json!([[OLD, 100]]);
    std::fs::write(&account_path, by_hand.to_string()).unwrap();
    let command = world.command(&["--soak", "1500ms"]);
    let (code, out) = tokio::task::spawn_blocking(move || run_command(command))
        .await
        .unwrap();
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("changed outside the rollout"), "{out}");
    assert!(out.contains("--restart"), "{out}");
    std::fs::write(&account_path, split).unwrap();

    let command = world.command(&["--soak", "1500ms"]);
    let (code, out) = tokio::task::spawn_blocking(move || run_command(command))
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("resuming {OLD} → {new} at step 2 (25 %)")),
        "{out}"
    );
    let calls = world.calls();
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.starts_with("versions upload"))
            .count(),
        1,
        "one upload across both runs: {calls:?}"
    );
    let deploys = deploys(&calls);
    assert_eq!(deploys.len(), 3, "{deploys:?}");
    assert!(deploys[2].starts_with(&format!("versions deploy {new}@100%")));
    assert_eq!(world.deployment(), serde_json::json!([[new, 100.0]]));
    world.assert_no_violations();
}

#[tokio::test]
async fn the_origin_canary_moves_by_canary_percent_and_rolls_back_on_its_5xx() {
    // Scrapes: a baseline at each deploy, then the counters after the soak. 5 %: 3 of
    // 1000 fail (0.3 %); 25 %: 20 of 1000 (2 %) → rollback.
    let world = World::with_scrapes(
        &[],
        &[(1000, 5), (2000, 8), (2000, 8), (3000, 28)],
        Some("v1"),
    )
    .await;
    let metrics = format!("{}/metrics", world.base.trim_end_matches("/client/v4"));
    let command = world.command(&["--soak", "200ms", "--origin-canary", &metrics]);
    let (code, out) = tokio::task::spawn_blocking(move || run_command(command))
        .await
        .unwrap();
    assert_eq!(code, 1, "{out}");
    let calls = world.calls();
    let account: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(world.path("account.json")).unwrap())
            .unwrap();
    let (v5, v25) = (
        account["versions"][1].as_str().unwrap().to_owned(),
        account["versions"][2].as_str().unwrap().to_owned(),
    );
    assert_eq!(
        calls[1..],
        [
            String::from(
                "versions upload --message scripts/rollout (origin canary 5 %) --var CANARY_PERCENT:5"
            ),
            format!("versions deploy {v5}@100% --message scripts/rollout (5 %) --yes"),
            String::from(
                "versions upload --message scripts/rollout (origin canary 25 %) --var CANARY_PERCENT:25"
            ),
            format!("versions deploy {v25}@100% --message scripts/rollout (25 %) --yes"),
            format!(
                "versions deploy {OLD}@100% --message rollback of {v25}: error rate above the limit --yes"
            ),
        ],
        "{out}"
    );
    assert!(
        out.contains("3 errors in 1000 requests") && out.contains("= 0.30 %"),
        "{out}"
    );
    assert!(
        out.contains("20 errors in 1000 requests") && out.contains("= 2.00 %"),
        "{out}"
    );
    assert_eq!(world.deployment(), serde_json::json!([[OLD, 100.0]]));
    // The worker's analytics were not asked: the canary origin's counters decide.
    assert!(world.api.lock().unwrap().queries.is_empty());
    world.assert_no_violations();
}
