//! `spawn_app`: the origin's router on a real loopback socket, one per test, each with
//! its own database (a temp SQLite file, or a fresh PostgreSQL database).

// Test helpers: a failed unwrap here is a failed test.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;

use course_edge_origin::storage::Store;
use course_edge_origin::{AppState, app};

pub enum Backend {
    Sqlite,
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
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
}

async fn serve(store: Store) -> (SocketAddr, reqwest::Client) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app(AppState::new(store));
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    (addr, reqwest::Client::new())
}

pub async fn spawn_app(_backend: Backend) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(dir.path()).await.unwrap();
    let (addr, client) = serve(store).await;
    TestApp {
        addr,
        client,
        _dir: Some(dir),
        _pg: None,
    }
}

/// The PostgreSQL server scripts/test found, or `None` when none runs here. A server
/// that answers on 5432 while the URL is unset is a broken run, not a skip.
pub fn postgres_url() -> Option<String> {
    match std::env::var("COURSE_TEST_POSTGRES_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            let up = std::net::TcpStream::connect("127.0.0.1:5432").is_ok();
            assert!(
                !up,
                "PostgreSQL answers on 127.0.0.1:5432 but COURSE_TEST_POSTGRES_URL is unset: run scripts/test"
            );
            eprintln!("no PostgreSQL here: its tests are skipped");
            None
        }
    }
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
    let admin_url = postgres_url()?;
    let name = format!(
        "course_edge_t{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
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

pub async fn spawn_postgres_app() -> Option<TestApp> {
    let (url, db) = fresh_postgres().await?;
    let store = Store::open_postgres(&url).await.unwrap();
    let (addr, client) = serve(store).await;
    Some(TestApp {
        addr,
        client,
        _dir: None,
        _pg: Some(db),
    })
}
