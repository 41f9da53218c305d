//! The end-to-end harness: starts the real origin binary and `wrangler dev` (workerd)
//! on free loopback ports, waits until both answer, and always tears them down.
//!
//! * Every child runs in its own process group; dropping its handle sends SIGTERM to
//!   the group, then SIGKILL after a grace period, so wrangler's workerd goes too.
//! * A failing test unwinds through those drops. SIGINT/SIGTERM to the test process
//!   are caught by a watcher thread that kills every registered group before exiting.
//! * Each edge gets its own `--persist-to` directory, so R2/Cache state never leaks
//!   between tests, and its own env file for secrets.
//!
//! The release WASM must already be built (scripts/test builds it first); the harness
//! refuses to start otherwise rather than letting wrangler build it per test.

pub mod fixtures;
mod process;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use process::Group;

/// How long a component may take to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A port free right now on 127.0.0.1, for a child to bind. It comes from below the
/// kernel's ephemeral range (`ip_local_port_range`): a port the OS picked would sit in the
/// range every `bind(:0)` draws from, and workerd binds several such ports of its own while
/// it starts, so another test's workerd could take ours between our release and wrangler's
/// bind (CI saw "Address already in use" that way). Below the range only an explicit
/// choice can take it, and this process never hands the same port out twice; the start
/// offset comes from the pid, so concurrent test processes walk different ports.
/// (Callers still confirm that their child bound it: see [`Edge::start`].)
pub fn free_port() -> u16 {
    static NEXT: std::sync::Mutex<Option<u16>> = std::sync::Mutex::new(None);
    let (low, high) = outside_ephemeral_range();
    let span = high - low;
    let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
    let mut offset = next.unwrap_or((std::process::id() % u32::from(span)) as u16);
    for _ in 0..span {
        let port = low + offset;
        offset = (offset + 1) % span;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            *next = Some(offset);
            return port;
        }
    }
    panic!("no free loopback port in {low}..{high}")
}

/// Ports `low..high` just below the kernel's ephemeral range (default 32768..60999).
fn outside_ephemeral_range() -> (u16, u16) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let high = ephemeral_low.max(2048);
    (high.saturating_sub(12_000).max(1024), high)
}

#[cfg(test)]
mod port_tests {
    use super::*;

    #[test]
    fn ports_come_from_outside_the_ephemeral_range_and_never_twice() {
        let (low, high) = outside_ephemeral_range();
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        for &port in &ports {
            assert!(
                (low..high).contains(&port),
                "{port} is not in {low}..{high}"
            );
            assert!(
                TcpListener::bind(("127.0.0.1", port)).is_ok(),
                "{port} is taken"
            );
        }
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "a port was handed out twice");
    }
}

/// A response header as a string; panics (naming what was there) when it is missing.
pub fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("missing {name}: {:?}", response.headers()))
}

/// An HTTP client that does not follow redirects (tests look at them).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap_or_else(|e| panic!("building the HTTP client: {e}"))
}

/// The origin binary: `COURSE_ORIGIN_BIN` if set, else built once with cargo.
fn origin_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(bin) = std::env::var("COURSE_ORIGIN_BIN") {
            return PathBuf::from(bin);
        }
        let status = std::process::Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "-p",
                "course-edge-origin",
                "--bin",
                "course-origin",
            ])
            .current_dir(repo_root())
            .status()
            .unwrap_or_else(|e| panic!("running cargo to build the origin: {e}"));
        assert!(status.success(), "building the origin failed");
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| repo_root().join("target"));
        target.join("debug").join("course-origin")
    })
}

