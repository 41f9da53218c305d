//! The `derived/` sweeper: a cron trigger (wrangler.toml `[triggers]`) that pages through
//! `derived/` with each object's custom metadata, asks `image::sweep::verdict` about it,
//! and deletes what the verdict says. At most `IMAGE_SWEEP_BATCH` objects per run; the
//! place it stopped is kept in R2 (`image::sweep::CURSOR_KEY`) for the next run, and a
//! finished pass starts over. Each source is looked up once per run; a failed lookup
//! skips that derivative (the next pass sees it again) rather than stalling the page.
//! With the batch capped at 500, a run stays under 510 R2 operations. Each run first
//! applies the upload purges the ledger did not take yet (the outbox, at most 100: up to
//! 300 R2 operations more while the ledger was down).

use std::collections::HashMap;

use worker::{Env, Include, ScheduleContext, ScheduledEvent, event};

use super::assets::BUCKET;
use crate::config::Config;
use crate::image::sweep::{CURSOR_KEY, DerivedFrom, Verdict, is_internal, verdict};

#[event(scheduled)]
async fn scheduled(event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    if event.cron() == crate::upload::OUTBOX_CRON {
        if let Ok(bucket) = env.bucket(BUCKET) {
            let applied = super::upload::flush_pending(&env, &bucket, 100).await;
            if applied > 0 {
                worker::console_log!("outbox ({}): applied {applied} upload purges", event.cron());
            }
        }
        return;
    }
    match sweep(&env).await {
        Ok(report) => worker::console_log!(
            "sweep ({}): examined {}, deleted {} ({}), skipped {}, {}",
            event.cron(),
            report.examined,
            report.deleted,
            report
                .reasons
                .iter()
                .map(|(r, n)| format!("{r}: {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            report.skipped,
            if report.finished {
                "pass finished"
            } else {
                "continues next run"
            }
        ),
        Err(e) => worker::console_error!("sweep failed (next run retries): {e}"),
    }
}

#[derive(Default)]
struct Report {
    examined: u32,
    deleted: u32,
    reasons: HashMap<&'static str, u32>,
    skipped: u32,
    finished: bool,
}

async fn sweep(env: &Env) -> worker::Result<Report> {
    let config = Config::from_lookup(|name| env.var(name).ok().map(|v| v.to_string()))
        .map_err(|e| worker::Error::RustError(e.to_string()))?;
    let bucket = env.bucket(BUCKET)?;
    // Upload purges the ledger did not take yet (see `upload::PENDING_PREFIX`).
    let pending = super::upload::flush_pending(env, &bucket, 100).await;
    if pending > 0 {
        worker::console_log!("sweep: applied {pending} pending upload purges");
    }
    let cursor = match bucket.get(CURSOR_KEY).execute().await? {
        Some(object) => match object.body() {
            Some(body) => Some(body.text().await?).filter(|c| !c.is_empty()),
            None => None,
        },
        None => None,
    };
    let mut list = bucket
        .list()
        .prefix("derived/")
        .limit(config.image_sweep_batch)
        .include(vec![Include::CustomMetadata]);
    if let Some(cursor) = cursor {
        list = list.cursor(cursor);
    }
    let page = list.execute().await?;
    let mut report = Report::default();
    let mut sources: HashMap<String, Option<String>> = HashMap::new();
    let mut doomed = Vec::new();
    for object in page.objects() {
        let key = object.key();
        if is_internal(&key) {
            continue;
        }
        report.examined += 1;
        let from = object
            .custom_metadata()
            .ok()
            .and_then(|meta| DerivedFrom::from_metadata(&meta));
        let current = match &from {
            None => None,
            Some(from) => match sources.get(&from.source_key) {
                Some(etag) => etag.clone(),
                None => match bucket.head(&from.source_key).await {
                    Ok(head) => {
                        let etag = head.map(|o| o.http_etag());
                        sources.insert(from.source_key.clone(), etag.clone());
                        etag
                    }
                    // Unknown is not gone: keep it, and let the next pass look again.
                    Err(e) => {
                        worker::console_warn!("sweep: head {} failed: {e}", from.source_key);
                        report.skipped += 1;
                        continue;
                    }
                },
            },
        };
        if let Verdict::Delete(reason) = verdict(&key, from.as_ref(), current.as_deref()) {
            *report.reasons.entry(reason.as_str()).or_default() += 1;
            doomed.push(key);
        }
    }
    report.deleted = doomed.len() as u32;
    if !doomed.is_empty() {
        bucket.delete_multiple(doomed).await?;
    }
    let next = if page.truncated() {
        page.cursor()
    } else {
        None
    };
    report.finished = next.is_none();
    bucket
        .put(CURSOR_KEY, next.unwrap_or_default().into_bytes())
        .execute()
        .await?;
    Ok(report)
}
