//! What the rollout reads and runs against Cloudflare: wrangler's `versions` and
//! `deployments` commands (their machine-readable output file), the Workers API's
//! script list (the applied Durable Object migration tag), and the Analytics Engine SQL
//! API (the new version's outcomes). Parsing is pure and tested; running is thin.

use std::path::{Path, PathBuf};
use std::process::Command;

use protocol::outcomes;
use serde::Deserialize;

use super::RolloutError;
use super::plan::Reading;

/// The `version_id` of the last `version-upload` entry in wrangler's output file
/// (ND-JSON, one entry per line; `WRANGLER_OUTPUT_FILE_PATH`).
pub fn uploaded_version(ndjson: &str) -> Option<String> {
    ndjson
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|entry| entry["type"] == "version-upload")
        .filter_map(|entry| entry["version_id"].as_str().map(str::to_owned))
        .rfind(|id| outcomes::is_version_id(id))
}

/// The versions and shares of `wrangler deployments status --json`.
pub fn deployed_versions(json: &str) -> Result<Vec<(String, f64)>, String> {
    #[derive(Deserialize)]
    struct Status {
        versions: Vec<Share>,
    }
    #[derive(Deserialize)]
    struct Share {
        version_id: String,
        percentage: f64,
    }
    // wrangler may print a banner before the JSON: read from the first `{`.
    let start = json
        .find('{')
        .ok_or_else(|| format!("no JSON in: {:.200}", json))?;
    let status: Status = serde_json::from_str(&json[start..])
        .map_err(|e| format!("unexpected deployments status JSON ({e}): {:.200}", json))?;
    Ok(status
        .versions
        .into_iter()
        .map(|s| (s.version_id, s.percentage))
        .collect())
}

/// The `[[migrations]]` tags of a wrangler.toml, in order, and the worker's name.
pub fn config_of(toml_text: &str) -> Result<(String, Vec<String>), String> {
    #[derive(Deserialize)]
    struct Config {
        name: String,
        #[serde(default)]
        migrations: Vec<Migration>,
    }
    #[derive(Deserialize)]
    struct Migration {
        tag: String,
    }
    let config: Config = toml::from_str(toml_text).map_err(|e| e.to_string())?;
    Ok((
        config.name,
        config.migrations.into_iter().map(|m| m.tag).collect(),
    ))
}

/// The migrations the config carries that the deployed worker has not applied (the
/// tags after `applied`; all of them when nothing is applied yet).
pub fn pending_migrations(tags: &[String], applied: Option<&str>) -> Result<Vec<String>, String> {
    match applied {
        None => Ok(tags.to_vec()),
        Some(applied) => match tags.iter().position(|t| t == applied) {
            Some(at) => Ok(tags[at + 1..].to_vec()),
            None => Err(format!(
                "the deployed worker's migration tag {applied:?} is not in the config's [[migrations]] ({})",
                tags.join(", ")
            )),
        },
    }
}

/// The applied migration tag of `worker` in a Workers API script list
/// (`GET /accounts/{account}/workers/scripts`).
pub fn applied_migration(json: &str, worker: &str) -> Result<Option<String>, String> {
    #[derive(Deserialize)]
    struct List {
        success: bool,
        #[serde(default)]
        result: Vec<Script>,
        #[serde(default)]
        errors: Vec<serde_json::Value>,
    }
    #[derive(Deserialize)]
    struct Script {
        id: String,
        #[serde(default)]
        migration_tag: Option<String>,
    }
    let list: List =
        serde_json::from_str(json).map_err(|e| format!("unexpected script list ({e})"))?;
    if !list.success {
        return Err(format!("the Workers API refused: {:?}", list.errors));
    }
    Ok(list
        .result
        .into_iter()
        .find(|s| s.id == worker)
        .and_then(|s| s.migration_tag)
        .filter(|t| !t.is_empty()))
}

