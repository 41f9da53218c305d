//! `scripts/rollout`: moves traffic to a new worker version step by step (5 → 25 →
//! 100 % by default) with wrangler's gradual deployments, and rolls back when the new
//! version's error rate passes the limit.
//!
//! 1. Refuses when wrangler.toml carries a Durable Object migration the deployed
//!    worker has not applied: `versions upload` cannot take one (the first deploy after
//!    a migration must be `wrangler deploy`).
//! 2. Reads the version serving 100 % (`wrangler deployments status --json`); refuses a
//!    deployment that is already split.
//! 3. `wrangler versions upload`, reading the new id from wrangler's output file.
//! 4. Per step: `wrangler versions deploy <new>@N% <old>@(100-N)% --yes`, a soak, then
//!    the new version's answers and errors since the step began, from the outcomes the
//!    worker writes to Analytics Engine (`protocol::outcomes`: every 5xx it answers,
//!    its own JSON 503s included, which invocation analytics count as successes).
//!    Above the limit on at least the minimum of requests: `wrangler versions deploy
//!    <old>@100% --yes`, exit 1. Too few requests: soak again (at most `max_waits`
//!    times, then stop with exit 3, resumable) — unless the errors seen already exceed
//!    the limit on the minimum, which rolls back at once.
//!
//! With `--origin-canary <metrics URL>` it moves the origin canary instead: each step
//! uploads the current worker with `--var CANARY_PERCENT:<step>` and deploys it at
//! 100 %, and the error rate is the canary origin's 5xx share between two scrapes of
//! its Prometheus `/metrics` (`origin_http_requests_total`); a rollback deploys the
//! version that served before the rollout.
//!
//! The state is saved after every action; run it again to resume an interrupted
//! rollout (it first checks that the live deployment is what it left: a split changed
//! by hand is not undone). A rollback is saved as under way before it runs, so a failed
//! one is retried. After a rollback it refuses to start over until asked (`--restart`,
//! which also abandons a rollout in progress); after a finished rollout, a run starts
//! the next one. A failed read of the error rate is retried twice. Exit codes: 0 done, 1 rolled back, 2 refused or failed, 3 no verdict yet.

pub mod cloudflare;
pub mod plan;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use plan::{Action, Phase, Settings, State, Target, Verdict};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RolloutError {
    #[error("{command} failed: {detail}")]
    Wrangler { command: String, detail: String },
    #[error("reading {what} failed: {detail}")]
    Api { what: String, detail: String },
    #[error("{0}")]
    Refused(String),
    #[error("the state file {path}: {detail}")]
    State { path: PathBuf, detail: String },
}

