//! Purges at the edge (wasm32 glue; the rules are in `policy::purge`).
//!
//! * [`PurgeLedger`]: the Durable Object (one, named `ledger`) holding the ledger. It is
//!   strongly consistent and runs under `wrangler dev` as in production. Items are
//!   persisted one key each (`i:<item>`, `a:<purge id>`, `latest`, `floor`) and loaded
//!   into memory on the object's first request.
//! * [`route`]: `POST /__edge/purge`, the origin's delivery (bearer secret compared in
//!   constant time, bounded body).
//! * [`check`] / [`generation`]: what the cache does per hit and per store, memoizing the
//!   ledger's latest generation in the isolate for `PURGE_MEMO_MS`.

use std::cell::RefCell;

use protocol::purge::Purge;
use worker::{
    DurableObject, Env, Method as HttpMethod, Request, RequestInit, Response, Result, State,
    durable_object,
};

use crate::assets::ObjectKey;
use crate::config::Config;
use crate::error::EdgeError;
use crate::policy::purge::{
    self, Ledger, Marks, Memo, Reuse, SessionMemo, SessionStanding, Verdict,
};
use crate::policy::stored::Entry;

/// The Durable Object binding (wrangler.toml).
pub const BINDING: &str = "PURGES";
/// Largest purge body accepted.
const MAX_PURGE_BYTES: usize = 64 * 1024;

#[durable_object(fetch)]
pub struct PurgeLedger {
    state: State,
    ledger: RefCell<Option<Ledger>>,
}

impl PurgeLedger {
    async fn loaded(&self) -> Result<Ledger> {
        if let Some(ledger) = self.ledger.borrow().clone() {
            return Ok(ledger);
        }
        let storage = self.state.storage();
        let mut ledger = Ledger::default();
        let all = storage.list().await?;
        for entry in all.entries() {
            let Ok(pair) = entry else { continue };
            let pair: worker::js_sys::Array = pair.into();
            let Some(key) = pair.get(0).as_string() else {
                continue;
            };
            let value = pair.get(1);
            if key == "latest" {
                ledger.latest = value.as_f64().unwrap_or(0.0) as u64;
            } else if key == "floor" {
                ledger.floor = value.as_f64().unwrap_or(0.0) as u64;
            } else if let Some(item) = key.strip_prefix("i:") {
                if let Some(mark) = value
                    .as_string()
                    .and_then(|json| serde_json::from_str::<purge::Mark>(&json).ok())
                {
                    ledger.items.insert(item.to_owned(), mark);
                }
            } else if let Some(sid) = key.strip_prefix("r:") {
                // Written as a decimal string (see `persist`).
                let exp = value
                    .as_string()
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(i64::MAX);
                ledger.revoked.insert(sid.to_owned(), exp);
            } else if let Some(id) = key.strip_prefix("a:") {
                ledger
                    .applied
                    .push_back((id.to_owned(), value.as_f64().unwrap_or(0.0) as u64));
            }
        }
        let mut applied: Vec<(String, u64)> = ledger.applied.drain(..).collect();
        applied.sort_by_key(|(_, g)| *g);
        ledger.applied = applied.into();
        *self.ledger.borrow_mut() = Some(ledger.clone());
        Ok(ledger)
    }

    async fn apply(&self, purge: &Purge) -> Result<Response> {
        let mut ledger = self.loaded().await?;
        let (applied, mut dropped) = ledger.apply(purge);
        if applied.applied {
            let now_secs = (worker::Date::now().as_millis() / 1000) as i64;
            let gone = ledger.prune_revoked(now_secs);
            if !gone.is_empty() {
                worker::console_log!("purge ledger: {} revoked sessions expired", gone.len());
            }
            dropped.extend(gone.into_iter().map(|sid| format!("r:{sid}")));
        }
        if applied.applied {
            if let Err(e) = self.persist(purge, &ledger, dropped).await {
                // Storage and memory may now differ: read storage again next time.
                *self.ledger.borrow_mut() = None;
                return Err(e);
            }
            *self.ledger.borrow_mut() = Some(ledger);
        }
        Response::from_json(&applied)
    }

