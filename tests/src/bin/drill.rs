//! `scripts/drill`: failure drills. It starts a whole stack of its own on loopback — its
//! own PostgreSQL, Redis and NATS on free ports (never the machine's shared services),
//! the origin on them, a canary origin, and the edge (`wrangler dev`) with short edge
//! TTLs so that stale copies matter — then, one fault at a time, runs bounded load
//! through the edge (autocannon, from npm) while a prober per class records what
//! visitors got before, during and after the fault, and checks what must hold:
//!
//! - cached classes answer inside their stale-if-error windows with 0 5xx during the
//!   fault, and fresh copies return after recovery;
//! - a write acknowledged before the fault (and, where the database stays up, one
//!   during it) is readable after it, and its purge reached the edge; a write during a
//!   database outage fails with a clear 503 and changes nothing.
//!
//! Faults: `origin` (SIGKILL), `postgres`, `redis`, `nats` (stopped), `canary` (the
//! canary origin killed), `r2` (the edge's R2 reads switched off through its
//! fault-injection route: static assets, originals and image derivatives), `overload` (more load straight at the origin than it takes:
//! its shedding order, feed then search, shown by `origin_shed_total`, while the edge
//! serves the shed classes stale). Usage: `drill [--faults origin,redis,…|all] [--quick]`.
//! Exit 1 when an expectation fails (the report says which).

// A tool, not a library: a failed unwrap while setting up is a failed drill.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use course_edge_e2e::{
    EdgeOptions, Group, Origin, Stack, TEST_ADMIN_TOKEN, TEST_PURGE_SECRET, client, free_port,
    repo_root, stack_origin_env,
};
use course_edge_worker::canary::{BreakerSettings, Canary};
use course_edge_worker::visitor::VisitorId;

const FAULTS: [&str; 7] = [
    "origin", "postgres", "redis", "nats", "canary", "r2", "overload",
];
/// The drill's origin sheds early, so that its overload fault can show the order.
const SHED_FEED_AT: &str = "1";
const SHED_SEARCH_AT: &str = "2";
const SLUG: &str = "rust-beginner";

/// The classes the prober reads: (label, path, cached at the edge).
const CLASSES: [(&str, &str); 6] = [
    ("catalog", "/api/catalog"),
    ("course", "/api/courses/rust-beginner"),
    ("search", "/api/search?q=rust"),
    ("video", "/api/videos/1"),
    ("feed", "/api/feed"),
    ("page", "/"),
];

/// What R2 serves (read while R2 is switched off): a site asset, an original, an image
/// derivative.
const R2_CLASSES: [(&str, &str); 3] = [
    ("static", "/static/drill.css"),
    ("media", "/media/drill/photo.jpg"),
    ("image", "/img/w=320/drill/photo.jpg"),
];

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

async fn wait_port(port: u16, what: &str, group: &mut Group) {
    let started = Instant::now();
    while !port_open(port) {
        if let Some(status) = group.exited() {
            panic!("{what} exited ({status}):\n{}", group.log_tail());
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what} did not listen on {port}:\n{}",
            group.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A service of the drill's own: how to start it again after a fault.
struct Service {
    name: &'static str,
    port: u16,
    dir: PathBuf,
    group: Option<Group>,
}

impl Service {
    fn command(&self) -> Command {
        let port = self.port.to_string();
        match self.name {
            "postgres" => {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--", "/usr/local/bin/postgres", "-D"])
                    .arg(self.dir.join("pg"))
                    .args(["-p", &port, "-k"])
                    .arg(&self.dir)
                    .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]);
                c
            }
            "redis" => {
                let mut c = Command::new("redis-server");
                c.args([
                    "--port",
                    &port,
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ]);
                c
            }
            _ => {
                let mut c = Command::new("nats-server");
                c.args(["-a", "127.0.0.1", "-p", &port]);
                c
            }
        }
    }

    async fn start(&mut self) {
        let mut group = Group::spawn(self.name, self.command(), &self.dir);
        wait_port(self.port, self.name, &mut group).await;
        self.group = Some(group);
    }

    fn stop(&mut self) {
        if let Some(mut group) = self.group.take() {
            group.stop();
        }
    }
}

