//! course-edge origin: the small native service behind the edge.
//!
//! `app(state) -> Router` builds the whole HTTP surface without a socket, so the
//! integration tests in `origin/tests` drive it exactly as `main` serves it.
//!
//! | module | role |
//! |---|---|
//! | [`config`] | env + flags (clap) into one validated [`config::Config`] |
//! | [`telemetry`] | tracing subscriber set-up |
//! | [`storage`] | the [`storage::Store`]: SQLite by default, PostgreSQL by URL |
//! | [`http`] | routes, handlers, the one error type mapped to the `protocol` JSON |

pub mod config;
pub mod http;
pub mod storage;
pub mod telemetry;

use std::sync::Arc;

pub use http::app;

/// Everything a handler may reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<storage::Store>,
}

impl AppState {
    pub fn new(store: storage::Store) -> Self {
        Self {
            store: Arc::new(store),
        }
    }
}