/// Everything a run needs.
pub struct Rollout {
    pub settings: Settings,
    pub wrangler: cloudflare::Wrangler,
    pub api: cloudflare::Api,
    pub state_path: PathBuf,
    pub message: String,
    /// Start a new rollout even though the last one was rolled back.
    pub restart: bool,
    /// What a new rollout moves (a resumed one keeps its own).
    pub target: Target,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Done,
    RolledBack,
    Stalled,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Rollout {
    fn load(&self) -> Result<Option<State>, RolloutError> {
        match std::fs::read_to_string(&self.state_path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| RolloutError::State {
                    path: self.state_path.clone(),
                    detail: format!("unreadable ({e}); move it away to start over"),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RolloutError::State {
                path: self.state_path.clone(),
                detail: e.to_string(),
            }),
        }
    }

    fn save(&self, state: &State) -> Result<(), RolloutError> {
        let failed = |e: std::io::Error| RolloutError::State {
            path: self.state_path.clone(),
            detail: e.to_string(),
        };
        if let Some(dir) = self.state_path.parent() {
            std::fs::create_dir_all(dir).map_err(failed)?;
        }
        // Written whole, then renamed: a crash leaves the old state or the new one.
        let tmp = self.state_path.with_extension("tmp");
        let json = serde_json::to_string_pretty(state).unwrap_or_default();
        std::fs::write(&tmp, json).map_err(failed)?;
        std::fs::rename(&tmp, &self.state_path).map_err(failed)
    }

    /// Starts a rollout, or resumes the one in the state file.
    pub async fn run(&self) -> Result<Ending, RolloutError> {
        let mut state = match self.load()? {
            Some(mut state)
                if !self.restart
                    && !matches!(state.phase, Phase::Done | Phase::RolledBack { .. }) =>
            {
                println!(
                    "rollout: resuming {} → {} at step {} ({} %), from {}",
                    state.old,
                    state.new,
                    state.step + 1,
                    state.percent(),
                    self.state_path.display()
                );
                // Someone may have changed the deployment meanwhile (a rollback by hand):
                // resuming would undo it.
                let live = self.wrangler.deployed()?;
                if let Some(expected) = state.unexpected(&live) {
                    return Err(RolloutError::Refused(format!(
                        "the live deployment is {}, not what this rollout left ({expected}): it was changed outside the rollout. Start a new rollout from what is live with --restart.",
                        live.iter()
                            .map(|(id, p)| format!("{id}@{p}%"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    )));
                }
                state.resumed();
                state
            }
            Some(State {
                phase: Phase::RolledBack { rate_permille },
                new,
                ..
            }) if !self.restart => {
                return Err(RolloutError::Refused(format!(
                    "the last rollout ({new}) was rolled back at {:.1} % errors ({}); fix the cause, then start a new rollout with --restart",
                    f64::from(rate_permille) / 10.0,
                    self.state_path.display()
                )));
            }
            _ => self.start().await?,
        };
        loop {
            match state.next_action(&self.settings) {
                Action::Deploy(_) => {
                    if let Target::OriginCanary { .. } = state.target
                        && state.uploaded_step != Some(state.step)
                    {
                        // This step's version: the worker as it is, with the share set.
                        state.new = self.wrangler.upload(
                            &format!("{} (origin canary {} %)", self.message, state.percent()),
                            &[("CANARY_PERCENT", state.percent().to_string())],
                        )?;
                        state.uploaded_step = Some(state.step);
                        state.uploaded.push(state.new.clone());
                        self.save(&state)?;
                    }
                    let split = state.split();
                    let shown: Vec<String> =
                        split.iter().map(|(id, p)| format!("{id}@{p}%")).collect();
                    println!(
                        "rollout: step {}/{}: {} % to {} ({})",
                        state.step + 1,
                        state.steps.len(),
                        state.percent(),
                        state.new,
                        shown.join(" ")
                    );
                    self.wrangler
                        .deploy(&split, &format!("{} ({} %)", self.message, state.percent()))?;
                    if let Target::OriginCanary { metrics_url } = &state.target {
                        state.baseline =
                            Some(cloudflare::scrape(&self.api.client, metrics_url).await?);
                    }
                    state.deployed(now_ms());
                    self.save(&state)?;
                }
                Action::Soak { since_ms, until_ms } => {
                    let now = now_ms();
                    if until_ms > now {
                        println!(
                            "rollout: soaking {:.1} s at {} %",
                            (until_ms - now) as f64 / 1000.0,
                            state.percent()
                        );
                        tokio::time::sleep(Duration::from_millis(until_ms - now)).await;
                    }
                    let seconds = (now_ms().saturating_sub(since_ms)).div_ceil(1000);
                    let reading = self.reading(&state, seconds).await?;
                    let verdict = plan::judge(reading, &self.settings);
                    println!(
                        "rollout: {} % step: {} errors in {} requests over {seconds} s = {:.2} % (limit {:.2} % on at least {} requests): {}",
                        state.percent(),
                        reading.errors,
                        reading.requests,
                        reading.rate() * 100.0,
                        self.settings.max_error_rate * 100.0,
                        self.settings.min_requests,
                        match verdict {
                            Verdict::Healthy { .. } if state.step + 1 >= state.steps.len() =>
                                "healthy, done",
                            Verdict::Healthy { .. } => "healthy, next step",
                            Verdict::TooFew => "too few requests, soaking again",
                            Verdict::Failing { .. } => "failing, rolling back",
                        }
                    );
                    if let Err(stalled) = state.judged(verdict, &self.settings) {
                        println!(
                            "rollout: no verdict after {} extra soaks: too few requests reach the new version. The split stays as it is; run scripts/rollout again to resume, or roll back with `wrangler versions deploy {}@100% --yes`.",
                            stalled.waits, state.old
                        );
                        self.save(&state)?;
                        return Ok(Ending::Stalled);
                    }
                    self.save(&state)?;
                }
                Action::RollBack => {
                    self.wrangler.deploy(
                        &[(state.old.clone(), 100)],
                        &format!("rollback of {}: error rate above the limit", state.new),
                    )?;
                    state.rolled_back();
                    self.save(&state)?;
                    println!(
                        "rollout: rolled back: {} serves 100 % again; {} stays uploaded for inspection",
                        state.old, state.new
                    );
                    return Ok(Ending::RolledBack);
                }
                Action::Finished => {
                    if state.phase == Phase::Done {
                        println!("rollout: done: {} serves 100 %", state.new);
                    }
                    return Ok(match state.phase {
                        Phase::RolledBack { .. } => Ending::RolledBack,
                        _ => Ending::Done,
                    });
                }
            }
        }
    }

    /// The new version's answers and errors over the step so far. A failed read is
    /// tried again (1 s, then 2 s) before the rollout stops with the split as it is.
    async fn reading(&self, state: &State, seconds: u64) -> Result<plan::Reading, RolloutError> {
        let mut attempt = 0;
        loop {
            let read = match &state.target {
                Target::Worker => self.api.reading(&state.new, seconds).await,
                Target::OriginCanary { metrics_url } => {
                    cloudflare::scrape(&self.api.client, metrics_url)
                        .await
                        .map(|now| now.since(state.baseline.unwrap_or_default()))
                }
            };
            match read {
                Err(e) if attempt < 2 => {
                    attempt += 1;
                    println!("rollout: {e}; trying again");
                    tokio::time::sleep(Duration::from_secs(attempt)).await;
                }
                other => return other,
            }
        }
    }

    /// Checks, reads the current version, uploads the new one; the first state.
    async fn start(&self) -> Result<State, RolloutError> {
        let config = std::fs::read_to_string(&self.wrangler.config).map_err(|e| {
            RolloutError::Refused(format!(
                "cannot read {}: {e}",
                self.wrangler.config.display()
            ))
        })?;
        let (worker, tags) = cloudflare::config_of(&config).map_err(|e| {
            RolloutError::Refused(format!("{}: {e}", self.wrangler.config.display()))
        })?;
        let applied = self.api.applied_migration(&worker).await?;
        let pending = cloudflare::pending_migrations(&tags, applied.as_deref())
            .map_err(RolloutError::Refused)?;
        if !pending.is_empty() {
            return Err(RolloutError::Refused(format!(
                "{} carries Durable Object migration(s) {} that {worker} has not applied (applied: {}); `wrangler versions upload` cannot take a migration. Deploy it once with `wrangler deploy`, then run scripts/rollout for the next change.",
                self.wrangler.config.display(),
                pending.join(", "),
                applied.as_deref().unwrap_or("none")
            )));
        }
        let deployed = self.wrangler.deployed()?;
        let old = match deployed.as_slice() {
            [(id, p)] if (*p - 100.0).abs() < 0.001 => id.clone(),
            other => {
                return Err(RolloutError::Refused(format!(
                    "{worker} is not served by one version at 100 % ({other:?}): finish or roll back the split in progress first (`wrangler versions deploy <id>@100% --yes`)"
                )));
            }
        };
        let mut state = if let Target::OriginCanary { .. } = &self.target {
            println!(
                "rollout: {worker} serves {old} at 100 %; each step uploads it with CANARY_PERCENT set"
            );
            State::new(&worker, &old, "", &self.settings.steps)
        } else {
            println!("rollout: {worker} serves {old} at 100 %; uploading the new version");
            let new = self.wrangler.upload(&self.message, &[])?;
            println!("rollout: uploaded {new}");
            State::new(&worker, &old, &new, &self.settings.steps)
        };
        if let Target::OriginCanary { .. } = &self.target {
            state.uploaded.clear();
        }
        state.target = self.target.clone();
        self.save(&state)?;
        Ok(state)
    }
}

/// `300s`, `5m`, `1500ms`, or plain seconds.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let (number, scale) = if let Some(n) = raw.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = raw.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = raw.strip_suffix('m') {
        (n, 60_000)
    } else {
        (raw, 1000)
    };
    number
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|ms| *ms <= 24 * 3600 * 1000)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{raw:?} is not a duration like 300s, 5m or 1500ms (at most 24 h)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300s").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(
            parse_duration("1500ms").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        for bad in ["", "x", "-1s", "5h", "99999999m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
