//! `scripts/rollout`: a gradual deployment of the worker with automatic rollback (see
//! `course_edge_origin::rollout`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use course_edge_origin::rollout::{
    self, Ending, Rollout,
    cloudflare::{Api, Wrangler},
    plan::{Settings, Target, parse_steps},
};

/// The step list as one value (`5,25,100`), not repeated flags.
type Steps = Vec<u32>;

#[derive(Parser)]
#[command(
    name = "scripts/rollout",
    about = "Moves traffic to a new worker version step by step (wrangler versions upload/deploy) and rolls back above the error-rate limit."
)]
struct Args {
    /// The new version's share per step, ascending, ending at 100.
    #[arg(long, default_value = "5,25,100", value_parser = parse_steps)]
    steps: Steps,
    /// How long each step soaks before its error rate is read (300s, 5m, 1500ms).
    #[arg(long, default_value = "300s", value_parser = rollout::parse_duration)]
    soak: std::time::Duration,
    /// Roll back above this error rate, in percent.
    #[arg(long, default_value_t = 1.0)]
    max_error_rate: f64,
    /// No verdict on fewer requests to the new version than this.
    #[arg(long, default_value_t = 500)]
    min_requests: u64,
    /// Extra soaks a step may wait for enough requests before the rollout stops (resumable).
    #[arg(long, default_value_t = 3)]
    max_waits: u32,
    /// Where the rollout's state is kept (resume by running again).
    #[arg(long, default_value = "target/rollout/state.json")]
    state: PathBuf,
    /// The worker's wrangler config.
    #[arg(long, default_value = "wrangler.toml")]
    config: PathBuf,
    /// The deployment message (shown in the dashboard).
    #[arg(long, default_value = "scripts/rollout")]
    message: String,
    /// Start a new rollout although the last one was rolled back.
    #[arg(long)]
    restart: bool,
    /// Move the origin canary (CANARY_PERCENT) instead of a new worker version, judged
    /// by this canary origin's Prometheus /metrics.
    #[arg(long, value_name = "METRICS_URL")]
    origin_canary: Option<String>,
    /// The wrangler to run.
    #[arg(long, env = "WRANGLER", default_value = "node_modules/.bin/wrangler")]
    wrangler: PathBuf,
    /// Cloudflare's API base (the analytics SQL API and the script list).
    #[arg(
        long,
        env = "CLOUDFLARE_API_BASE_URL",
        default_value = "https://api.cloudflare.com/client/v4"
    )]
    api_base: String,
    #[arg(long, env = "CLOUDFLARE_ACCOUNT_ID", hide_env_values = true)]
    account_id: String,
    /// An API token with Workers Scripts Edit (wrangler uploads and deploys with it)
    /// and Account Analytics Read.
    #[arg(long, env = "CLOUDFLARE_API_TOKEN", hide_env_values = true)]
    api_token: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    if !(0.0..100.0).contains(&args.max_error_rate) {
        eprintln!("rollout: --max-error-rate is a percentage in 0..100");
        return ExitCode::from(2);
    }
    let work_dir = args
        .state
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    if let Err(e) = std::fs::create_dir_all(&work_dir) {
        eprintln!("rollout: cannot create {}: {e}", work_dir.display());
        return ExitCode::from(2);
    }
    let client = match reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            eprintln!("rollout: {e}");
            return ExitCode::from(2);
        }
    };
    let rollout = Rollout {
        settings: Settings {
            steps: args.steps,
            soak_ms: args.soak.as_millis() as u64,
            max_error_rate: args.max_error_rate / 100.0,
            min_requests: args.min_requests,
            max_waits: args.max_waits,
        },
        wrangler: Wrangler {
            program: args.wrangler,
            config: args.config,
            work_dir,
        },
        api: Api {
            base: args.api_base.trim_end_matches('/').to_owned(),
            account: args.account_id,
            token: args.api_token,
            client,
        },
        state_path: args.state,
        message: args.message,
        restart: args.restart,
        target: match args.origin_canary {
            Some(metrics_url) => Target::OriginCanary { metrics_url },
            None => Target::Worker,
        },
    };
    match rollout.run().await {
        Ok(Ending::Done) => ExitCode::SUCCESS,
        Ok(Ending::RolledBack) => ExitCode::from(1),
        Ok(Ending::Stalled) => ExitCode::from(3),
        Err(e) => {
            eprintln!("rollout: {e}");
            ExitCode::from(2)
        }
    }
}
