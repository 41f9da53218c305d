//! Login flood check for `scripts/bench-origin`: catalog reads at a fixed concurrency for
//! `secs` seconds alone, then again while `flooders` loops send logins as fast as the
//! origin answers (each from its own client IP and for a new email, so neither rate
//! limit stops them: only the hashing budget does). Prints, for both phases, the reads'
//! success rate and p99, and the logins answered with a check (401) or refused (429).
//!
//! `cargo run --release -p course-edge-origin --example login_flood -- <base-url> <secs> <readers> <flooders>`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Reads {
    ok: u64,
    failed: u64,
    latencies: Vec<Duration>,
}

async fn read_loop(client: reqwest::Client, url: String, until: Instant) -> Reads {
    let mut reads = Reads {
        ok: 0,
        failed: 0,
        latencies: Vec::new(),
    };
    while Instant::now() < until {
        let started = Instant::now();
        let status = client.get(&url).send().await.map(|r| r.status().as_u16());
        reads.latencies.push(started.elapsed());
        match status {
            Ok(200) => reads.ok += 1,
            _ => reads.failed += 1,
        }
    }
    reads
}

async fn read_phase(client: &reqwest::Client, base: &str, secs: u64, readers: usize) -> String {
    let until = Instant::now() + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..readers)
        .map(|_| {
            tokio::spawn(read_loop(
                client.clone(),
                format!("{base}/api/catalog"),
                until,
            ))
        })
        .collect();
    let (mut ok, mut failed, mut latencies) = (0, 0, Vec::new());
    for task in tasks {
        if let Ok(r) = task.await {
            ok += r.ok;
            failed += r.failed;
            latencies.extend(r.latencies);
        }
    }
    latencies.sort();
    let p99 = latencies
        .get(latencies.len().saturating_sub(1) * 99 / 100)
        .copied()
        .unwrap_or_default();
    format!(
        "reads {} ({:.0}/s), success {:.2} %, p99 {:.2} ms",
        ok + failed,
        (ok + failed) as f64 / secs as f64,
        100.0 * ok as f64 / (ok + failed).max(1) as f64,
        p99.as_secs_f64() * 1000.0
    )
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let usage = "usage: login_flood <base-url> <secs> <readers> <flooders>";
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, secs, readers, flooders] = args.as_slice() else {
        return Err(usage.into());
    };
    let number = |s: &str| s.parse::<u64>().map_err(|_| usage.to_owned());
    let (secs, readers, flooders) = (number(secs)?, number(readers)? as usize, number(flooders)?);
    let client = reqwest::Client::new();

    let alone = read_phase(&client, base, secs, readers).await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (checked, refused, other) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let next = Arc::new(AtomicU64::new(0));
    let flood: Vec<_> = (0..flooders)
        .map(|_| {
            let (client, base, stop) = (client.clone(), base.clone(), stop.clone());
            let (checked, refused, other, next) =
                (checked.clone(), refused.clone(), other.clone(), next.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let ip = format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255);
                    let status = client
                        .post(format!("{base}/api/sessions"))
                        .header("x-edge-client-ip", ip)
                        .json(&serde_json::json!({"email": format!("flood{n}@example.com"), "password": "x"}))
                        .send()
                        .await
                        .map(|r| r.status().as_u16());
                    match status {
                        Ok(401) => checked.fetch_add(1, Ordering::Relaxed),
                        Ok(429) => refused.fetch_add(1, Ordering::Relaxed),
                        _ => other.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    let flooded = read_phase(&client, base, secs, readers).await;
    stop.store(true, Ordering::Relaxed);
    for task in flood {
        let _ = task.await;
    }
    let per_sec = |n: &AtomicU64| n.load(Ordering::Relaxed) as f64 / secs as f64;
    println!("without flood: {alone}");
    println!("during flood:  {flooded}");
    println!(
        "logins: {:.0}/s offered by {flooders} loops; {:.0}/s checked (401), {:.0}/s refused (429), {:.0}/s other",
        per_sec(&checked) + per_sec(&refused) + per_sec(&other),
        per_sec(&checked),
        per_sec(&refused),
        per_sec(&other)
    );
    Ok(())
}
