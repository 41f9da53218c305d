//! The rollout's decisions, pure: the steps, the verdict on a step's reading, and the
//! state that is saved after every action so an interrupted rollout resumes where it
//! stopped. The driver (`run`) performs what these ask for.

use serde::{Deserialize, Serialize};

/// How a rollout proceeds.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The new version's share at each step, ascending, ending at 100.
    pub steps: Vec<u32>,
    /// How long each step soaks before its error rate is read.
    pub soak_ms: u64,
    /// Roll back when the new version's error rate is above this (a fraction: 0.01).
    pub max_error_rate: f64,
    /// No verdict on fewer requests than this: the step soaks again.
    pub min_requests: u64,
    /// How many extra soaks a step may wait for enough requests before the rollout
    /// stops without a verdict (its state kept, to be resumed).
    pub max_waits: u32,
}

/// Checks the step list: ascending shares in 1..=100, ending at 100.
pub fn parse_steps(raw: &str) -> Result<Vec<u32>, String> {
    let steps: Vec<u32> = raw
        .split(',')
        .map(|s| {
            s.trim()
                .trim_end_matches('%')
                .parse::<u32>()
                .map_err(|_| format!("step {s:?} is not a whole percentage"))
        })
        .collect::<Result<_, _>>()?;
    if steps.iter().any(|s| !(1..=100).contains(s)) {
        return Err(String::from("every step is 1-100 %"));
    }
    if steps.windows(2).any(|w| w[0] >= w[1]) {
        return Err(String::from("steps must ascend"));
    }
    if steps.last() != Some(&100) {
        return Err(String::from("the last step must be 100 %"));
    }
    Ok(steps)
}

/// The new version's answers and errors over a step, as read from the analytics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Reading {
    pub requests: u64,
    pub errors: u64,
}

impl Reading {
    /// What happened between `earlier` and this reading of the same counters (a counter
    /// that went backwards — the process restarted — counts from zero).
    pub fn since(self, earlier: Reading) -> Reading {
        if self.requests < earlier.requests || self.errors < earlier.errors {
            return self;
        }
        Reading {
            requests: self.requests - earlier.requests,
            errors: self.errors - earlier.errors,
        }
    }

    pub fn rate(self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// The rate is within the limit on enough requests.
    Healthy { rate: f64 },
    /// Too few requests to judge.
    TooFew,
    /// Above the limit on enough requests.
    Failing { rate: f64 },
}

/// The verdict on a step's reading. Below the minimum of requests there is no verdict
/// — unless the errors already seen put the rate over the limit even if every request
/// still needed to reach the minimum succeeded (499 errors in 499 requests need not
/// wait for the 500th).
pub fn judge(reading: Reading, settings: &Settings) -> Verdict {
    let rate = reading.rate();
    if reading.requests < settings.min_requests {
        let best_case = reading.errors as f64 / settings.min_requests.max(1) as f64;
        return if best_case > settings.max_error_rate {
            Verdict::Failing { rate }
        } else {
            Verdict::TooFew
        };
    }
    if rate > settings.max_error_rate {
        Verdict::Failing { rate }
    } else {
        Verdict::Healthy { rate }
    }
}

/// Where a rollout is (saved after every action).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub worker: String,
    /// The version serving 100 % when the rollout started.
    pub old: String,
    /// The uploaded version being rolled out (for the origin canary: the current
    /// step's version, which differs from `old` only in `CANARY_PERCENT`).
    pub new: String,
    pub steps: Vec<u32>,
    /// The step being deployed or soaked.
    pub step: usize,
    pub phase: Phase,
    /// What is rolled out.
    #[serde(default)]
    pub target: Target,
    /// The origin canary: the step whose version `new` is (uploaded, maybe not yet
    /// deployed), and the canary origin's counters when the step was deployed.
    #[serde(default)]
    pub uploaded_step: Option<usize>,
    #[serde(default)]
    pub baseline: Option<Reading>,
    /// Every version this rollout uploaded (the live deployment may only hold these
    /// and `old`).
    #[serde(default)]
    pub uploaded: Vec<String>,
}

