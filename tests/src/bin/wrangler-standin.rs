//! A recording stand-in for `wrangler` (the commands that need a Cloudflare account),
//! for the rollout tests. It accepts only what wrangler documents for the commands the
//! rollout uses, and rejects the rest as wrangler or the API would:
//!
//! - `deployments status --json`: the current deployment (`versions: [{version_id,
//!   percentage}]`);
//! - `versions upload [--message M] [--tag T] [--name N]`: refused, as the API refuses
//!   it (code 10211), when the config carries a Durable Object migration the worker has
//!   not applied; else a new version id, written as a `version-upload` entry to
//!   `WRANGLER_OUTPUT_FILE_PATH`;
//! - `versions deploy <id>@<p>% [<id>@<p>%] [--message M] --yes`: at most two
//!   versions, each known, shares summing to 100; written as a `version-deploy` entry.
//!
//! `--config`/`-c` is accepted anywhere. Every call is appended to `$STANDIN_DIR/calls`
//! (one line of arguments, tab-separated); the account's state is
//! `$STANDIN_DIR/account.json` (`versions`, `deployment`, `applied_migration`).

use std::io::Write;
use std::path::PathBuf;

use serde_json::{Value, json};

fn fail(message: &str) -> ! {
    eprintln!("✘ [ERROR] {message}");
    std::process::exit(1);
}

fn dir() -> PathBuf {
    std::env::var_os("STANDIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| fail("stand-in: STANDIN_DIR is not set"))
}

fn load() -> Value {
    let text = std::fs::read_to_string(dir().join("account.json"))
        .unwrap_or_else(|e| fail(&format!("stand-in: account.json: {e}")));
    serde_json::from_str(&text).unwrap_or_else(|e| fail(&format!("stand-in: account.json: {e}")))
}

fn store(account: &Value) {
    std::fs::write(dir().join("account.json"), account.to_string())
        .unwrap_or_else(|e| fail(&format!("stand-in: account.json: {e}")));
}

/// Appends an entry to wrangler's output file, as wrangler does (ND-JSON).
fn output(entry: Value) {
    let Some(path) = std::env::var_os("WRANGLER_OUTPUT_FILE_PATH") else {
        return;
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| fail(&format!("output file: {e}")));
    let session = json!({"type": "wrangler-session", "version": 1, "wrangler_version": "4.86.0"});
    let _ = writeln!(file, "{session}");
    let _ = writeln!(file, "{entry}");
}

/// Written again here rather than borrowed from `protocol::outcomes`: the stand-in
/// checks what wrangler checks, independently of the code under test.
fn is_uuid(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Splits `args` into positionals and `--flag value` pairs, checking each flag against
/// `takes_value` (flags with a value) and `switches` (flags without).
fn parse<'a>(
    args: &'a [String],
    takes_value: &[&str],
    switches: &[&str],
) -> (Vec<&'a str>, Vec<(&'a str, Option<&'a str>)>) {
    let mut positional = Vec::new();
    let mut flags = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        if arg.starts_with('-') {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (arg, None),
            };
            if takes_value.contains(&name) {
                let value = inline.or_else(|| {
                    i += 1;
                    args.get(i).map(String::as_str)
                });
                if value.is_none() {
                    fail(&format!("Not enough arguments following: {name}"));
                }
                flags.push((name, value));
            } else if switches.contains(&name) {
                flags.push((name, None));
            } else {
                fail(&format!(
                    "Unknown argument: {}",
                    name.trim_start_matches('-')
                ));
            }
        } else {
            positional.push(arg);
        }
        i += 1;
    }
    (positional, flags)
}