/// The counts in an Analytics Engine SQL API answer (`FORMAT JSON`: `data` rows;
/// numbers may come as JSON numbers or strings; an empty window is null or no row).
pub fn reading_of(json: &str) -> Result<Reading, String> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("not JSON ({e}): {:.200}", json))?;
    let data = value["data"]
        .as_array()
        .ok_or_else(|| format!("no `data` in the SQL API answer: {:.200}", json))?;
    let count = |row: &serde_json::Value, name: &str| -> Result<u64, String> {
        match &row[name] {
            serde_json::Value::Null => Ok(0),
            serde_json::Value::Number(n) => n
                .as_f64()
                .filter(|f| *f >= 0.0)
                .map(|f| f.round() as u64)
                .ok_or_else(|| format!("`{name}` is {n}")),
            serde_json::Value::String(s) => s
                .parse::<f64>()
                .ok()
                .filter(|f| *f >= 0.0)
                .map(|f| f.round() as u64)
                .ok_or_else(|| format!("`{name}` is {s:?}")),
            other => Err(format!("`{name}` is {other}")),
        }
    };
    match data.first() {
        None => Ok(Reading {
            requests: 0,
            errors: 0,
        }),
        Some(row) => Ok(Reading {
            requests: count(row, "requests")?,
            errors: count(row, "errors")?,
        }),
    }
}

/// The canary origin's answers and 5xx so far, from its Prometheus text
/// (`origin_http_requests_total{route, status}`, `status` a class such as `5xx`).
pub fn metrics_reading(text: &str) -> Result<Reading, String> {
    let mut reading = Reading::default();
    let mut seen = false;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("origin_http_requests_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            return Err(format!("unreadable sample: {line:.200}"));
        };
        let value: f64 = value
            .trim()
            .parse()
            .map_err(|_| format!("unreadable value: {line:.200}"))?;
        if !(value.is_finite() && value >= 0.0) {
            return Err(format!("unreadable value: {line:.200}"));
        }
        let count = value.round() as u64;
        seen = true;
        reading.requests = reading.requests.saturating_add(count);
        if labels.split(',').any(|l| l.trim() == "status=\"5xx\"") {
            reading.errors = reading.errors.saturating_add(count);
        }
    }
    if seen {
        Ok(reading)
    } else {
        Err(String::from(
            "no origin_http_requests_total samples: is this the origin's /metrics?",
        ))
    }
}

/// Reads the canary origin's counters.
pub async fn scrape(client: &reqwest::Client, url: &str) -> Result<Reading, RolloutError> {
    let failed = |detail: String| RolloutError::Api {
        what: format!("the canary origin's metrics ({url})"),
        detail,
    };
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    if !response.status().is_success() {
        return Err(failed(response.status().to_string()));
    }
    let text = response.text().await.map_err(|e| failed(e.to_string()))?;
    metrics_reading(&text).map_err(failed)
}

/// Runs wrangler.
pub struct Wrangler {
    pub program: PathBuf,
    pub config: PathBuf,
    /// Where wrangler's output files go (one per command).
    pub work_dir: PathBuf,
}

impl Wrangler {
    fn run(&self, what: &str, args: &[String]) -> Result<(String, String), RolloutError> {
        let output_file = self.work_dir.join(format!("wrangler-{what}.ndjson"));
        let _ = std::fs::remove_file(&output_file);
        let mut command = Command::new(&self.program);
        command
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env("WRANGLER_OUTPUT_FILE_PATH", &output_file)
            .env("WRANGLER_SEND_METRICS", "false");
        let shown = format!("wrangler {}", args.join(" "));
        println!("rollout: $ {shown}");
        let output = command.output().map_err(|e| RolloutError::Wrangler {
            command: shown.clone(),
            detail: format!("could not run {}: {e}", self.program.display()),
        })?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            return Err(RolloutError::Wrangler {
                command: shown,
                detail: format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stderr),
                    stdout.chars().take(2000).collect::<String>()
                ),
            });
        }
        let written = std::fs::read_to_string(&output_file).unwrap_or_default();
        Ok((stdout, written))
    }

    /// The versions serving traffic now.
    pub fn deployed(&self) -> Result<Vec<(String, f64)>, RolloutError> {
        let (stdout, _) = self.run(
            "status",
            &["deployments", "status", "--json"].map(String::from),
        )?;
        deployed_versions(&stdout).map_err(|detail| RolloutError::Wrangler {
            command: String::from("wrangler deployments status --json"),
            detail,
        })
    }

    /// Uploads the worker as a new version (no traffic), with `vars` overriding the
    /// config's (`--var NAME:VALUE`); its id.
    pub fn upload(&self, message: &str, vars: &[(&str, String)]) -> Result<String, RolloutError> {
        let mut args = vec![
            String::from("versions"),
            String::from("upload"),
            String::from("--message"),
            message.to_owned(),
        ];
        for (name, value) in vars {
            args.push(String::from("--var"));
            args.push(format!("{name}:{value}"));
        }
        let (_, written) = self.run("upload", &args)?;
        uploaded_version(&written).ok_or_else(|| RolloutError::Wrangler {
            command: String::from("wrangler versions upload"),
            detail: format!(
                "no version-upload entry with a version id in its output file: {written:.500}"
            ),
        })
    }

    /// Deploys a split (`<id>@<percent>%` each, summing to 100).
    pub fn deploy(&self, split: &[(String, u32)], message: &str) -> Result<(), RolloutError> {
        let mut args = vec![String::from("versions"), String::from("deploy")];
        args.extend(split.iter().map(|(id, p)| format!("{id}@{p}%")));
        args.extend([
            String::from("--message"),
            message.to_owned(),
            String::from("--yes"),
        ]);
        self.run("deploy", &args).map(|_| ())
    }
}

