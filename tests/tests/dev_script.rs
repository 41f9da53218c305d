//! `scripts/dev`, the main job, as a user runs it: it prints the edge and origin URLs,
//! the health route answers through workerd, the demo images are in the local bucket,
//! and Ctrl-C (SIGINT) leaves no process behind.

// A test crate: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use course_edge_e2e::{Group, client, free_port, repo_root};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_dev_brings_up_the_stack_with_demo_images_and_stops_cleanly_on_ctrl_c() {
    let root = repo_root();
    let state = tempfile::tempdir().unwrap();
    let (edge_port, origin_port) = (free_port(), free_port());
    let mut command = Command::new(root.join("scripts/dev"));
    command
        .env("EDGE_PORT", edge_port.to_string())
        .env("ORIGIN_PORT", origin_port.to_string())
        .env("INSPECTOR_PORT", free_port().to_string())
        .env("DEV_STATE", state.path().join("dev"));
    let mut dev = Group::spawn("scripts-dev", command, state.path());

    // Wait for the two URL lines in its output.
    let started = Instant::now();
    let edge_line = format!("edge: http://127.0.0.1:{edge_port}");
    let origin_line = format!("origin: http://127.0.0.1:{origin_port}");
    loop {
        let log = dev.log_tail();
        if log.contains(&edge_line) && log.contains(&origin_line) {
            break;
        }
        assert!(dev.exited().is_none(), "scripts/dev exited early:\n{log}");
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "scripts/dev printed no URLs within 300 s:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let health = client()
        .get(format!("http://127.0.0.1:{edge_port}/api/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.headers()["x-edge-cache"], "BYPASS");

    // The site's URL comes first, and the seeded site answers there: a page with the
    // seeded covers made responsive, and the seeded lesson video.
    let printed = dev.log_text();
    let site_at = printed
        .find(&format!("site: http://127.0.0.1:{edge_port}/"))
        .unwrap_or_else(|| {
            panic!(
                "no site URL printed:
{printed}"
            )
        });
    assert!(
        site_at < printed.find(&edge_line).unwrap(),
        "the site URL comes first"
    );
    let home = client()
        .get(format!("http://127.0.0.1:{edge_port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(home.status(), 200);
    assert!(
        home.text()
            .await
            .unwrap()
            .contains("srcset=\"/img/w=96/demo/")
    );
    let video = client()
        .get(format!(
            "http://127.0.0.1:{edge_port}/video/demo/lesson.webm"
        ))
        .header("range", "bytes=0-3")
        .send()
        .await
        .unwrap();
    assert_eq!(video.status(), 206);
    assert_eq!(video.headers()["content-type"], "video/webm");

    // The printed edit example works as pasted: the dev admin token, the ETag, a 200.
    let printed = dev.log_text();
    let example: String = printed
        .lines()
        .skip_while(|l| !l.starts_with("edit a course"))
        .skip(1)
        .take_while(|l| !l.starts_with("purge by tag"))
        .map(|l| format!("{}\n", l.trim()))
        .collect();
    assert!(
        example.contains("Bearer dev-"),
        "no admin example printed:\n{printed}"
    );
    // The edge holds the course before the edit …
    let course = format!("http://127.0.0.1:{edge_port}/api/courses/rust-beginner");
    client().get(&course).send().await.unwrap();
    let cached = client().get(&course).send().await.unwrap();
    assert_eq!(cached.headers()["x-edge-cache"], "HIT");
    let pasted = Command::new("bash")
        .arg("-c")
        .arg(&example)
        .output()
        .unwrap();
    let answer = String::from_utf8_lossy(&pasted.stdout);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "the printed edit failed:\n{example}\n{answer}"
    );
    assert!(answer.contains("Rust Ownership, Edited"));
    // … and serves the edit once the origin's purge reached it.
    let edited = Instant::now();
    loop {
        let body: serde_json::Value = client()
            .get(&course)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if body["title"] == "Rust Ownership, Edited" {
            break;
        }
        assert!(
            edited.elapsed() < Duration::from_secs(3),
            "the dev edge still serves the old course"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The demo images are in the local R2 bucket, byte for byte.
    let fixtures = course_edge_e2e::fixtures::real_dir();
    let got = Command::new(root.join("node_modules/.bin/wrangler"))
        .current_dir(&root)
        .args([
            "r2",
            "object",
            "get",
            "course-media/demo/string.jpg",
            "--local",
            "--pipe",
        ])
        .arg("--persist-to")
        .arg(state.path().join("dev/wrangler"))
        .env("WRANGLER_SEND_METRICS", "false")
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let want = std::fs::read(fixtures.join("string.jpg")).unwrap();
    assert!(got.status.success(), "wrangler r2 object get failed");
    assert_eq!(got.stdout.len(), want.len());
    assert!(
        got.stdout == want,
        "the seeded object differs from the fixture"
    );

    // Ctrl-C: SIGINT to the script alone; it must take workerd and the origin with it.
    dev.interrupt();
    let deadline = Instant::now() + Duration::from_secs(20);
    while dev.exited().is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(dev.exited().is_some(), "scripts/dev ignored SIGINT");
    for port in [edge_port, origin_port] {
        let mut free = false;
        for _ in 0..50 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                free = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            free,
            "port {port} still answers after Ctrl-C: an orphan is left"
        );
    }
    let log = dev.log_tail();
    assert!(log.contains("stopped"), "{log}");
}
