//! Stampede check for `scripts/bench-origin`: N concurrent GETs of one URL, all sent
//! before any answer is awaited. Prints how many answered 200 and the wall time.
//!
//! `cargo run --release -p course-edge-origin --example stampede -- <url> <n>`

use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let url = args.next().ok_or("usage: stampede <url> <n>")?;
    let n: usize = args
        .next()
        .ok_or("usage: stampede <url> <n>")?
        .parse()
        .map_err(|_| "n must be a whole number")?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(n)
        .build()
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let client = client.clone();
            let url = url.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                client.get(&url).send().await.map(|r| r.status().as_u16())
            })
        })
        .collect();
    let mut ok = 0;
    let mut other = Vec::new();
    for task in tasks {
        match task.await {
            Ok(Ok(200)) => ok += 1,
            Ok(Ok(status)) => other.push(status.to_string()),
            Ok(Err(e)) => other.push(e.to_string()),
            Err(e) => other.push(e.to_string()),
        }
    }
    println!(
        "stampede: {n} concurrent requests, {ok} answered 200, {} other, {:.0} ms",
        other.len(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    if let Some(first) = other.first() {
        println!("stampede: first non-200: {first}");
    }
    Ok(())
}