/// Cloudflare's HTTP API (the account's analytics and script list).
pub struct Api {
    pub base: String,
    pub account: String,
    pub token: String,
    pub client: reqwest::Client,
}

impl Api {
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<String, RolloutError> {
        let failed = |detail: String| RolloutError::Api {
            what: what.to_owned(),
            detail,
        };
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| failed(e.to_string()))?;
        if !status.is_success() {
            return Err(failed(format!("{status}: {body:.500}")));
        }
        Ok(body)
    }

    /// The worker's applied Durable Object migration tag.
    pub async fn applied_migration(&self, worker: &str) -> Result<Option<String>, RolloutError> {
        let url = format!("{}/accounts/{}/workers/scripts", self.base, self.account);
        let body = self
            .send(self.client.get(url), "the Workers script list")
            .await?;
        applied_migration(&body, worker).map_err(|detail| RolloutError::Api {
            what: String::from("the Workers script list"),
            detail,
        })
    }

    /// The version's answers and errors over the last `seconds`.
    pub async fn reading(&self, version: &str, seconds: u64) -> Result<Reading, RolloutError> {
        let what = "the Analytics Engine SQL API";
        let query = outcomes::error_rate_query(version, seconds.max(1)).ok_or_else(|| {
            RolloutError::Api {
                what: what.to_owned(),
                detail: format!("{version:?} is not a version id"),
            }
        })?;
        let url = format!(
            "{}/accounts/{}/analytics_engine/sql",
            self.base, self.account
        );
        let body = self.send(self.client.post(url).body(query), what).await?;
        reading_of(&body).map_err(|detail| RolloutError::Api {
            what: what.to_owned(),
            detail,
        })
    }
}

