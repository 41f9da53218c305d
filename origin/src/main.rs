//! `course-origin`: parse config, open the store, serve until SIGTERM/SIGINT.

use std::process::ExitCode;

use clap::Parser;
use course_edge_origin::config::Config;
use course_edge_origin::storage::Store;
use course_edge_origin::{AppState, app, telemetry};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    telemetry::init(&config.log_format);
    if let Err(why) = config.validate() {
        eprintln!("course-origin: {why}");
        return ExitCode::from(2);
    }
    tracing::info!(config = %config.describe(), "starting");
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            tracing::error!(error = %why, "origin stopped");
            eprintln!("course-origin: {why}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<(), String> {
    let store = match &config.database_url {
        Some(url) => Store::open_postgres(url).await,
        None => Store::open_sqlite(&config.data_dir).await,
    }
    .map_err(|e| format!("opening the store: {e}"))?;
    let listener = TcpListener::bind(config.listen).await.map_err(|e| {
        format!(
            "binding {}: {e} (is another origin running?)",
            config.listen
        )
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("reading the bound address: {e}"))?;
    tracing::info!(%addr, store = store.engine(), "listening");
    // The harness and scripts/dev read this line to learn the port.
    println!("origin: http://{addr}");
    axum::serve(listener, app(AppState::new(store)))
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