fn config_migrations(config: &str) -> Vec<String> {
    let text = std::fs::read_to_string(config)
        .unwrap_or_else(|e| fail(&format!("Could not read the config file {config}: {e}")));
    let value: toml::Value =
        toml::from_str(&text).unwrap_or_else(|e| fail(&format!("{config}: {e}")));
    value
        .get("migrations")
        .and_then(|m| m.as_array())
        .map(|list| {
            list.iter()
                .filter_map(|m| m.get("tag").and_then(|t| t.as_str()).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Ok(mut calls) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir().join("calls"))
    {
        let _ = writeln!(calls, "{}", args.join("\t"));
    }
    let mut account = load();
    let command: Vec<&str> = args
        .iter()
        .take_while(|a| !a.starts_with('-'))
        .map(String::as_str)
        .take(2)
        .collect();
    let rest = &args[command.len()..];
    match command.as_slice() {
        ["deployments", "status"] => {
            let (positional, flags) = parse(
                rest,
                &["--config", "-c", "--name", "--env", "-e"],
                &["--json"],
            );
            if !positional.is_empty() {
                fail(&format!("Unknown arguments: {}", positional.join(" ")));
            }
            if !flags.iter().any(|(f, _)| *f == "--json") {
                fail("stand-in: the rollout reads `deployments status` with --json");
            }
            let versions: Vec<Value> = account["deployment"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|pair| json!({"version_id": pair[0], "percentage": pair[1]}))
                .collect();
            println!(
                "{}",
                json!({"id": "standin-deployment", "source": "wrangler", "strategy": "percentage",
                       "author_email": "standin@example.com", "annotations": {},
                       "created_on": "2026-12-06T00:00:00Z", "versions": versions})
            );
        }
        ["versions", "upload"] => {
            let (positional, flags) = parse(
                rest,
                &[
                    "--config",
                    "-c",
                    "--message",
                    "--tag",
                    "--name",
                    "--env",
                    "-e",
                    "--var",
                    "--outdir",
                ],
                &["--dry-run", "--minify", "--no-bundle", "--latest"],
            );
            if !positional.is_empty() {
                fail(&format!("Unknown arguments: {}", positional.join(" ")));
            }
            let config = flags
                .iter()
                .find(|(f, _)| matches!(*f, "--config" | "-c"))
                .and_then(|(_, v)| *v)
                .unwrap_or("wrangler.toml");
            let tags = config_migrations(config);
            let applied = account["applied_migration"].as_str().map(str::to_owned);
            let pending = match &applied {
                None => !tags.is_empty(),
                Some(applied) => tags.last() != Some(applied),
            };
            if pending {
                fail(
                    "Version upload failed. You attempted to upload a version of a Worker that includes a Durable Object migration, but migrations must be fully applied via a non-versioned deployment. Refer to the documentation for more information. [code: 10211]",
                );
            }
            let n = account["versions"].as_array().map_or(0, Vec::len);
            let id = format!(
                "{:08x}-0000-4000-8000-{:012x}",
                0xc0de_0000u32 + n as u32,
                n
            );
            if let Some(list) = account["versions"].as_array_mut() {
                list.push(json!(id));
            }
            store(&account);
            output(
                json!({"type": "version-upload", "version": 1, "worker_name": "course-edge",
                          "worker_tag": "standin-tag", "version_id": id,
                          "timestamp": "2026-12-06T00:00:00Z"}),
            );
            println!("Uploaded course-edge (1.00 sec)\nWorker Version ID: {id}");
        }
        ["versions", "deploy"] => {
            let (positional, flags) = parse(
                rest,
                &[
                    "--config",
                    "-c",
                    "--message",
                    "--name",
                    "--env",
                    "-e",
                    "--version-id",
                    "--percentage",
                ],
                &["--yes", "-y", "--dry-run"],
            );
            if !flags.iter().any(|(f, _)| matches!(*f, "--yes" | "-y")) {
                fail("stand-in: without --yes wrangler prompts; the rollout must not");
            }
            if flags
                .iter()
                .any(|(f, _)| matches!(*f, "--version-id" | "--percentage"))
            {
                fail("stand-in: the rollout passes <id>@<p>% specs");
            }
            let known: Vec<String> = account["versions"]
                .as_array()
                .map(|l| {
                    l.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let mut split = Vec::new();
            for spec in &positional {
                let Some((id, percent)) = spec.split_once('@') else {
                    fail(&format!(
                        "Could not parse version spec {spec:?}: expected <version-id>@<percentage>"
                    ));
                };
                let percent: f64 = percent
                    .trim_end_matches('%')
                    .parse()
                    .unwrap_or_else(|_| fail(&format!("Could not parse percentage in {spec:?}")));
                if !is_uuid(id) {
                    fail(&format!("Invalid version id {id:?}: must be a UUID"));
                }
                if !known.iter().any(|k| k == id) {
                    fail(&format!("Could not find version {id} [code: 10221]"));
                }
                if !(0.0..=100.0).contains(&percent) {
                    fail(&format!("Percentage {percent} out of range"));
                }
                split.push(json!([id, percent]));
            }
            if split.is_empty() {
                fail("stand-in: no version specs (wrangler would prompt)");
            }
            if split.len() > 2 {
                fail("You must select at most 2 versions to deploy.");
            }
            let sum: f64 = split.iter().filter_map(|p| p[1].as_f64()).sum();
            if (sum - 100.0).abs() > 0.001 {
                fail(&format!(
                    "Sum of specified percentages ({sum}%) must be 100%"
                ));
            }
            account["deployment"] = Value::Array(split);
            store(&account);
            output(
                json!({"type": "version-deploy", "version": 1, "worker_name": "course-edge",
                          "worker_tag": "standin-tag", "deployment_id": "standin", "version_traffic": {}}),
            );
            println!("SUCCESS  Deployed course-edge version(s)");
        }
        _ => fail(&format!(
            "stand-in: `wrangler {}` is not a command the rollout may run",
            args.join(" ")
        )),
    }
}