/// The default wrangler: the repository's own.
pub fn default_wrangler(root: &Path) -> PathBuf {
    root.join("node_modules/.bin/wrangler")
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "11111111-2222-4333-8444-555555555555";
    const NEW: &str = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";

    #[test]
    fn the_upload_entry_gives_the_version_id() {
        let ndjson = format!(
            "{{\"type\":\"wrangler-session\",\"version\":1,\"wrangler_version\":\"4.86.0\"}}\n\
             not json\n\
             {{\"type\":\"version-upload\",\"version\":1,\"worker_name\":\"course-edge\",\"worker_tag\":\"t\",\"version_id\":\"{NEW}\",\"timestamp\":\"2026-12-06T10:00:00Z\"}}\n"
        );
        assert_eq!(uploaded_version(&ndjson).as_deref(), Some(NEW));
        assert_eq!(
            uploaded_version("{\"type\":\"version-upload\",\"version_id\":\"x\"}"),
            None
        );
        assert_eq!(uploaded_version(""), None);
    }

    #[test]
    fn deployments_status_json_gives_the_split() {
        let json = format!(
            "{{\"id\":\"d\",\"source\":\"api\",\"strategy\":\"percentage\",\"versions\":[{{\"version_id\":\"{NEW}\",\"percentage\":25}},{{\"version_id\":\"{OLD}\",\"percentage\":75.0}}]}}"
        );
        assert_eq!(
            deployed_versions(&json).unwrap(),
            vec![(NEW.to_owned(), 25.0), (OLD.to_owned(), 75.0)]
        );
        assert!(deployed_versions("no json").is_err());
        assert!(deployed_versions("{\"versions\":3}").is_err());
    }

    #[test]
    fn migrations_pending_are_those_after_the_applied_tag() {
        let (name, tags) = config_of(
            "name = \"course-edge\"\n[[migrations]]\ntag = \"v1\"\nnew_sqlite_classes = [\"A\"]\n[[migrations]]\ntag = \"v2\"\n",
        )
        .unwrap();
        assert_eq!(name, "course-edge");
        assert_eq!(tags, ["v1", "v2"]);
        assert_eq!(
            pending_migrations(&tags, Some("v2")).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(pending_migrations(&tags, Some("v1")).unwrap(), ["v2"]);
        assert_eq!(pending_migrations(&tags, None).unwrap(), ["v1", "v2"]);
        assert!(pending_migrations(&tags, Some("v9")).is_err());
        let (_, none) = config_of("name = \"w\"\n").unwrap();
        assert!(pending_migrations(&none, None).unwrap().is_empty());
    }

    #[test]
    fn the_script_list_gives_the_applied_tag() {
        let json = r#"{"success":true,"errors":[],"messages":[],"result":[
            {"id":"other","migration_tag":"v7"},{"id":"course-edge","migration_tag":"v1"}]}"#;
        assert_eq!(
            applied_migration(json, "course-edge").unwrap().as_deref(),
            Some("v1")
        );
        assert_eq!(applied_migration(json, "missing").unwrap(), None);
        assert!(applied_migration(r#"{"success":false,"errors":[{"code":10000}]}"#, "x").is_err());
    }

    #[test]
    fn prometheus_text_gives_answers_and_5xx() {
        let text = "# HELP origin_http_requests_total x\n# TYPE origin_http_requests_total counter\n\
            origin_http_requests_total{route=\"/api/catalog\",status=\"2xx\"} 1200\n\
            origin_http_requests_total{route=\"/api/feed\",status=\"5xx\"} 30\n\
            origin_http_requests_total{route=\"/api/feed\",status=\"4xx\"} 7\n\
            origin_shed_total{class=\"feed\"} 30\n";
        assert_eq!(
            metrics_reading(text).unwrap(),
            Reading {
                requests: 1237,
                errors: 30
            }
        );
        assert!(metrics_reading("origin_shed_total{class=\"feed\"} 3\n").is_err());
        assert!(metrics_reading("origin_http_requests_total{status=\"5xx\"} NaN\n").is_err());
        assert!(metrics_reading("origin_http_requests_total{status=\"5xx\"}\n").is_err());
    }

    #[test]
    fn sql_answers_are_read_as_numbers_or_strings() {
        let numbers = r#"{"meta":[{"name":"requests","type":"Float64"}],"data":[{"requests":2000,"errors":30}],"rows":1}"#;
        assert_eq!(
            reading_of(numbers).unwrap(),
            Reading {
                requests: 2000,
                errors: 30
            }
        );
        let strings = r#"{"meta":[],"data":[{"requests":"2000","errors":"30"}],"rows":1}"#;
        assert_eq!(reading_of(strings).unwrap().errors, 30);
        let empty = r#"{"meta":[],"data":[],"rows":0}"#;
        assert_eq!(
            reading_of(empty).unwrap(),
            Reading {
                requests: 0,
                errors: 0
            }
        );
        let nulls = r#"{"meta":[],"data":[{"requests":null,"errors":null}],"rows":1}"#;
        assert_eq!(reading_of(nulls).unwrap().requests, 0);
        assert!(reading_of(r#"{"data":[{"requests":-1,"errors":0}]}"#).is_err());
        assert!(reading_of("<html>").is_err());
    }
}