/// What a rollout moves traffic to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// A new worker version, by wrangler's gradual deployments; errors from the
    /// worker's Analytics Engine outcomes.
    #[default]
    Worker,
    /// The origin canary: each step deploys the current worker with `CANARY_PERCENT`
    /// set to the step's share; errors from the canary origin's Prometheus `/metrics`.
    OriginCanary { metrics_url: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// The step's split is about to be (or may have been) deployed: deploying it
    /// (again) is safe.
    Deploying,
    /// Deployed at `since_ms` (Unix ms); `waits` extra soaks so far.
    Soaking { since_ms: u64, waits: u32 },
    /// Everything at 100 % and healthy.
    Done,
    /// Judged failing: the old version is about to be (or may have been) deployed at
    /// 100 % again. Saved before the rollback runs, so a failed or interrupted rollback
    /// is retried, never forgotten.
    RollingBack { rate_permille: u32 },
    /// Rolled back to the old version.
    RolledBack { rate_permille: u32 },
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `wrangler versions deploy` with these `(version, percent)` pairs.
    Deploy(Vec<(String, u32)>),
    /// Wait until `until_ms`, then read the error rate since `since_ms`.
    Soak { since_ms: u64, until_ms: u64 },
    /// `wrangler versions deploy <old>@100%`.
    RollBack,
    /// Nothing left to do.
    Finished,
}

impl State {
    pub fn new(worker: &str, old: &str, new: &str, steps: &[u32]) -> Self {
        Self {
            worker: worker.to_owned(),
            old: old.to_owned(),
            new: new.to_owned(),
            steps: steps.to_vec(),
            step: 0,
            phase: Phase::Deploying,
            target: Target::Worker,
            uploaded_step: None,
            baseline: None,
            uploaded: if new.is_empty() {
                Vec::new()
            } else {
                vec![new.to_owned()]
            },
        }
    }