async fn services(dir: &Path) -> Vec<Service> {
    // PostgreSQL refuses to run as root: its data belongs to the postgres user.
    let pg = dir.join("pg");
    std::fs::create_dir_all(&pg).unwrap();
    let chown = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(chown.success(), "chown of the drill's directory failed");
    let init = Command::new("runuser")
        .args(["-u", "postgres", "--", "/usr/local/bin/initdb", "-D"])
        .arg(&pg)
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let mut out = Vec::new();
    for name in ["postgres", "redis", "nats"] {
        let mut service = Service {
            name,
            port: free_port(),
            dir: dir.to_owned(),
            group: None,
        };
        service.start().await;
        println!("drill: {name} of its own on 127.0.0.1:{}", service.port);
        out.push(service);
    }
    out
}

#[derive(Debug, Clone)]
struct Sample {
    class: &'static str,
    at: Instant,
    status: u16,
    cache: String,
    retry_after: bool,
    ms: f64,
}

#[derive(Default)]
struct Tally {
    fresh: usize,
    stale: usize,
    unavailable: usize,
    errors: usize,
    p99: f64,
}

fn tally(samples: &[&Sample]) -> Tally {
    let mut t = Tally::default();
    let mut ms: Vec<f64> = samples.iter().map(|s| s.ms).collect();
    ms.sort_by(f64::total_cmp);
    t.p99 = ms
        .get(((ms.len() as f64 * 0.99).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or(0.0);
    for s in samples {
        match (s.status, s.cache.as_str()) {
            (503, _) if s.retry_after => t.unavailable += 1,
            (500..=599, _) | (0, _) => t.errors += 1,
            (_, "STALE") => t.stale += 1,
            _ => t.fresh += 1,
        }
    }
    t
}

/// Requests each class in a loop until `stop`, as a visitor with `cookie`.
fn probe(
    edge: String,
    cookie: String,
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    classes: Vec<(&'static str, &'static str)>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            for (class, path) in &classes {
                let started = Instant::now();
                let mut request = http.get(format!("{edge}{path}"));
                if !cookie.is_empty() {
                    request = request.header("cookie", &cookie);
                }
                let sample = match request.send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let header = |n: &str| {
                            response
                                .headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned)
                        };
                        let cache = header("x-edge-cache").unwrap_or_default();
                        let retry_after = header("retry-after").is_some();
                        let _ = response.bytes().await;
                        Sample {
                            class,
                            at: started,
                            status,
                            cache,
                            retry_after,
                            ms: started.elapsed().as_secs_f64() * 1000.0,
                        }
                    }
                    Err(_) => Sample {
                        class,
                        at: started,
                        status: 0,
                        cache: String::new(),
                        retry_after: false,
                        ms: started.elapsed().as_secs_f64() * 1000.0,
                    },
                };
                samples.lock().unwrap().push(sample);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

/// Bounded background load through the edge (autocannon; JSON summary).
fn load(edge: &str, seconds: u64) -> std::process::Child {
    Command::new(repo_root().join("node_modules/.bin/autocannon"))
        .args(["-c", "4", "-R", "150", "-d", &seconds.to_string(), "-j"])
        .arg(format!("{edge}/api/catalog"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("autocannon (npm ci installs it): {e}"))
}

fn load_summary(child: std::process::Child) -> String {
    let output = child.wait_with_output().unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    format!(
        "load (autocannon, /api/catalog, 4 connections, ≤150 req/s): {} requests, 2xx {}, 5xx {}, errors {}, timeouts {}, p99 {} ms",
        json["requests"]["total"],
        json["2xx"],
        json["5xx"],
        json["errors"],
        json["timeouts"],
        json["latency"]["p99"]
    )
}

struct World {
    /// The overload's generators (autocannon straight at the origin) while they run.
    overload: Vec<std::process::Child>,
    stack: Stack,
    canary: Origin,
    services: Vec<Service>,
    canary_cookie: String,
    edits: u32,
    _dir: tempfile::TempDir,
}

impl World {
    fn service(&mut self, name: &str) -> &mut Service {
        self.services.iter_mut().find(|s| s.name == name).unwrap()
    }

    fn origin_url(&self) -> String {
        self.stack.origin.url()
    }

    /// An admin edit of the course title straight at the origin: (status, title).
    async fn edit(&mut self) -> (u16, String) {
        self.edits += 1;
        let title = format!("Rust for beginners (drill edit {})", self.edits);
        let url = format!("{}/api/courses/{SLUG}", self.origin_url());
        let etag = match client().get(&url).send().await {
            Ok(r) => r
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("*")
                .to_owned(),
            Err(_) => String::from("*"),
        };
        let response = client()
            .put(format!("{}/admin/courses/{SLUG}", self.origin_url()))
            .header("authorization", format!("Bearer {TEST_ADMIN_TOKEN}"))
            .header("if-match", etag)
            .json(&serde_json::json!({
                "title": title, "summary": "s", "locale": "en", "level": "beginner",
                "tags": ["rust"], "plan": "free", "cover_image": null
            }))
            .send()
            .await;
        (response.map_or(0, |r| r.status().as_u16()), title)
    }

    async fn title_at(&self, base: &str) -> String {
        let Ok(response) = client()
            .get(format!("{base}/api/courses/{SLUG}"))
            .send()
            .await
        else {
            return String::new();
        };
        let json: serde_json::Value = response.json().await.unwrap_or_default();
        json["title"].as_str().unwrap_or_default().to_owned()
    }

    async fn inject(&mut self, fault: &str) {
        match fault {
            "overload" => {
                // More than the origin takes, straight at it and unbounded: catalog,
                // feed and search at once (the feed and search requests are what it
                // sheds, in that order).
                for (connections, path) in [
                    ("32", "/api/catalog"),
                    ("8", "/api/feed"),
                    ("8", "/api/search?q=rust"),
                ] {
                    self.overload.push(
                        Command::new(repo_root().join("node_modules/.bin/autocannon"))
                            .args(["-c", connections, "-d", "60"])
                            .arg(format!("{}{path}", self.origin_url()))
                            .stdout(std::process::Stdio::null())
                            .stderr(std::process::Stdio::null())
                            .spawn()
                            .unwrap(),
                    );
                }
            }
            "origin" => self.stack.origin.stop(),
            "canary" => self.canary.stop(),
            "r2" => self.switch_r2("down").await,
            name => self.service(name).stop(),
        }
    }

    /// The edge's fault route (FAULT_INJECTION=on in the drill's edge). It refuses a
    /// request without the purge secret (401) and any other switch (400).
    async fn switch_r2(&self, to: &str) {
        let url = self.stack.edge.url("/__edge/fault?r2=down");
        let unauthenticated = client().post(&url).send().await.unwrap();
        assert_eq!(unauthenticated.status(), 401);
        let bad = client()
            .post(self.stack.edge.url("/__edge/fault?r2=sideways"))
            .header("authorization", format!("Bearer {TEST_PURGE_SECRET}"))
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 400);
        let response = client()
            .post(self.stack.edge.url(&format!("/__edge/fault?r2={to}")))
            .header("authorization", format!("Bearer {TEST_PURGE_SECRET}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }

    async fn recover(&mut self, fault: &str) {
        match fault {
            "overload" => {
                for mut child in self.overload.drain(..) {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
            "origin" => self.stack.origin.restart().await,
            "canary" => self.canary.restart().await,
            "r2" => self.switch_r2("up").await,
            name => self.service(name).start().await,
        }
    }
}

/// `origin_shed_total` per class from the origin's `/metrics`.
async fn shed_counts(origin: &str) -> BTreeMap<String, u64> {
    let text = match client().get(format!("{origin}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    text.lines()
        .filter(|l| l.starts_with("origin_shed_total{"))
        .filter_map(|l| {
            let class = l.split("class=\"").nth(1)?.split('"').next()?.to_owned();
            let n = l.rsplit(' ').next()?.parse::<f64>().ok()? as u64;
            Some((class, n))
        })
        .collect()
}

/// One fault: load and probes before, during and after; the expectations checked.
async fn drill(world: &mut World, fault: &str, phase: Duration) -> Vec<String> {
    let mut failures = Vec::new();
    println!("\n== fault: {fault} ==");
    // A write acknowledged before the fault.
    let (status, mut acknowledged) = world.edit().await;
    if status != 200 {
        failures.push(format!(
            "{fault}: the write before the fault answered {status}"
        ));
    }
    let edge = world.stack.edge.url("");
    let edge = edge.trim_end_matches('/').to_owned();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut probes = vec![probe(
        edge.clone(),
        String::new(),
        samples.clone(),
        stop.clone(),
        CLASSES.to_vec(),
    )];
    if fault == "r2" {
        probes.push(probe(
            edge.clone(),
            String::new(),
            samples.clone(),
            stop.clone(),
            R2_CLASSES.to_vec(),
        ));
    }
    if fault == "canary" {
        probes.push(probe(
            edge.clone(),
            world.canary_cookie.clone(),
            samples.clone(),
            stop.clone(),
            vec![
                ("canary-page", "/"),
                ("canary-course", "/api/courses/rust-beginner"),
            ],
        ));
    }
    let loader = load(&edge, phase.as_secs() * 3);
    tokio::time::sleep(phase).await;
    let shed_before = shed_counts(&world.origin_url()).await;
    let fault_at = Instant::now();
    world.inject(fault).await;
    println!("drill: {fault} down");
    // A write during a database outage must fail clearly and change nothing.
    let mut refused_title = None;
    if fault == "postgres" {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (status, title) = world.edit().await;
        println!("drill: a write during the outage answered {status}");
        if status != 503 {
            failures.push(format!(
                "postgres: a write during the outage answered {status}, not 503"
            ));
        }
        refused_title = Some(title);
    }
    // Where the database is up, writes keep working through the fault and are not lost.
    if matches!(fault, "redis" | "nats" | "canary") {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (status, title) = world.edit().await;
        println!("drill: a write during the fault answered {status}");
        if status == 200 {
            acknowledged = title;
        } else {
            failures.push(format!(
                "{fault}: a write during the fault answered {status}"
            ));
        }
    }
    tokio::time::sleep(phase).await;
    world.recover(fault).await;
    let recovered_at = Instant::now();
    if fault == "overload" {
        let after = shed_counts(&world.origin_url()).await;
        let delta = |class: &str| {
            after.get(class).copied().unwrap_or(0) - shed_before.get(class).copied().unwrap_or(0)
        };
        println!(
            "shedding at the origin during the overload (origin_shed_total): feed {}, search {}, catalog {}, course {}, video {}",
            delta("feed"),
            delta("search"),
            delta("catalog"),
            delta("course"),
            delta("video")
        );
        if delta("feed") == 0 {
            failures.push(String::from("overload: the feed was never shed"));
        }
        if delta("feed") < delta("search") {
            failures.push(String::from("overload: search was shed more than the feed"));
        }
        if delta("catalog") + delta("course") + delta("video") > 0 {
            failures.push(String::from(
                "overload: a class that is never shed was shed",
            ));
        }
    }
    println!(
        "drill: {fault} back after {:.1} s",
        fault_at.elapsed().as_secs_f64()
    );
    tokio::time::sleep(phase).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for p in probes {
        let _ = p.await;
    }
    println!("{}", load_summary(loader));

    let samples = samples.lock().unwrap().clone();
    let mut classes: Vec<&'static str> = samples.iter().map(|s| s.class).collect();
    classes.sort_unstable();
    classes.dedup();
    println!(
        "{:<14} {:<7} {:>6} {:>6} {:>9} {:>7} {:>9}",
        "class", "phase", "fresh", "stale", "503+R-A", "errors", "p99 ms"
    );
    for class in classes {
        for (phase_name, from, to) in [
            ("before", None, Some(fault_at)),
            ("during", Some(fault_at), Some(recovered_at)),
            ("after", Some(recovered_at), None),
        ] {
            let picked: Vec<&Sample> = samples
                .iter()
                .filter(|s| s.class == class)
                .filter(|s| from.is_none_or(|f| s.at >= f) && to.is_none_or(|t| s.at < t))
                .collect();
            let t = tally(&picked);
            println!(
                "{class:<14} {phase_name:<7} {:>6} {:>6} {:>9} {:>7} {:>9.1}",
                t.fresh, t.stale, t.unavailable, t.errors, t.p99
            );
            if t.errors + t.unavailable > 0 {
                failures.push(format!(
                    "{fault}: {class} {phase_name}: {} errors and {} 503s inside the stale-if-error window",
                    t.errors, t.unavailable
                ));
            }
            if phase_name == "after" && t.fresh == 0 {
                failures.push(format!("{fault}: {class}: no fresh answer after recovery"));
            }
        }
    }
    // Nothing lost: the acknowledged write is there, at the origin and through the edge.
    let at_origin = world.title_at(&world.origin_url()).await;
    let started = Instant::now();
    let mut at_edge = world.title_at(&edge).await;
    while at_edge != acknowledged && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        at_edge = world.title_at(&edge).await;
    }
    println!(
        "writes: the last acknowledged one: at the origin {}, through the edge {} ({:.1} s after recovery checks began)",
        if at_origin == acknowledged {
            "yes"
        } else {
            "NO"
        },
        if at_edge == acknowledged { "yes" } else { "NO" },
        started.elapsed().as_secs_f64()
    );
    if at_origin != acknowledged || at_edge != acknowledged {
        failures.push(format!(
            "{fault}: the acknowledged write is lost (origin: {at_origin:?}, edge: {at_edge:?})"
        ));
    }
    if let Some(refused) = refused_title {
        let half_applied = at_origin == refused;
        println!(
            "writes: refused during the outage: {}",
            if half_applied {
                "APPLIED"
            } else {
                "not applied"
            }
        );
        if half_applied {
            failures.push(String::from(
                "postgres: a write answered 503 but was applied",
            ));
        }
    }
    failures
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut faults: Vec<String> = FAULTS.iter().map(|f| f.to_string()).collect();
    let mut phase = Duration::from_secs(5);
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--faults" => {
                let list = args.get(i + 1).cloned().unwrap_or_default();
                if list != "all" {
                    faults = list.split(',').map(str::to_owned).collect();
                }
                i += 1;
            }
            "--quick" => phase = Duration::from_secs(3),
            other => {
                eprintln!(
                    "drill: unknown argument {other}; usage: drill [--faults {}|all] [--quick]",
                    FAULTS.join(",")
                );
                std::process::exit(2);
            }
        }
        i += 1;
    }
    if let Some(bad) = faults.iter().find(|f| !FAULTS.contains(&f.as_str())) {
        eprintln!("drill: unknown fault {bad}; faults: {}", FAULTS.join(", "));
        std::process::exit(2);
    }
    let dir = tempfile::tempdir().unwrap();
    println!("drill: starting PostgreSQL, Redis and NATS of its own");
    let services = services(dir.path()).await;
    let port = |name| services.iter().find(|s| s.name == name).unwrap().port;
    let backends: BTreeMap<String, String> = [
        (
            "DATABASE_URL",
            format!(
                "postgres://postgres@127.0.0.1:{}/postgres",
                port("postgres")
            ),
        ),
        ("REDIS_URL", format!("redis://127.0.0.1:{}", port("redis"))),
        ("NATS_URL", format!("nats://127.0.0.1:{}", port("nats"))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let canary_port = free_port();
    // Short edge TTLs: copies go stale within a phase, so the fault is seen by the edge.
    let mut options = EdgeOptions::default()
        .var(
            "CANARY_ORIGIN_URL",
            &format!("http://127.0.0.1:{canary_port}"),
        )
        .var("CANARY_PERCENT", "10")
        .var("CANARY_BREAKER_WINDOW_MS", "5000")
        .var("CANARY_BREAKER_MIN_REQUESTS", "5")
        .var("CANARY_BREAKER_COOL_DOWN_MS", "2000")
        .var("ORIGIN_TIMEOUT_MS", "2000")
        .var("FAULT_INJECTION", "on")
        .object("static/drill.css", b"body{margin:0}".to_vec())
        .object(
            "drill/photo.jpg",
            course_edge_e2e::fixtures::photo(1200, 800),
        );
    for class in [
        "CATALOG",
        "SEARCH",
        "VIDEO_META",
        "FEED",
        "HTML",
        "STATIC",
        "IMAGE",
    ] {
        options = options.var(&format!("POLICY_{class}"), "edge=1 swr=1");
    }
    println!(
        "drill: starting the origin (on its PostgreSQL, Redis, NATS), the canary origin and the edge"
    );
    let mut origin_env = backends.clone();
    origin_env.insert(String::from("SHED_FEED_AT"), String::from(SHED_FEED_AT));
    origin_env.insert(String::from("SHED_SEARCH_AT"), String::from(SHED_SEARCH_AT));
    let stack = Stack::start_with_origin_env(options, move |_| origin_env).await;
    let canary = Origin::start_on(canary_port, stack_origin_env(stack.edge.port)).await;
    let config = Canary {
        url: String::new(),
        percent: 10,
        salt: String::from(Canary::DEFAULT_SALT),
        killed: false,
        breaker: BreakerSettings::default(),
    };
    let canary_id = (0u32..)
        .map(|i| {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&i.to_be_bytes());
            VisitorId::from_bytes(b)
        })
        .find(|id| config.includes(id))
        .unwrap();
    let mut world = World {
        overload: Vec::new(),
        stack,
        canary,
        services,
        canary_cookie: format!("ce_vid={}", canary_id.as_str()),
        edits: 0,
        _dir: dir,
    };
    let mut failures = Vec::new();
    for fault in &faults {
        failures.extend(drill(&mut world, fault, phase).await);
    }
    world.stack.origin.stop();
    world.canary.stop();
    for s in &mut world.services {
        s.stop();
    }
    // Everything it started goes now (process::exit below would skip the drops).
    drop(world);
    if failures.is_empty() {
        println!("\ndrill: every expectation held ({})", faults.join(", "));
    } else {
        println!("\ndrill: {} expectation(s) failed:", failures.len());
        for f in &failures {
            println!("  - {f}");
        }
        std::process::exit(1);
    }
}
