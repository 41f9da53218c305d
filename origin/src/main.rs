//! `course-origin`: parse config, open the store, warm the cache, serve until
//! SIGTERM/SIGINT. `course-origin seed --file F` loads demo content and exits.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use course_edge_origin::cache::RedisL2;
use course_edge_origin::config::{Command, Config};
use course_edge_origin::invalidation::plan::CallLimits;
use course_edge_origin::invalidation::{Bus, CloudflareTarget, EdgeTarget, Targets};
use course_edge_origin::storage::demo::DemoData;
use course_edge_origin::storage::{SqlStore, Store};
use course_edge_origin::{AppState, app, ephemeral_session_keys, telemetry, warm};
use protocol::SessionKeys;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    telemetry::init(&config.log_format);
    if let Err(why) = config.validate() {
        eprintln!("course-origin: {why}");
        return ExitCode::from(2);
    }
    let outcome = match &config.command {
        Some(Command::Seed { file }) => seed(&config, file).await,
        Some(Command::Serve) | None => serve(config).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            tracing::error!(error = %why, "origin stopped");
            eprintln!("course-origin: {why}");
            ExitCode::FAILURE
        }
    }
}

async fn open_store(config: &Config) -> Result<SqlStore, String> {
    match &config.database_url {
        Some(url) => SqlStore::open_postgres(url).await,
        None => SqlStore::open_sqlite(&config.data_dir).await,
    }
    .map_err(|e| format!("opening the store: {e}"))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn seed(config: &Config, file: &std::path::Path) -> Result<(), String> {
    let bytes = std::fs::read(file).map_err(|e| format!("reading {}: {e}", file.display()))?;
    let demo = DemoData::from_json(&bytes)?;
    let store = open_store(config).await?;
    store
        .load_demo(&demo, unix_now())
        .await
        .map_err(|e| format!("loading demo content: {e}"))?;
    println!(
        "seeded {} courses, {} videos, {} users into {}",
        demo.courses.len(),
        demo.videos.len(),
        demo.users.len(),
        store.engine()
    );
    Ok(())
}

async fn serve(config: Config) -> Result<(), String> {
    tracing::info!(config = %config.describe(), "starting");
    let store = open_store(&config).await?;
    let redis = match &config.redis_url {
        Some(url) => Some(
            RedisL2::connect(url, &config.redis_prefix)
                .await
                .map_err(|e| {
                    format!("connecting to Redis: {e} (unset REDIS_URL to run without it)")
                })?,
        ),
        None => None,
    };
    let keys = match &config.session_keys {
        Some(spec) => SessionKeys::parse(spec).map_err(|e| format!("SESSION_KEYS: {e}"))?,
        None => {
            tracing::warn!(
                "SESSION_KEYS is unset: using an ephemeral key; sessions end on restart and the edge cannot verify them"
            );
            ephemeral_session_keys()
        }
    };
    let engine = store.engine();
    let bus = match (&config.nats_url, &config.redis_url) {
        (Some(url), _) => Bus::nats(url, &config.purge_subject)
            .await
            .map_err(|e| format!("{e} (unset NATS_URL to use Redis pub/sub or run alone)"))?,
        (None, Some(url)) => Bus::redis(
            url,
            &format!("{}:{}", config.redis_prefix, config.purge_subject),
        )?,
        (None, None) => {
            if config.database_url.is_some() {
                tracing::warn!(
                    "DATABASE_URL is shared but neither NATS_URL nor REDIS_URL is set: other origin instances will not hear of purges and keep serving their in-process copies until TTL"
                );
            }
            Bus::Local
        }
    };
    let client = Targets::client();
    let targets = Targets {
        edge: match (&config.edge_purge_url, &config.edge_purge_secret) {
            (Some(url), Some(secret)) => Some(EdgeTarget {
                url: url.clone(),
                secret: secret.clone(),
                client: client.clone(),
            }),
            _ => None,
        },
        cloudflare: match (&config.cf_zone_id, &config.cf_api_token) {
            (Some(zone), Some(token)) => Some(CloudflareTarget {
                base: config.cf_api_base.clone(),
                zone: zone.clone(),
                token: token.clone(),
                public_base: config.public_base_url.clone().unwrap_or_default(),
                limits: CallLimits {
                    max_items: config.cf_purge_max_items,
                    max_urls: config.cf_purge_max_urls,
                },
                client,
                pace: CloudflareTarget::pace(config.cf_purge_per_minute, config.cf_purge_burst),
            }),
            _ => None,
        },
    };
    let state = AppState::new(Arc::new(store), redis, keys, config.settings()).with_invalidation(
        bus,
        targets,
        config.delivery(),
    );
    state.invalidator.spawn();
    let listener = TcpListener::bind(config.listen).await.map_err(|e| {
        format!(
            "binding {}: {e} (is another origin running?)",
            config.listen
        )
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("reading the bound address: {e}"))?;
    tracing::info!(%addr, store = engine, "listening; warming the cache before ready");
    // The harness and scripts/dev read this line to learn the port.
    println!("origin: http://{addr}");
    tokio::spawn(warm::warm_then_ready(state.clone()));
    // The peer address feeds the per-IP login limit when no edge header names the client.
    let service = app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| format!("serving: {e}"))?;
    tracing::info!("shut down cleanly");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        // Without a SIGTERM handler we still stop on Ctrl-C.
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    tracing::info!("shutdown signal received; draining");
}