    /// Whether `live` (the deployment's `(version, percent)` pairs) is what this state
    /// left: while soaking, exactly the step's split; otherwise only versions of this
    /// rollout. `None` when it is; else what was expected, for the message.
    pub fn unexpected(&self, live: &[(String, f64)]) -> Option<String> {
        let ours = |id: &String| *id == self.old || self.uploaded.contains(id);
        match self.phase {
            Phase::Soaking { .. } => {
                let split = self.split();
                let same = split.len() == live.len()
                    && split.iter().all(|(id, p)| {
                        live.iter()
                            .any(|(l, lp)| l == id && (f64::from(*p) - lp).abs() < 0.001)
                    });
                (!same).then(|| {
                    split
                        .iter()
                        .map(|(id, p)| format!("{id}@{p}%"))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
            }
            _ => (!live.iter().all(|(id, _)| ours(id)))
                .then(|| format!("only {} and versions this rollout uploaded", self.old)),
        }
    }

    /// Resuming: a step that stalled waiting for requests gets its waits again.
    pub fn resumed(&mut self) {
        if let Phase::Soaking { since_ms, .. } = self.phase {
            self.phase = Phase::Soaking { since_ms, waits: 0 };
        }
    }

    pub fn percent(&self) -> u32 {
        self.steps.get(self.step).copied().unwrap_or(100)
    }

    /// The split of the current step. The origin canary's step version takes all the
    /// worker's traffic (its share is a var inside it).
    pub fn split(&self) -> Vec<(String, u32)> {
        let p = self.percent();
        if p >= 100 || matches!(self.target, Target::OriginCanary { .. }) {
            vec![(self.new.clone(), 100)]
        } else {
            vec![(self.new.clone(), p), (self.old.clone(), 100 - p)]
        }
    }

    pub fn next_action(&self, settings: &Settings) -> Action {
        match self.phase {
            Phase::Deploying => Action::Deploy(self.split()),
            Phase::Soaking { since_ms, waits } => Action::Soak {
                since_ms,
                until_ms: since_ms + settings.soak_ms * (u64::from(waits) + 1),
            },
            Phase::RollingBack { .. } => Action::RollBack,
            Phase::Done | Phase::RolledBack { .. } => Action::Finished,
        }
    }

    /// The rollback was deployed.
    pub fn rolled_back(&mut self) {
        if let Phase::RollingBack { rate_permille } = self.phase {
            self.phase = Phase::RolledBack { rate_permille };
        }
    }

    /// The step's split was deployed at `now_ms`.
    pub fn deployed(&mut self, now_ms: u64) {
        self.phase = Phase::Soaking {
            since_ms: now_ms,
            waits: 0,
        };
    }

    /// Applies the verdict on the soaked step. `Err` when the step waited its last time
    /// for enough requests (the rollout stops, resumable).
    pub fn judged(&mut self, verdict: Verdict, settings: &Settings) -> Result<(), Stalled> {
        let Phase::Soaking { since_ms, waits } = self.phase else {
            return Ok(());
        };
        match verdict {
            Verdict::Healthy { .. } if self.step + 1 >= self.steps.len() => {
                self.phase = Phase::Done;
            }
            Verdict::Healthy { .. } => {
                self.step += 1;
                self.phase = Phase::Deploying;
            }
            Verdict::Failing { rate } => {
                self.phase = Phase::RollingBack {
                    rate_permille: (rate * 1000.0).round().clamp(0.0, 1000.0) as u32,
                };
            }
            Verdict::TooFew if waits >= settings.max_waits => return Err(Stalled { waits }),
            Verdict::TooFew => {
                self.phase = Phase::Soaking {
                    since_ms,
                    waits: waits + 1,
                };
            }
        }
        Ok(())
    }
}

/// A step never got enough requests for a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stalled {
    pub waits: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            steps: vec![5, 25, 100],
            soak_ms: 1000,
            max_error_rate: 0.01,
            min_requests: 100,
            max_waits: 2,
        }
    }

    #[test]
    fn steps_are_checked() {
        assert_eq!(parse_steps("5,25,100").unwrap(), vec![5, 25, 100]);
        assert_eq!(parse_steps("5%, 25%, 100%").unwrap(), vec![5, 25, 100]);
        assert_eq!(parse_steps("100").unwrap(), vec![100]);
        for bad in ["", "5,25", "25,5,100", "5,5,100", "0,100", "5,101", "x,100"] {
            assert!(parse_steps(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn verdicts_need_enough_requests_and_roll_back_only_above_the_limit() {
        let s = settings();
        let at = |requests, errors| judge(Reading { requests, errors }, &s);
        assert_eq!(at(99, 0), Verdict::TooFew);
        assert_eq!(at(99, 1), Verdict::TooFew);
        assert_eq!(at(0, 0), Verdict::TooFew);
        // Too few requests, but already too many errors for any outcome of the rest:
        // 2 errors can never be ≤ 1 % of the 100 required.
        assert_eq!(at(99, 99), Verdict::Failing { rate: 1.0 });
        assert_eq!(at(40, 2), Verdict::Failing { rate: 0.05 });
        assert_eq!(at(1000, 10), Verdict::Healthy { rate: 0.01 });
        assert_eq!(at(1000, 11), Verdict::Failing { rate: 0.011 });
        assert_eq!(at(1000, 15), Verdict::Failing { rate: 0.015 });
        assert_eq!(at(100, 0), Verdict::Healthy { rate: 0.0 });
    }

    #[test]
    fn a_healthy_rollout_goes_5_25_100_and_finishes() {
        let s = settings();
        let mut state = State::new("w", "old", "new", &s.steps);
        let mut deployed = Vec::new();
        let mut now = 0;
        loop {
            match state.next_action(&s) {
                Action::Deploy(split) => {
                    deployed.push(split);
                    state.deployed(now);
                }
                Action::Soak { since_ms, until_ms } => {
                    assert_eq!(until_ms, since_ms + 1000);
                    now = until_ms;
                    state.judged(Verdict::Healthy { rate: 0.0 }, &s).unwrap();
                }
                Action::RollBack => panic!("a healthy rollout rolled back"),
                Action::Finished => break,
            }
        }
        assert_eq!(
            deployed,
            vec![
                vec![(String::from("new"), 5), (String::from("old"), 95)],
                vec![(String::from("new"), 25), (String::from("old"), 75)],
                vec![(String::from("new"), 100)],
            ]
        );
        assert_eq!(state.phase, Phase::Done);
    }

    #[test]
    fn failing_rolls_back_and_finishes() {
        let s = settings();
        let mut state = State::new("w", "old", "new", &s.steps);
        state.deployed(0);
        state.judged(Verdict::Healthy { rate: 0.0 }, &s).unwrap();
        state.deployed(10);
        state.judged(Verdict::Failing { rate: 0.015 }, &s).unwrap();
        // Saved as rolling back first: a rollback that fails is retried on resume.
        assert_eq!(state.phase, Phase::RollingBack { rate_permille: 15 });
        assert_eq!(state.next_action(&s), Action::RollBack);
        state.rolled_back();
        assert_eq!(state.phase, Phase::RolledBack { rate_permille: 15 });
        assert_eq!(state.step, 1);
        assert_eq!(state.next_action(&s), Action::Finished);
    }

    #[test]
    fn too_few_requests_soak_again_then_stall() {
        let s = settings();
        let mut state = State::new("w", "old", "new", &s.steps);
        state.deployed(0);
        state.judged(Verdict::TooFew, &s).unwrap();
        assert_eq!(
            state.next_action(&s),
            Action::Soak {
                since_ms: 0,
                until_ms: 2000
            }
        );
        state.judged(Verdict::TooFew, &s).unwrap();
        assert_eq!(state.judged(Verdict::TooFew, &s), Err(Stalled { waits: 2 }));
        // The state is unchanged by the stall: a resumed run soaks on and decides.
        state.judged(Verdict::Healthy { rate: 0.0 }, &s).unwrap();
        assert_eq!(state.step, 1);
    }

    #[test]
    fn the_origin_canary_deploys_each_step_whole_and_readings_are_deltas() {
        let mut state = State::new("w", "old", "v5", &[5, 25, 100]);
        state.target = Target::OriginCanary {
            metrics_url: String::from("http://canary/metrics"),
        };
        assert_eq!(state.split(), vec![(String::from("v5"), 100)]);
        let before = Reading {
            requests: 1000,
            errors: 10,
        };
        let after = Reading {
            requests: 3000,
            errors: 40,
        };
        assert_eq!(
            after.since(before),
            Reading {
                requests: 2000,
                errors: 30
            }
        );
        // A restarted canary origin starts its counters again.
        let restarted = Reading {
            requests: 50,
            errors: 1,
        };
        assert_eq!(restarted.since(after), restarted);
    }

    #[test]
    fn a_state_without_the_newer_fields_reads_as_a_worker_rollout() {
        let json = r#"{"worker":"w","old":"o","new":"n","steps":[5,100],"step":0,"phase":{"phase":"deploying"}}"#;
        let state: State = serde_json::from_str(json).unwrap();
        assert_eq!(state.target, Target::Worker);
        assert_eq!(state.baseline, None);
    }

    #[test]
    fn a_live_deployment_someone_else_changed_is_noticed() {
        let s = settings();
        let mut state = State::new("w", "old", "new", &s.steps);
        let live = |pairs: &[(&str, f64)]| -> Vec<(String, f64)> {
            pairs.iter().map(|(i, p)| (i.to_string(), *p)).collect()
        };
        // Deploying step 1: the old version alone, or the step's split, are expected.
        assert_eq!(state.unexpected(&live(&[("old", 100.0)])), None);
        assert_eq!(
            state.unexpected(&live(&[("new", 5.0), ("old", 95.0)])),
            None
        );
        assert!(state.unexpected(&live(&[("other", 100.0)])).is_some());
        state.deployed(0);
        assert_eq!(
            state.unexpected(&live(&[("new", 5.0), ("old", 95.0)])),
            None
        );
        // Rolled back by hand while soaking: refused on resume.
        assert!(state.unexpected(&live(&[("old", 100.0)])).is_some());
        assert!(
            state
                .unexpected(&live(&[("new", 25.0), ("old", 75.0)]))
                .is_some()
        );
    }

    #[test]
    fn a_resumed_stall_gets_its_waits_again() {
        let s = settings();
        let mut state = State::new("w", "old", "new", &s.steps);
        state.deployed(7);
        for _ in 0..s.max_waits {
            state.judged(Verdict::TooFew, &s).unwrap();
        }
        assert!(state.judged(Verdict::TooFew, &s).is_err());
        state.resumed();
        assert_eq!(
            state.phase,
            Phase::Soaking {
                since_ms: 7,
                waits: 0
            }
        );
    }

    #[test]
    fn the_state_round_trips_through_json() {
        let mut state = State::new("w", "old", "new", &[5, 100]);
        state.deployed(42);
        let json = serde_json::to_string(&state).unwrap();
        assert!(json.contains("\"phase\":\"soaking\""), "{json}");
        assert_eq!(serde_json::from_str::<State>(&json).unwrap(), state);
    }
}
