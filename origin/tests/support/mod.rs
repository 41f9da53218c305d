//! `spawn_app`: the origin's real router on a loopback socket, one per test, each with
//! its own database (a temp SQLite file, or a fresh PostgreSQL database) and, for the
//! Redis backend, its own Redis key prefix. Demo content is loaded through the same
//! `load_demo` the seed command uses, and the cache is warmed before the app is handed
//! to the test (as `/readyz` would wait for).
//!
//! PostgreSQL and Redis come from `DATABASE_URL` / `REDIS_URL` (scripts/test sets them
//! when the servers answer). A server that answers on its port while its URL is unset is
//! a broken run and fails, rather than skipping silently.

// Test helpers: a failed unwrap here is a failed test.
#![allow(dead_code, clippy::unwrap_used)]

pub mod cloudflare;

use std::net::SocketAddr;
use std::sync::Arc;

use course_edge_origin::cache::RedisL2;
use course_edge_origin::config::Settings;
use course_edge_origin::storage::demo::DemoData;
use course_edge_origin::storage::{SqlStore, Store};
use course_edge_origin::{AppState, app, ephemeral_session_keys, warm};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    /// SQLite store with Redis as the shared second level and session cache.
    SqliteRedis,
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub state: AppState,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<PgDatabase>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// GET with one request header.
    pub async fn get_with(&self, path: &str, name: &str, value: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header(name, value)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    /// Store queries so far.
    pub fn queries(&self) -> u64 {
        self.state.store.queries()
    }
}

pub fn demo() -> DemoData {
    DemoData::from_json(include_bytes!("../../demo/catalog.json")).unwrap()
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// The server URL from `var`, `None` when no server runs here. Fails the test when a
/// server answers on `port` but the URL is unset.
pub fn service_url(var: &str, port: u16, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                !port_open(port),
                "{what} answers on 127.0.0.1:{port} but {var} is unset, so its tests would not run: use scripts/test"
            );
            eprintln!("no {what} here: this test is skipped");
            None
        }
    }
}

/// The admin token every test app accepts (as `tester`).
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

/// Default settings plus the test admin token.
pub fn test_settings() -> Settings {
    Settings {
        admin_tokens: protocol::auth::Tokens::parse(
            "ADMIN_TOKENS",
            &format!("tester:{ADMIN_TOKEN}"),
        )
        .unwrap_or_else(|e| panic!("{e}")),
        ..Settings::default()
    }
}

pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, test_settings()).await
}

/// Starts an app on `backend`, or `None` when that backend's server is not running.
pub async fn spawn_app_with(backend: Backend, settings: Settings) -> Option<TestApp> {
    let mut dir = None;
    let mut pg = None;
    let mut redis = None;
    let store: Arc<dyn Store> = match backend {
        Backend::Sqlite | Backend::SqliteRedis => {
            let tmp = tempfile::tempdir().unwrap();
            let store = SqlStore::open_sqlite(tmp.path()).await.unwrap();
            dir = Some(tmp);
            Arc::new(store)
        }
        Backend::Postgres => {
            let (url, db) = fresh_postgres().await?;
            pg = Some(db);
            Arc::new(SqlStore::open_postgres(&url).await.unwrap())
        }
    };
    if backend == Backend::SqliteRedis {
        let url = service_url("REDIS_URL", 6379, "Redis")?;
        let prefix = format!("ce-test:{}", unique());
        redis = Some(RedisL2::connect(&url, &prefix).await.unwrap());
    }
    store.load_demo(&demo(), 1_700_000_000).await.unwrap();
    let state = AppState::new(store, redis, ephemeral_session_keys(), settings);
    Some(serve(state, dir, pg).await)
}

/// Warms, starts the invalidator, and serves `state` on a loopback port.
pub async fn serve(
    state: AppState,
    dir: Option<tempfile::TempDir>,
    pg: Option<PgDatabase>,
) -> TestApp {
    state.invalidator.spawn();
    warm::warm(&state).await.unwrap();
    state.mark_ready();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app(state.clone());
    tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, service).await.unwrap();
    });
    TestApp {
        addr,
        client: reqwest::Client::new(),
        state,
        _dir: dir,
        _pg: pg,
    }
}

pub fn unique() -> String {
    format!(
        "{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// A database created for one test and dropped after it.
pub struct PgDatabase {
    admin_url: String,
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs outside the test's runtime: use a small one of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

pub async fn fresh_postgres() -> Option<(String, PgDatabase)> {
    use sqlx::Connection;
    let admin_url = service_url("DATABASE_URL", 5432, "PostgreSQL")?;
    let name = format!("course_edge_t{}", unique());
    let mut conn = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .unwrap_or(&admin_url);
    Some((format!("{base}/{name}"), PgDatabase { admin_url, name }))
}

/// Runs one async test body against every backend, as `<name>::{sqlite,postgres,redis}`.
#[macro_export]
macro_rules! on_every_backend {
    ($name:ident, $body:ident) => {
        mod $name {
            use super::support::{Backend, spawn_app};

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$body(spawn_app(Backend::Sqlite).await.unwrap()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(app) = spawn_app(Backend::Postgres).await {
                    super::$body(app).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                if let Some(app) = spawn_app(Backend::SqliteRedis).await {
                    super::$body(app).await;
                }
            }
        }
    };
}
