//! Origin integration tests: the real `app(state)` served on a loopback socket, against
//! SQLite always and PostgreSQL when it runs here.

mod support;

use support::{Backend, spawn_app};

#[tokio::test]
async fn health_and_readiness_answer_on_sqlite() {
    let app = spawn_app(Backend::Sqlite).await;
    let health: serde_json::Value = app.get("/healthz").await.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["store"], "sqlite");
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn readiness_answers_on_postgres() {
    let Some(app) = support::spawn_postgres_app().await else {
        return;
    };
    let ready: serde_json::Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["store"], "postgres");
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let app = spawn_app(Backend::Sqlite).await;
    let missing = app.get("/nope").await;
    assert_eq!(missing.status(), 404);
    let body: protocol::ErrorBody = missing.json().await.unwrap();
    assert_eq!(body.error.code, "not_found");

    let wrong = app
        .client
        .post(app.url("/healthz"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 405);
    let body: protocol::ErrorBody = wrong.json().await.unwrap();
    assert_eq!(body.error.code, "method_not_allowed");
}

#[tokio::test]
async fn migrations_are_idempotent_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let store = course_edge_origin::storage::Store::open_sqlite(dir.path())
            .await
            .unwrap();
        store.ping().await.unwrap();
    }
}