    /// Writes what a purge changed, in batches the storage API accepts (≤ 128 keys).
    async fn persist(&self, purge: &Purge, ledger: &Ledger, dropped: Vec<String>) -> Result<()> {
        let storage = self.state.storage();
        let mut writes: Vec<(String, String)> = Vec::new();
        for item in purge::items(purge) {
            if let Some(mark) = ledger.items.get(&item) {
                let json = serde_json::to_string(mark)
                    .map_err(|e| worker::Error::RustError(e.to_string()))?;
                writes.push((format!("i:{item}"), json));
            }
        }
        for session in &purge.change.sessions {
            if let Some(exp) = ledger.revoked.get(&session.sid) {
                writes.push((format!("r:{}", session.sid), exp.to_string()));
            }
        }
        for chunk in writes.chunks(STORAGE_BATCH) {
            let object = worker::js_sys::Object::new();
            for (key, value) in chunk {
                worker::js_sys::Reflect::set(&object, &key.into(), &value.into()).map_err(
                    |_| worker::Error::RustError(String::from("building a storage batch")),
                )?;
            }
            storage.put_multiple_raw(object).await?;
        }
        if let Some((_, generation)) = ledger.applied.back() {
            storage.put(&format!("a:{}", purge.id), *generation).await?;
        }
        storage.put("latest", ledger.latest).await?;
        storage.put("floor", ledger.floor).await?;
        for chunk in dropped.chunks(STORAGE_BATCH) {
            storage.delete_multiple(chunk.to_vec()).await?;
        }
        Ok(())
    }
}

/// Keys per storage call (the Durable Object storage API's limit is 128).
const STORAGE_BATCH: usize = 128;

