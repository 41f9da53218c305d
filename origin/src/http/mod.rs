//! The HTTP surface. Handlers are thin: admit, parse, call `service`, map the result.
//! Logging and metrics happen in layers, not at each error site.

mod admin;
mod api;
mod error;
mod health;
pub mod metrics;
mod sessions;
mod site;
mod testing;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{MethodRouter, get, post, put};
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

pub use api::{DEGRADED, ORIGIN_CACHE};
pub use error::ApiError;

use crate::AppState;

/// Where a request came from, as far as the edge's shared secret tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// It carries the edge's secret.
    Edge,
    /// It does not, and the secret is configured: a direct caller.
    Direct,
    /// No secret configured (development): trust what is sent.
    Unchecked,
}

/// Checks `x-edge-secret` against `EDGE_SECRET` (SHA-256 digests, constant time).
pub(crate) fn via(settings: &crate::config::Settings, headers: &axum::http::HeaderMap) -> Via {
    if settings.edge_secret.is_none() {
        return Via::Unchecked;
    }
    let presented = headers
        .get(protocol::headers::EDGE_SECRET)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if protocol::auth::secret_matches(presented, settings.edge_secret.as_deref()) {
        Via::Edge
    } else {
        Via::Direct
    }
}

/// Largest request body any route accepts.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

pub fn app(state: AppState) -> Router {
    // Install the recorder before the first request records anything.
    let _ = metrics::handle();
    // Each route gets its metric handles registered once, with its path as the label.
    let tracked = |path: &'static str, method_router: MethodRouter<AppState>| {
        method_router.layer(middleware::from_fn_with_state(
            metrics::RouteMetrics::new(path),
            metrics::track,
        ))
    };
    let router = Router::new()
        .route("/api/catalog", tracked("/api/catalog", get(api::catalog)))
        .route(
            "/api/courses/{slug}",
            tracked("/api/courses/{slug}", get(api::course)),
        )
        .route("/api/search", tracked("/api/search", get(api::search)))
        .route(
            "/api/videos/{id}",
            tracked("/api/videos/{id}", get(api::video)),
        )
        .route("/api/feed", tracked("/api/feed", get(api::feed)))
        .route("/", tracked("/", get(site::home)))
        .route(
            "/courses/{slug}",
            tracked("/courses/{slug}", get(site::course)),
        )
        .route(
            "/learn/{slug}/{position}",
            tracked("/learn/{slug}/{position}", get(site::lesson)),
        )
        .route(
            "/signin",
            tracked("/signin", get(site::sign_in_form).post(site::sign_in)),
        )
        .route("/signout", tracked("/signout", post(site::sign_out)))
        .route(
            "/api/sessions",
            tracked("/api/sessions", post(sessions::login)),
        )
        .route(
            "/api/sessions/current",
            tracked(
                "/api/sessions/current",
                get(sessions::current).delete(sessions::logout),
            ),
        )
        .merge(
            Router::new()
                .route(
                    "/admin/courses/{slug}",
                    tracked("/admin/courses/{slug}", put(admin::put_course)),
                )
                .route(
                    "/admin/videos/{id}",
                    tracked("/admin/videos/{id}", put(admin::put_video)),
                )
                .route(
                    "/admin/feeds/rebuild",
                    tracked("/admin/feeds/rebuild", post(admin::rebuild_feeds)),
                )
                .route(
                    "/admin/invalidate",
                    tracked("/admin/invalidate", post(admin::invalidate)),
                )
                .route(
                    "/admin/purges/{id}",
                    tracked("/admin/purges/{id}", get(admin::purge)),
                )
                .layer(DefaultBodyLimit::max(
                    crate::domain::admin::MAX_ADMIN_BODY_BYTES,
                )),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::render))
        .merge(if state.settings.test_routes {
            Router::new()
                .route("/test/echo", get(testing::echo))
                .route("/test/seen", get(testing::seen_count))
        } else {
            Router::new()
        })
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    // Per-request spans only when asked for (RUST_LOG=tower_http=debug): measured, the
    // layer costs about a fifth of the cached hot path's throughput even when its
    // spans are filtered out. Failures are logged where they are mapped regardless.
    let router = if tracing::enabled!(target: "tower_http::trace", Level::DEBUG) {
        router.layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::DEBUG))
                .on_response(DefaultOnResponse::new().level(Level::DEBUG)),
        )
    } else {
        router
    };
    router.with_state(state)
}