/// Polls `url` until it answers with any HTTP status, or panics with the child's log.
async fn wait_until_answering(url: &str, group: &mut Group, what: &str) {
    let client = client();
    let started = Instant::now();
    loop {
        if let Some(status) = group.exited() {
            panic!(
                "{what} exited ({status}) before answering {url}\n--- log ---\n{}",
                group.log_tail()
            );
        }
        if client.get(url).send().await.is_ok() {
            return;
        }
        if started.elapsed() > READY_TIMEOUT {
            panic!(
                "{what} did not answer {url} within {READY_TIMEOUT:?}\n--- log ---\n{}",
                group.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for the child to print `marker` followed by a port, and returns that port.
pub async fn printed_port(group: &mut Group, marker: &str, what: &str) -> u16 {
    let started = Instant::now();
    loop {
        let text = group.log_text();
        if let Some(port) = text.find(marker).and_then(|at| {
            let rest = &text[at + marker.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u16>().ok()
        }) {
            return port;
        }
        if let Some(status) = group.exited() {
            panic!(
                "{what} exited ({status}) before printing its port\n--- log ---\n{}",
                group.log_tail()
            );
        }
        if started.elapsed() > READY_TIMEOUT {
            panic!(
                "{what} printed no port within {READY_TIMEOUT:?}\n--- log ---\n{}",
                group.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls the origin's `/readyz` until it says 200 (warmed), or panics with its log.
async fn wait_until_ready(url: &str, group: &mut Group) {
    let client = client();
    let started = Instant::now();
    loop {
        if let Some(status) = group.exited() {
            panic!(
                "the origin exited ({status}) before it was ready\n--- log ---\n{}",
                group.log_tail()
            );
        }
        if let Ok(response) = client.get(url).send().await
            && response.status() == 200
        {
            return;
        }
        if started.elapsed() > READY_TIMEOUT {
            panic!(
                "the origin was not ready within {READY_TIMEOUT:?}\n--- log ---\n{}",
                group.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A running origin on a fixed loopback port with its own data directory.
pub struct Origin {
    pub port: u16,
    data_dir: tempfile::TempDir,
    extra_env: BTreeMap<String, String>,
    group: Option<Group>,
}

impl Origin {
    /// Starts an origin on the embedded SQLite store.
    pub async fn start() -> Self {
        Self::start_with_env(BTreeMap::new()).await
    }

    /// Starts an origin with extra environment (e.g. `DATABASE_URL`). `DATABASE_URL`,
    /// `REDIS_URL` and `NATS_URL` come only from `extra_env`, never from the test's own.
    pub async fn start_with_env(extra_env: BTreeMap<String, String>) -> Self {
        // 0: the origin binds an OS-chosen port and prints it.
        Self::start_on(0, extra_env).await
    }

    /// The same on a port chosen beforehand (an edge must know where the canary is).
    pub async fn start_on(port: u16, extra_env: BTreeMap<String, String>) -> Self {
        let data_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let mut origin = Self {
            port,
            data_dir,
            extra_env,
            group: None,
        };
        origin.seed();
        origin.spawn().await;
        origin
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Loads the demo catalog (the same file and command scripts/dev uses).
    fn seed(&self) {
        let output = std::process::Command::new(origin_bin())
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .args(["seed", "--file"])
            .arg(repo_root().join("origin/demo/catalog.json"))
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .env_remove("NATS_URL")
            .envs(&self.extra_env)
            .output()
            .unwrap_or_else(|e| panic!("running the origin seed: {e}"));
        assert!(
            output.status.success(),
            "seeding the origin failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    async fn spawn(&mut self) {
        let mut command = std::process::Command::new(origin_bin());
        command
            .arg("--enable-test-routes")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(self.data_dir.path())
            // The backends are the test's to give: `scripts/test` exports the machine's
            // for the native tests, and an origin that inherited them would share cache
            // entries and evictions with every other stack (the canary test caught a
            // stable origin serving the canary origin's edit through the shared Redis).
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .env_remove("NATS_URL")
            .envs(&self.extra_env)
            .env("RUST_LOG", "info");
        let mut group = Group::spawn("origin", command, self.data_dir.path());
        if self.port == 0 {
            self.port = printed_port(&mut group, "origin: http://127.0.0.1:", "the origin").await;
        }
        wait_until_ready(&format!("{}/readyz", self.url()), &mut group).await;
        self.group = Some(group);
    }

    /// Stops the origin (SIGTERM, then SIGKILL). Its port and data stay reserved.
    pub fn stop(&mut self) {
        if let Some(mut group) = self.group.take() {
            group.stop();
        }
    }

    /// Starts it again on the same port with the same data, and waits until it answers.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// SIGKILL, at once (a crash). Its port and data stay reserved for a restart.
    pub fn kill(&mut self) {
        if let Some(mut group) = self.group.take() {
            group.kill();
        }
    }

    /// Sets (`Some`) or removes (`None`) a variable of its environment, from the next
    /// (re)start on.
    pub fn set_env(&mut self, name: &str, value: Option<&str>) {
        match value {
            Some(value) => self.extra_env.insert(name.to_owned(), value.to_owned()),
            None => self.extra_env.remove(name),
        };
    }

    /// Loads the demo catalog into the store its environment names now (a restart onto
    /// another database).
    pub fn reseed(&self) {
        self.seed();
    }

    pub fn log(&self) -> String {
        self.group.as_ref().map(Group::log_tail).unwrap_or_default()
    }
}

/// What an edge is started with beyond wrangler.toml.
#[derive(Debug, Default, Clone)]
pub struct EdgeOptions {
    /// `--var NAME:VALUE` overrides of wrangler.toml `[vars]`.
    pub vars: BTreeMap<String, String>,
    /// Secrets, passed through an env file (as `wrangler secret put` would bind them).
    pub secrets: BTreeMap<String, String>,
    /// Objects written into the local R2 bucket before the edge starts: key → bytes.
    pub objects: BTreeMap<String, Vec<u8>>,
}

impl EdgeOptions {
    pub fn var(mut self, name: &str, value: &str) -> Self {
        self.vars.insert(name.to_owned(), value.to_owned());
        self
    }

    pub fn secret(mut self, name: &str, value: &str) -> Self {
        self.secrets.insert(name.to_owned(), value.to_owned());
        self
    }

    pub fn object(mut self, key: &str, bytes: Vec<u8>) -> Self {
        self.objects.insert(key.to_owned(), bytes);
        self
    }
}

/// The content type a test object is stored with, by its extension (as an upload would).
fn content_type_of(key: &str) -> Option<&'static str> {
    let ext = key.rsplit_once('.')?.1;
    Some(match ext {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "webm" => "video/webm",
        "mp4" => "video/mp4",
        _ => return None,
    })
}

/// Writes `bytes` to `course-media/<key>` in the local R2 state under `persist`.
fn put_object(root: &Path, persist: &Path, key: &str, bytes: &[u8]) {
    let file = persist.with_file_name(format!("upload-{}", key.replace('/', "_")));
    std::fs::write(&file, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", file.display()));
    let output = std::process::Command::new(root.join("node_modules/.bin/wrangler"))
        .current_dir(root)
        .args(["r2", "object", "put"])
        .arg(format!("course-media/{key}"))
        .arg("--file")
        .arg(&file)
        .args(
            content_type_of(key)
                .map(|t| ["--content-type", t])
                .into_iter()
                .flatten(),
        )
        .arg("--local")
        .arg("--persist-to")
        .arg(persist)
        .env("WRANGLER_SEND_METRICS", "false")
        .env("COURSE_EDGE_WORKER_FRESH", "1")
        .output()
        .unwrap_or_else(|e| panic!("running wrangler r2 object put: {e}"));
    assert!(
        output.status.success(),
        "wrangler r2 object put {key} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A running `wrangler dev` (workerd) with isolated local state.
pub struct Edge {
    pub port: u16,
    _state: tempfile::TempDir,
    group: Group,
}

impl Edge {
    /// Starts `wrangler dev` with `ORIGIN_URL` pointing at `origin_url`.
    pub async fn start(origin_url: &str, options: EdgeOptions) -> Self {
        Self::start_on(free_port(), origin_url, options).await
    }

    /// The same on a port chosen beforehand (the origin must know where to purge).
    pub async fn start_on(port: u16, origin_url: &str, options: EdgeOptions) -> Self {
        let root = repo_root();
        let wasm = root.join("worker/build/index_bg.wasm");
        assert!(
            wasm.exists(),
            "{} is missing: build the worker first (scripts/build-worker, or run scripts/test)",
            wasm.display()
        );
        let wrangler = root.join("node_modules/.bin/wrangler");
        assert!(wrangler.exists(), "wrangler is missing: run scripts/setup");

        let state = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let env_file = state.path().join("secrets.env");
        let secrets: String = options
            .secrets
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        std::fs::write(&env_file, secrets).unwrap_or_else(|e| panic!("writing secrets: {e}"));

        let persist = state.path().join("wrangler");
        for (key, bytes) in &options.objects {
            put_object(&root, &persist, key, bytes);
        }
        let mut command = std::process::Command::new(wrangler);
        command
            .current_dir(&root)
            .args([
                "dev",
                "--ip",
                "127.0.0.1",
                "--show-interactive-dev-session=false",
                // `/__scheduled` runs the cron handler (the derived/ sweeper) on demand.
                "--test-scheduled",
            ])
            .arg("--port")
            .arg(port.to_string())
            .arg("--inspector-port")
            .arg(free_port().to_string())
            .arg("--persist-to")
            .arg(&persist)
            .arg("--env-file")
            .arg(&env_file)
            .arg("--var")
            .arg(format!("ORIGIN_URL:{origin_url}"));
        for (name, value) in &options.vars {
            command.arg("--var").arg(format!("{name}:{value}"));
        }
        command
            .env("WRANGLER_SEND_METRICS", "false")
            .env("COURSE_EDGE_WORKER_FRESH", "1")
            .env("NO_COLOR", "1");
        let mut group = Group::spawn("wrangler", command, state.path());
        // Something else may answer on this port (another test's workerd took it between
        // free_port and wrangler's bind): only wrangler's own "Ready on" line for this
        // port says the edge under test is the one listening.
        let ready = printed_port(&mut group, "Ready on http://127.0.0.1:", "wrangler dev").await;
        assert_eq!(
            ready,
            port,
            "wrangler dev is listening on {ready}, not the port it was given\n{}",
            group.log_tail()
        );
        wait_until_answering(
            &format!("http://127.0.0.1:{port}/"),
            &mut group,
            "wrangler dev",
        )
        .await;
        Self {
            port,
            _state: state,
            group,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log(&self) -> String {
        self.group.log_tail()
    }

    /// Everything wrangler dev (and the worker's console) printed so far.
    pub fn full_log(&self) -> String {
        self.group.log_text()
    }

    /// Waits (up to 5 s) for the log to show `needle`: wrangler prints the worker's
    /// console lines a little after the request lines.
    pub async fn log_shows(&self, needle: &str) {
        let started = Instant::now();
        while !self.full_log().contains(needle) {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the edge never logged {needle:?}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Writes `course-media/<key>` into this edge's local R2 state while it runs (what a
    /// content team's upload does).
    pub fn put_object(&self, key: &str, bytes: &[u8]) {
        put_object(
            &repo_root(),
            &self._state.path().join("wrangler"),
            key,
            bytes,
        );
    }

    /// Reads `course-media/<key>` from this edge's local R2 state (while it runs).
    pub fn get_object(&self, key: &str) -> Option<Vec<u8>> {
        let root = repo_root();
        let output = std::process::Command::new(root.join("node_modules/.bin/wrangler"))
            .current_dir(&root)
            .args(["r2", "object", "get"])
            .arg(format!("course-media/{key}"))
            .args(["--local", "--pipe", "--persist-to"])
            .arg(self._state.path().join("wrangler"))
            .env("WRANGLER_SEND_METRICS", "false")
            .env("COURSE_EDGE_WORKER_FRESH", "1")
            .output()
            .ok()?;
        (output.status.success() && !output.stdout.is_empty()).then_some(output.stdout)
    }
}

/// `GET path` through the stack's edge with an `Accept` header (image negotiation).
pub async fn get_accepting(stack: &Stack, path: &str, accept: &str) -> reqwest::Response {
    client()
        .get(stack.edge.url(path))
        .header("accept", accept)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// The session keys every test stack shares between origin and edge (a test secret,
/// 32 bytes of 0x2a, base64url).
pub const TEST_SESSION_KEYS: &str = "test:KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio";

/// The origin's admin token in every test stack (as `tester`).
pub const TEST_ADMIN_TOKEN: &str = "e2e-admin-token-0123456789abcdef";
/// The secret the edge presents to the origin in every test stack (segments are
/// trusted only with it).
pub const TEST_EDGE_SECRET: &str = "e2e-edge-secret-0123456789abcdef";
/// The secret the origin presents on the edge's purge route in every test stack.
pub const TEST_PURGE_SECRET: &str = "e2e-purge-secret-0123456789abcdef";
/// The edge's upload token in every test stack (as `content`).
pub const TEST_UPLOAD_TOKEN: &str = "e2e-upload-token-0123456789abcdef";

/// An origin and an edge in front of it, sharing session keys, with the origin's
/// purges delivered to the edge. The edge lets the origin's `/test/*` diagnostics
/// through (they are internal by default).
pub struct Stack {
    pub origin: Origin,
    pub edge: Edge,
}

impl Stack {
    pub async fn start() -> Self {
        Self::start_with(EdgeOptions::default()).await
    }

    pub async fn start_with(options: EdgeOptions) -> Self {
        Self::start_with_origin_env(options, |_| BTreeMap::new()).await
    }

    /// A stack whose origin also gets `origin_env(edge_url)` (settings that name the edge,
    /// such as where to warm purged URLs).
    pub async fn start_with_origin_env(
        options: EdgeOptions,
        origin_env: impl FnOnce(&str) -> BTreeMap<String, String>,
    ) -> Self {
        let edge_port = free_port();
        let mut env = origin_env(&format!("http://127.0.0.1:{edge_port}"));
        for (name, value) in stack_origin_env(edge_port) {
            env.entry(name).or_insert(value);
        }
        let origin = Origin::start_with_env(env).await;
        let mut options = options;
        options
            .secrets
            .entry(String::from("SESSION_KEYS"))
            .or_insert_with(|| String::from(TEST_SESSION_KEYS));
        options
            .secrets
            .entry(String::from("EDGE_PURGE_SECRET"))
            .or_insert_with(|| String::from(TEST_PURGE_SECRET));
        options
            .secrets
            .entry(String::from("ORIGIN_SECRET"))
            .or_insert_with(|| String::from(TEST_EDGE_SECRET));
        options
            .secrets
            .entry(String::from("UPLOAD_TOKENS"))
            .or_insert_with(|| format!("content:{TEST_UPLOAD_TOKEN}"));
        options
            .vars
            .entry(String::from("INTERNAL_PATHS"))
            .or_insert_with(|| String::from("/metrics,/healthz,/readyz"));
        let edge = Edge::start_on(edge_port, &origin.url(), options).await;
        Self { origin, edge }
    }
}

/// What every test origin behind an edge on `edge_port` is started with: the shared
/// session keys, the admin token, where and how to deliver purges, the edge's secret.
pub fn stack_origin_env(edge_port: u16) -> BTreeMap<String, String> {
    [
        ("SESSION_KEYS", String::from(TEST_SESSION_KEYS)),
        ("ADMIN_TOKENS", format!("tester:{TEST_ADMIN_TOKEN}")),
        (
            "EDGE_PURGE_URL",
            format!("http://127.0.0.1:{edge_port}/__edge/purge"),
        ),
        ("EDGE_PURGE_SECRET", String::from(TEST_PURGE_SECRET)),
        ("EDGE_SECRET", String::from(TEST_EDGE_SECRET)),
        ("PURGE_RETRY_BASE_MS", String::from("100")),
        ("PURGE_RETRY_MAX_MS", String::from("1000")),
    ]
    .into_iter()
    .map(|(name, value)| (String::from(name), value))
    .collect()
}