impl DurableObject for PurgeLedger {
    fn new(state: State, _env: Env) -> Self {
        Self {
            state,
            ledger: RefCell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let path = req.path();
        match (req.method(), path.as_str()) {
            (HttpMethod::Post, "/apply") => {
                let bytes = req.bytes().await?;
                match Purge::parse(&bytes) {
                    Ok(purge) => self.apply(&purge).await,
                    Err(e) => Response::error(e.to_string(), 400),
                }
            }
            (HttpMethod::Post, "/check") => {
                let probes: Vec<String> = req.json().await.unwrap_or_default();
                if self.ledger.borrow().is_none() {
                    self.loaded().await?;
                }
                let marks = self
                    .ledger
                    .borrow()
                    .as_ref()
                    .map(|ledger| ledger.check(probes.iter().map(String::as_str)))
                    .unwrap_or_default();
                Response::from_json(&marks)
            }
            _ => Response::error("no such ledger route", 404),
        }
    }
}

fn stub(env: &Env) -> Result<worker::Stub> {
    env.durable_object(BINDING)?.get_by_name("ledger")
}

async fn ledger_call(env: &Env, path: &str, body: String) -> Result<Response> {
    if FAULT.with(|f| *f.borrow()) {
        return Err(worker::Error::RustError(String::from(
            "the purge ledger is unreachable (PURGE_LEDGER_FAULT)",
        )));
    }
    let mut init = RequestInit::new();
    init.with_method(HttpMethod::Post)
        .with_body(Some(body.into()));
    let req = Request::new_with_init(&format!("https://ledger{path}"), &init)?;
    stub(env)?.fetch_with_request(req).await
}

/// Writes `purge` into the ledger (applied once per id) and forgets this isolate's memo,
/// so the isolate sees its own purge at once.
pub(super) async fn apply(
    env: &Env,
    purge: &Purge,
) -> std::result::Result<purge::Applied, EdgeError> {
    let body = serde_json::to_string(purge).map_err(|e| EdgeError::Runtime(e.to_string()))?;
    let mut applied = ledger_call(env, "/apply", body)
        .await
        .map_err(|e| EdgeError::Runtime(format!("the purge ledger: {e}")))?;
    if applied.status_code() != 200 {
        return Err(EdgeError::Runtime(format!(
            "the purge ledger answered {}",
            applied.status_code()
        )));
    }
    let applied: purge::Applied = applied
        .json()
        .await
        .map_err(|e| EdgeError::Runtime(format!("the purge ledger: {e}")))?;
    MEMO.with(|m| m.borrow_mut().forget());
    SESSIONS.with(|m| m.borrow_mut().forget());
    worker::console_log!(
        "purge {} applied={} generation={}",
        purge.id,
        applied.applied,
        applied.generation
    );
    Ok(applied)
}

/// `POST /__edge/purge`: the origin's delivery. Refused (401, changing nothing) without
/// the secret; 400 naming the field on a bad purge.
pub(super) async fn route(
    req: &mut Request,
    env: &Env,
    ctx: &worker::Context,
    config: &Config,
) -> std::result::Result<Response, EdgeError> {
    let authorization = req.headers().get("authorization").ok().flatten();
    if !purge::bearer_matches(authorization.as_deref(), config.purge_secret.as_deref()) {
        return Err(EdgeError::Unauthorized {
            why: "send Authorization: Bearer <EDGE_PURGE_SECRET>",
        });
    }
    let declared = req
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|l| l.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_PURGE_BYTES) {
        return Err(EdgeError::PayloadTooLarge {
            limit: MAX_PURGE_BYTES,
        });
    }
    // Read in chunks and stopped at the limit: a body without a Content-Length (chunked)
    // is never held past it.
    let mut bytes = Vec::new();
    // No body at all reads as empty, which the parser refuses naming it.
    let mut body = req.stream().ok();
    while let Some(chunk) = match body.as_mut() {
        Some(body) => futures_util::StreamExt::next(body).await,
        None => None,
    } {
        let chunk = chunk.map_err(|e| EdgeError::Runtime(format!("reading the purge: {e}")))?;
        if bytes.len() + chunk.len() > MAX_PURGE_BYTES {
            return Err(EdgeError::PayloadTooLarge {
                limit: MAX_PURGE_BYTES,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    let purge = Purge::parse(&bytes).map_err(|e| EdgeError::BadPurge {
        field: e.field,
        message: e.message,
    })?;
    let applied = apply(env, &purge).await?;
    if applied.applied {
        // After the answer: the origin's delivery waits for nothing but the ledger.
        let env = env.clone();
        ctx.wait_until(async move { empty_folders(&env, &purge).await });
    }
    Response::from_json(&applied).map_err(|e| EdgeError::Runtime(e.to_string()))
}

/// Deletes the stored derivatives and working copies of the originals the purge names by
/// URL (`policy::purge::originals_named`). Best effort, after the ledger has the purge:
/// what stays behind records a generation older than the purge and is made again.
async fn empty_folders(env: &Env, purge: &Purge) {
    // The bound is small (`MAX_FOLDERS_EMPTIED`) and each folder at most two pages.
    let keys = purge::originals_named(purge);
    if keys.is_empty() {
        return;
    }
    let bucket = match env.bucket(super::assets::BUCKET) {
        Ok(bucket) => bucket,
        Err(e) => {
            worker::console_warn!("purge {}: no bucket to empty folders in: {e}", purge.id);
            return;
        }
    };
    for key in &keys {
        match super::derived::remove(&bucket, key, None).await {
            Ok(removed) => worker::console_log!(
                "purge {}: {removed} stored derivatives of {:?} deleted",
                purge.id,
                key.as_str()
            ),
            Err(e) => worker::console_warn!(
                "purge {}: deleting the derivatives of {:?}: {e}",
                purge.id,
                key.as_str()
            ),
        }
    }
}

thread_local! {
    /// The isolate's memo of the ledger (its rules: `policy::purge::Memo`).
    static MEMO: RefCell<Memo> = RefCell::new(Memo::default());
    /// The isolate's memo of session revocations (`policy::purge::SessionMemo`).
    static SESSIONS: RefCell<SessionMemo> = RefCell::new(SessionMemo::default());
    static ENV: RefCell<Option<(Env, f64)>> = const { RefCell::new(None) };
    static FAULT: RefCell<bool> = const { RefCell::new(false) };
}

/// Binds this request's environment and memo time (set once per request).
pub(super) fn enter(env: &Env, config: &Config) {
    ENV.with(|e| *e.borrow_mut() = Some((env.clone(), config.purge_memo.as_secs_f64() * 1000.0)));
    FAULT.with(|f| *f.borrow_mut() = config.purge_ledger_down);
}

fn env_and_memo() -> Option<(Env, f64)> {
    ENV.with(|e| e.borrow().clone())
}

async fn ask(env: &Env, probes: &[String]) -> Option<Marks> {
    let body = serde_json::to_string(probes).ok()?;
    let mut response = ledger_call(env, "/check", body).await.ok()?;
    if response.status_code() != 200 {
        return None;
    }
    response.json::<Marks>().await.ok()
}

/// The generation a new entry is stored under: the memoized latest when fresh, else the
/// ledger's (0 when it cannot be asked: the entry is then checked on every hit).
pub(super) async fn generation() -> u64 {
    let now = super::now_ms();
    let Some((env, memo_ms)) = env_and_memo() else {
        return 0;
    };
    if let Some(latest) = MEMO.with(|m| m.borrow().latest(now, memo_ms)) {
        return latest;
    }
    match ask(&env, &[]).await {
        Some(marks) => {
            MEMO.with(|m| {
                m.borrow_mut()
                    .record(0, &[], &marks, Verdict::Unconfirmed, now)
            });
            marks.latest
        }
        None => 0,
    }
}

/// A hit's verdict: from the memo when it can prove the entry clean, otherwise one
/// ledger round trip for the entry's probes. With it, the ledger's latest generation the
/// verdict was drawn against (`None`: the ledger could not be asked).
pub(super) async fn check(
    path_and_query: &str,
    aliases: &[String],
    entry: &Entry,
) -> (Verdict, Option<u64>) {
    let probes = purge::probes(path_and_query, &entry.tags, aliases);
    check_probes(entry.meta.generation, &probes).await
}

/// Whether an object of R2 `derived/` made under `generation` from the original `source`
/// may be served, or a purge since then covers the original (`/media/<key>`, its
/// prefixes) or `url` (the derivative URL asked now): `policy::purge::reuse`.
pub(super) async fn derived_reuse(url: Option<&str>, source: &ObjectKey, generation: u64) -> Reuse {
    let probes = purge::derived_probes(url, &source.purge_path(true));
    let (verdict, against) = check_probes(generation, &probes).await;
    purge::reuse(verdict, against.is_some())
}

async fn check_probes(generation: u64, probes: &[String]) -> (Verdict, Option<u64>) {
    let Some((env, memo_ms)) = env_and_memo() else {
        return (Verdict::Unconfirmed, None);
    };
    let now = super::now_ms();
    let memoized = MEMO.with(|m| {
        let m = m.borrow();
        m.verdict(generation, probes, now, memo_ms)
            .map(|verdict| (verdict, m.latest(now, memo_ms)))
    });
    if let Some(answer) = memoized {
        return answer;
    }
    let marks = ask(&env, probes).await;
    let verdict = purge::verdict(generation, marks.as_ref());
    if let Some(marks) = &marks {
        MEMO.with(|m| {
            m.borrow_mut()
                .record(generation, probes, marks, verdict, now)
        });
    }
    (verdict, marks.map(|m| m.latest))
}

/// Whether a verified session was signed out: from the memo when it is fresh, else one
/// ledger round trip (the same bound as a purge: memo time plus that round trip).
pub(super) async fn session_standing(sid: &str) -> SessionStanding {
    let Some((env, memo_ms)) = env_and_memo() else {
        return SessionStanding::Unconfirmed;
    };
    let now = super::now_ms();
    if let Some(standing) = SESSIONS.with(|m| m.borrow().standing(sid, now, memo_ms)) {
        return standing;
    }
    let marks = ask(&env, &[purge::session_probe(sid)]).await;
    SESSIONS.with(|m| m.borrow_mut().record(sid, marks.as_ref(), super::now_ms()))
}
