//! Liveness (`/healthz`: the process answers) and readiness (`/readyz`: warmed, and
//! the store answers).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::ApiError;
use crate::AppState;
use crate::storage::Store;

pub(super) async fn healthz(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "status": "ok", "store": state.store.engine() }))
}

pub(super) async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if !state.is_ready() {
        return Err(ApiError::NotReady(String::from("warming the cache")));
    }
    state
        .store
        .ping()
        .await
        .map_err(|e| ApiError::NotReady(e.to_string()))?;
    Ok(Json(json!({
        "status": "ready",
        "store": state.store.engine(),
        "redis": state.caches.has_l2(),
    })))
}
