//! Never a lost purge: the real origin binary commits an edit, stops at the fault
//! injection point before delivering its purge, and is killed with SIGKILL. Restarted
//! on the same data, it delivers the purge, and the edge applies it exactly once.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::ADMIN_TOKEN;
use support::cloudflare::{Plan, Recorder};

const BIN: &str = env!("CARGO_BIN_EXE_course-origin");

/// A running origin binary; its stderr (the log) collected in memory.
struct Running {
    child: Child,
    port: u16,
    log: Arc<Mutex<String>>,
}

impl Running {
    fn start(dir: &std::path::Path, port: u16, recorder: &Recorder, fault: bool) -> Self {
        let mut command = Command::new(BIN);
        command
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(dir)
            .env("ADMIN_TOKENS", format!("tester:{ADMIN_TOKEN}"))
            .env("EDGE_PURGE_URL", recorder.edge_url())
            .env("EDGE_PURGE_SECRET", Recorder::EDGE_SECRET)
            .env("OUTBOX_LEASE_MS", "1000")
            .env("ADMIN_WAIT_MS", "300")
            .env("RUST_LOG", "info")
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .env_remove("NATS_URL")
            .env_remove("ORIGIN_FAULT_PAUSE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if fault {
            command.env("ORIGIN_FAULT_PAUSE", "before-delivery");
        }
        let mut child = command.spawn().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        // `origin: http://127.0.0.1:<port>` on stdout names the bound port.
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let mut bound = 0;
        while stdout.read_line(&mut line).unwrap() > 0 {
            if let Some(addr) = line.trim().strip_prefix("origin: http://127.0.0.1:") {
                bound = addr.parse().unwrap();
                break;
            }
            line.clear();
        }
        assert!(
            bound > 0,
            "the origin printed no port:\n{}",
            log.lock().unwrap()
        );
        std::thread::spawn(move || for _ in stdout.lines() {});
        Self {
            child,
            port: bound,
            log,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn wait_for(&self, what: impl Fn(&str) -> bool, within: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < within {
            if what(&self.log.lock().unwrap()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    async fn ready(&self) {
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(r) = client.get(self.url("/readyz")).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "never ready:\n{}",
                self.log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_committed_before_a_sigkill_is_delivered_once_after_restart() {
    let recorder = Recorder::start(Plan::FREE).await;
    let dir = tempfile::tempdir().unwrap();
    let seeded = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["seed", "--file"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/demo/catalog.json"))
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(
        seeded.status.success(),
        "{}",
        String::from_utf8_lossy(&seeded.stderr)
    );

    let mut first = Running::start(dir.path(), 0, &recorder, true);
    first.ready().await;
    let client = reqwest::Client::new();
    let page: serde_json::Value = client
        .get(first.url("/api/catalog"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let slug = page["items"][0]["slug"].as_str().unwrap().to_owned();
    let course = client
        .get(first.url(&format!("/api/courses/{slug}")))
        .send()
        .await
        .unwrap();
    let etag = course.headers()["etag"].to_str().unwrap().to_owned();
    let edit = client
        .put(first.url(&format!("/admin/courses/{slug}")))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("if-match", &etag)
        .json(&serde_json::json!({
            "title": "Committed, then killed", "summary": "s", "locale": "en",
            "level": "beginner", "tags": ["rust"], "plan": "free", "cover_image": null
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(edit.status(), 200);
    let edited: serde_json::Value = edit.json().await.unwrap();
    assert_eq!(
        edited["purge"]["delivered"], false,
        "paused before delivery"
    );
    let outbox_id = edited["purge"]["id"].as_i64().unwrap();
    assert!(
        first
            .wait_for(
                |log| log.contains("fault: paused before delivery"),
                Duration::from_secs(5)
            )
            .await,
        "{}",
        first.log.lock().unwrap()
    );
    // SIGKILL: no shutdown, no flush, no goodbye.
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let port = first.port;
    drop(first);
    assert!(
        recorder.edge_purges().is_empty(),
        "nothing was delivered before the crash"
    );

    let second = Running::start(dir.path(), port, &recorder, false);
    second.ready().await;
    // The dead instance's lease (1 s) runs out, then the purge goes out.
    let started = Instant::now();
    while recorder.edge_purges().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the purge was lost:\n{}",
            second.log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // The edit survived, the purge took effect once, and nothing repeats it.
    let now: serde_json::Value = client
        .get(second.url(&format!("/api/courses/{slug}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(now["title"], "Committed, then killed");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let purges = recorder.edge_purges();
    assert_eq!(purges.len(), 1, "{purges:?}");
    assert!(purges[0].id.starts_with(&format!("o{outbox_id}-")));
    assert_eq!(recorder.applied(), (1, 0));
    let row: serde_json::Value = client
        .get(second.url(&format!("/admin/purges/{outbox_id}")))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(row["delivered"], true);
    assert_eq!(
        row["attempts"], 2,
        "one claim before the crash, one after: {row}"
    );
}
