//! Purges at the edge, pure: the ledger the Durable Object keeps, and the check every
//! cache hit makes against it.
//!
//! **The ledger.** Each applied purge takes the next *generation*. The ledger records,
//! per purged item — a tag (`t:`), a URL (`u:` path or path?query) or a prefix (`p:`,
//! normalized) — the last generation and mode that purged it, and the ids of purges
//! applied (a repeated delivery is acknowledged and changes nothing). It is bounded:
//! past [`MAX_ITEMS`] the oldest items are forgotten and the *floor* rises to the
//! newest forgotten generation; an entry stored before the floor can no longer be
//! proven clean and is revalidated (never served blindly).
//!
//! **The check.** A stored entry records the generation that was current before its
//! answer was fetched. On a hit: if no purge happened since (the ledger's latest
//! generation is not newer), the entry is clean, with no further question. Otherwise
//! the entry's probes ([`probes`]: its tags, its URL with and without the query, the
//! prefixes of its path — bounded by the path's depth, never by how many prefixes were
//! ever purged) are looked up: a newer generation on any of them purges the entry, in
//! the strongest mode found. The isolate memoizes the ledger's answers briefly (the
//! documented bound is that memo time plus one Durable Object round trip).
//!
//! **Revoked sessions** ride the same ledger with their own rule: a session is kept as
//! revoked until its cookie's own expiry (then verification refuses the cookie anyway),
//! never forgotten earlier by the item bound; past [`MAX_REVOKED`] live revocations the
//! ones expiring soonest are dropped (counted in the log; size the session lifetime so
//! that sign-outs within one lifetime stay below it).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use protocol::purge::{Mode, Purge, normalize_prefix, prefixes_of};
use serde::{Deserialize, Serialize};

/// Items the ledger remembers before raising its floor.
pub const MAX_ITEMS: usize = 20_000;
/// Purge ids remembered for deduplication.
pub const MAX_APPLIED: usize = 10_000;
/// Revoked sessions kept at most (about 100 bytes each in the Durable Object's memory).
pub const MAX_REVOKED: usize = 200_000;
/// Probes per entry at most (tags are capped; the path depth is bounded by its length).
pub const MAX_TAGS_PROBED: usize = 64;

/// The probe spellings of a stored entry: `t:<tag>` (lowercase), `u:<path>`,
/// `u:<path?query>`, `p:<each prefix of the path>`. `aliases` are further paths the
/// entry answers for (an image derivative's source `/media/<key>`).
pub fn probes(path_and_query: &str, tags: &[String], aliases: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for tag in tags.iter().take(MAX_TAGS_PROBED) {
        out.push(format!("t:{}", tag.to_ascii_lowercase()));
    }
    for target in std::iter::once(path_and_query).chain(aliases.iter().map(String::as_str)) {
        let path = target.split('?').next().unwrap_or(target);
        out.push(format!("u:{path}"));
        if target.contains('?') {
            out.push(format!("u:{target}"));
        }
        out.extend(prefixes_of(path).map(|p| format!("p:{p}")));
    }
    let mut out: Vec<String> = out.into_iter().map(spelled).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The items a purge writes, in the spelling [`probes`] reads.
pub fn items(purge: &Purge) -> Vec<String> {
    let c = &purge.change;
    c.tags
        .iter()
        .map(|t| format!("t:{}", t.to_ascii_lowercase()))
        .chain(c.urls.iter().map(|u| format!("u:{u}")))
        .chain(
            c.prefixes
                .iter()
                .map(|p| format!("p:{}", normalize_prefix(p))),
        )
        .map(spelled)
        .collect()
}

/// Longest item kept as written; longer ones are named by their SHA-256 (the Durable
/// Object's storage keys are limited to 2 KiB).
pub const MAX_ITEM_BYTES: usize = 512;

/// One spelling per item, bounded: long items become `h:<sha-256 hex>`.
pub fn spelled(item: String) -> String {
    use sha2::{Digest, Sha256};
    if item.len() <= MAX_ITEM_BYTES {
        return item;
    }
    let digest = Sha256::digest(item.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("h:{hex}")
}

/// One item's purges: the last of any mode, and the last hard one (a later soft purge
/// must not soften an earlier hard one for entries stored before both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub generation: u64,
    pub mode: Mode,
    #[serde(default)]
    pub hard: u64,
}

/// What the ledger answers a check: its latest generation and floor, and the marks of
/// the probes asked about that it knows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marks {
    pub latest: u64,
    pub floor: u64,
    pub marks: BTreeMap<String, Mark>,
    /// The probed sessions (`s:<sid>`) that are revoked.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub revoked: BTreeSet<String>,
}

/// The probe asking whether a session is revoked.
pub fn session_probe(sid: &str) -> String {
    format!("s:{sid}")
}

/// What applying a purge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// `false` when this purge id was applied before (nothing changed).
    pub applied: bool,
    pub generation: u64,
}

/// The ledger's state (the Durable Object persists it and keeps it in memory).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub latest: u64,
    pub floor: u64,
    pub items: HashMap<String, Mark>,
    /// Applied purge ids with their generation, oldest first.
    pub applied: VecDeque<(String, u64)>,
    /// Revoked sessions: id → the cookie's expiry (unix seconds).
    pub revoked: HashMap<String, i64>,
}

impl Ledger {
    /// Applies a purge once. Returns the outcome and what a persisted copy must drop
    /// (forgotten items, `i:`-prefixed, and purge ids, `a:`-prefixed).
    pub fn apply(&mut self, purge: &Purge) -> (Applied, Vec<String>) {
        if let Some((_, generation)) = self.applied.iter().find(|(id, _)| *id == purge.id) {
            let same = Applied {
                applied: false,
                generation: *generation,
            };
            return (same, Vec::new());
        }
        let items = items(purge);
        // A purge that names only sessions purges no entry: it takes no generation, so
        // the isolates' memos keep proving every stored entry clean without a round trip.
        if !items.is_empty() {
            self.latest += 1;
        }
        for item in items {
            let hard = match purge.change.mode {
                Mode::Hard => self.latest,
                Mode::Soft => self.items.get(&item).map_or(0, |m| m.hard),
            };
            let mark = Mark {
                generation: self.latest,
                mode: purge.change.mode,
                hard,
            };
            self.items.insert(item, mark);
        }
        let mut dropped = Vec::new();
        if self.applied.len() == MAX_APPLIED
            && let Some((id, _)) = self.applied.pop_front()
        {
            dropped.push(format!("a:{id}"));
        }
        self.applied.push_back((purge.id.clone(), self.latest));
        for session in &purge.change.sessions {
            let exp = self
                .revoked
                .entry(session.sid.clone())
                .or_insert(session.exp);
            *exp = (*exp).max(session.exp);
        }
        dropped.extend(self.bound().into_iter().map(|item| format!("i:{item}")));
        let applied = Applied {
            applied: true,
            generation: self.latest,
        };
        (applied, dropped)
    }

    /// Forgets the oldest items past [`MAX_ITEMS`], raising the floor to cover them;
    /// returns the forgotten items.
    fn bound(&mut self) -> Vec<String> {
        if self.items.len() <= MAX_ITEMS {
            return Vec::new();
        }
        let mut by_age: Vec<(u64, String)> = self
            .items
            .iter()
            .map(|(k, m)| (m.generation, k.clone()))
            .collect();
        by_age.sort_unstable();
        let excess = self.items.len() - MAX_ITEMS * 9 / 10;
        let mut forgotten = Vec::with_capacity(excess);
        for (generation, key) in by_age.into_iter().take(excess) {
            self.items.remove(&key);
            self.floor = self.floor.max(generation);
            forgotten.push(key);
        }
        forgotten
    }

    /// Forgets revocations whose cookies have expired by `now_secs`, then the soonest
    /// expiring past [`MAX_REVOKED`]; returns the forgotten session ids.
    pub fn prune_revoked(&mut self, now_secs: i64) -> Vec<String> {
        let mut gone: Vec<String> = self
            .revoked
            .iter()
            .filter(|(_, exp)| **exp < now_secs)
            .map(|(sid, _)| sid.clone())
            .collect();
        for sid in &gone {
            self.revoked.remove(sid);
        }
        if self.revoked.len() > MAX_REVOKED {
            let mut by_exp: Vec<(i64, String)> = self
                .revoked
                .iter()
                .map(|(sid, exp)| (*exp, sid.clone()))
                .collect();
            by_exp.sort_unstable();
            let excess = self.revoked.len() - MAX_REVOKED;
            for (_, sid) in by_exp.into_iter().take(excess) {
                self.revoked.remove(&sid);
                gone.push(sid);
            }
        }
        gone
    }

    /// The marks of `probes` (those the ledger knows), with latest and floor; session
    /// probes (`s:<sid>`) answer in `revoked`.
    pub fn check<'a>(&self, probes: impl IntoIterator<Item = &'a str>) -> Marks {
        let mut marks = Marks {
            latest: self.latest,
            floor: self.floor,
            ..Marks::default()
        };
        for probe in probes {
            if let Some(sid) = probe.strip_prefix("s:") {
                if self.revoked.contains_key(sid) {
                    marks.revoked.insert(sid.to_owned());
                }
            } else if let Some(mark) = self.items.get(probe) {
                marks.marks.insert(probe.to_owned(), *mark);
            }
        }
        marks
    }
}

/// A hit's standing against the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing purged it since it was stored.
    Clean,
    /// A purge covers it.
    Purged(Mode),
    /// The ledger could not be asked (or has forgotten that far back): revalidate.
    Unconfirmed,
}

/// An entry stored under `generation`, against the ledger's answer for its probes
/// (`None`: the ledger could not be reached).
pub fn verdict(generation: u64, marks: Option<&Marks>) -> Verdict {
    let Some(marks) = marks else {
        return Verdict::Unconfirmed;
    };
    if marks.latest <= generation {
        return Verdict::Clean;
    }
    let hard = marks.marks.values().any(|m| m.hard > generation);
    let any = marks.marks.values().any(|m| m.generation > generation);
    let strongest = match (hard, any) {
        (true, _) => Some(Mode::Hard),
        (false, true) => Some(Mode::Soft),
        (false, false) => None,
    };
    match strongest {
        Some(mode) => Verdict::Purged(mode),
        None if generation < marks.floor => Verdict::Unconfirmed,
        None => Verdict::Clean,
    }
}

/// What the edge does with an object it stored in R2 `derived/` (a derivative or a
/// working copy), given the verdict for the probes of its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Serve it (or make from it).
    Serve,
    /// A purge newer than the object covers its source or its URL: make it again (and
    /// overwrite it), whether or not the source's bytes changed — a purge is how an
    /// operator says "this derivative is wrong" (an encoder or colour fix).
    Remake,
}

/// The verdict's meaning for a stored derivative; `answered`: whether the ledger was
/// reached (or the memo spoke for it). `Unconfirmed` because the ledger cannot be asked
/// serves it: its key already holds the source ETag that R2 confirmed for this request,
/// the revalidation a cached image gets in that case too. `Unconfirmed` from a ledger
/// that answered means it has forgotten that far back (the object is older than its
/// floor): a purge since may have covered it, so it is made again.
pub fn reuse(verdict: Verdict, answered: bool) -> Reuse {
    match verdict {
        Verdict::Clean => Reuse::Serve,
        Verdict::Unconfirmed if !answered => Reuse::Serve,
        Verdict::Unconfirmed | Verdict::Purged(_) => Reuse::Remake,
    }
}

/// Whether a transform that waited for the isolate's slot may answer with the cache entry
/// another request stored meanwhile: only one proven clean. The waiting request may be
/// the refetch of a purged entry, which must never stand in for its own refetch, and
/// with the ledger unreachable it cannot be told apart.
pub fn may_share(verdict: Verdict) -> bool {
    verdict == Verdict::Clean
}

/// The probes of an object in R2 `derived/` made from the original at `source_path`
/// (`/media/<key>`): the original's URL and prefixes, and `url`, the derivative URL it is
/// asked for now (when one is: a queue job has none).
pub fn derived_probes(url: Option<&str>, source_path: &str) -> Vec<String> {
    probes(
        url.unwrap_or(source_path),
        &[],
        std::slice::from_ref(&source_path.to_owned()),
    )
}

/// Originals whose `derived/` folders a purge empties, at most.
pub const MAX_FOLDERS_EMPTIED: usize = 16;

/// The uploaded originals a purge names by URL (`/media/<key>`, any query ignored), whose
/// stored derivatives it deletes — at most [`MAX_FOLDERS_EMPTIED`]: past that, and for
/// tags and prefixes (whose originals only a listing of the bucket could name), the
/// generation each derivative records ([`reuse`]) is what keeps a purged one from being
/// served, and the next request overwrites it. Keys that do not parse are skipped.
pub fn originals_named(purge: &Purge) -> Vec<crate::assets::ObjectKey> {
    let mut keys: Vec<crate::assets::ObjectKey> = Vec::new();
    for url in &purge.change.urls {
        let path = url.split('?').next().unwrap_or(url);
        let Some(rest) = path.strip_prefix("/media/") else {
            continue;
        };
        let Ok(key) = crate::assets::ObjectKey::parse("", rest) else {
            continue;
        };
        if key.as_str().starts_with("derived/") || keys.contains(&key) {
            continue;
        }
        keys.push(key);
        if keys.len() == MAX_FOLDERS_EMPTIED {
            break;
        }
    }
    keys
}

/// Entries proven clean remembered per isolate, at most.
const MAX_CLEAN: usize = 10_000;

/// What an isolate remembers of the ledger for `memo_ms`: its latest generation and
/// floor, and the entries (by generation and probes) it proved clean up to a latest.
/// Every decision about trusting the memo is here; the glue only asks and stores.
#[derive(Debug, Default)]
pub struct Memo {
    latest: Option<(u64, u64, f64)>,
    clean: HashMap<String, (u64, f64)>,
}

impl Memo {
    /// The memoized latest generation, if younger than `memo_ms`.
    pub fn latest(&self, now_ms: f64, memo_ms: f64) -> Option<u64> {
        self.latest
            .filter(|(_, _, at)| now_ms - at < memo_ms)
            .map(|(latest, _, _)| latest)
    }

    /// `Some(Clean)` when the memo alone proves an entry stored under `generation` with
    /// `probes` clean: no purge newer than it (and it is above the floor), or the same
    /// entry was proven clean up to the memoized latest. `None`: ask the ledger.
    pub fn verdict(
        &self,
        generation: u64,
        probes: &[String],
        now_ms: f64,
        memo_ms: f64,
    ) -> Option<Verdict> {
        let (latest, floor, at) = self.latest?;
        if now_ms - at >= memo_ms {
            return None;
        }
        if latest <= generation && generation >= floor {
            return Some(Verdict::Clean);
        }
        let proven = self
            .clean
            .get(&Self::key(generation, probes))
            .is_some_and(|(upto, when)| *upto >= latest && now_ms - when < memo_ms);
        proven.then_some(Verdict::Clean)
    }

    /// Records the ledger's answer (and the verdict drawn from it) at `now_ms`.
    pub fn record(
        &mut self,
        generation: u64,
        probes: &[String],
        marks: &Marks,
        verdict: Verdict,
        now_ms: f64,
    ) {
        self.latest = Some((marks.latest, marks.floor, now_ms));
        if verdict == Verdict::Clean && !probes.is_empty() {
            if self.clean.len() >= MAX_CLEAN {
                self.clean.clear();
            }
            self.clean
                .insert(Self::key(generation, probes), (marks.latest, now_ms));
        }
    }

    /// A purge went through this isolate: trust nothing memoized.
    pub fn forget(&mut self) {
        self.latest = None;
    }

    fn key(generation: u64, probes: &[String]) -> String {
        format!("{generation}|{}", probes.join("|"))
    }
}

pub use protocol::auth::bearer_matches;

/// Sessions remembered per isolate, at most.
const MAX_SESSIONS_MEMO: usize = 10_000;

/// What an isolate remembers of session revocations for `memo_ms`: per session id,
/// whether the ledger said it was revoked, and when.
#[derive(Debug, Default)]
pub struct SessionMemo {
    seen: HashMap<String, (bool, f64)>,
}

/// A signed-in visitor's standing against the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStanding {
    Live,
    Revoked,
    /// The ledger could not be asked: the visitor is served as anonymous (a revoked
    /// session must not work because a Durable Object was unreachable).
    Unconfirmed,
}

impl SessionMemo {
    /// The memoized standing of `sid`, if younger than `memo_ms`.
    pub fn standing(&self, sid: &str, now_ms: f64, memo_ms: f64) -> Option<SessionStanding> {
        self.seen
            .get(sid)
            .filter(|(_, at)| now_ms - at < memo_ms)
            .map(|(revoked, _)| {
                if *revoked {
                    SessionStanding::Revoked
                } else {
                    SessionStanding::Live
                }
            })
    }

    /// Records the ledger's answer for `sid` (`None`: it could not be asked; nothing is
    /// remembered, so the next request asks again).
    pub fn record(&mut self, sid: &str, marks: Option<&Marks>, now_ms: f64) -> SessionStanding {
        let Some(marks) = marks else {
            return SessionStanding::Unconfirmed;
        };
        let revoked = marks.revoked.contains(sid);
        if self.seen.len() >= MAX_SESSIONS_MEMO {
            self.seen.clear();
        }
        self.seen.insert(sid.to_owned(), (revoked, now_ms));
        if revoked {
            SessionStanding::Revoked
        } else {
            SessionStanding::Live
        }
    }

    /// A purge went through this isolate: ask again.
    pub fn forget(&mut self) {
        self.seen.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::purge::Change;

    fn purge(id: &str, json: &str) -> Purge {
        Purge {
            id: id.into(),
            change: Change::parse(json.as_bytes()).unwrap(),
        }
    }

    fn verdict_of(
        ledger: &Ledger,
        generation: u64,
        path: &str,
        tags: &[&str],
        aliases: &[&str],
    ) -> Verdict {
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        let aliases: Vec<String> = aliases.iter().map(|t| t.to_string()).collect();
        let probes = probes(path, &tags, &aliases);
        verdict(
            generation,
            Some(&ledger.check(probes.iter().map(String::as_str))),
        )
    }

    #[test]
    fn a_stored_derivative_is_made_again_after_a_purge_of_its_source_in_either_mode() {
        let mut ledger = Ledger::default();
        ledger.apply(&purge("a", r#"{"urls":["/media/covers/a.jpg"]}"#));
        ledger.apply(&purge("b", r#"{"prefixes":["/media/team"],"mode":"soft"}"#));
        let source = |key: &str| vec![format!("/media/{key}")];
        let of = |generation: u64, path: &str, alias: &[String]| {
            let alias: Vec<&str> = alias.iter().map(String::as_str).collect();
            reuse(verdict_of(&ledger, generation, path, &[], &alias), true)
        };
        // Made before the purge of its source (hard, by URL; soft, by prefix): remade.
        assert_eq!(
            of(0, "/img/w=80/covers/a.jpg", &source("covers/a.jpg")),
            Reuse::Remake
        );
        assert_eq!(
            of(1, "/img/w=80/team/b.jpg", &source("team/b.jpg")),
            Reuse::Remake
        );
        // Made after it, or of another source: served.
        assert_eq!(
            of(2, "/img/w=80/covers/a.jpg", &source("covers/a.jpg")),
            Reuse::Serve
        );
        assert_eq!(
            of(0, "/img/w=80/covers/b.jpg", &source("covers/b.jpg")),
            Reuse::Serve
        );
        // The ledger unreachable: the source ETag in its key was just confirmed.
        assert_eq!(reuse(verdict(0, None), false), Reuse::Serve);
        // The ledger answered but forgot that far back (below its floor): made again.
        let forgot = Marks {
            latest: 9,
            floor: 5,
            ..Marks::default()
        };
        assert_eq!(verdict(2, Some(&forgot)), Verdict::Unconfirmed);
        assert_eq!(reuse(verdict(2, Some(&forgot)), true), Reuse::Remake);
        assert_eq!(reuse(verdict(6, Some(&forgot)), true), Reuse::Serve);
    }

    #[test]
    fn a_derived_object_answers_for_its_original_and_the_url_asked() {
        let probes = derived_probes(Some("/img/w=80/covers/a.jpg"), "/media/covers/a.jpg");
        for want in [
            "u:/img/w=80/covers/a.jpg",
            "u:/media/covers/a.jpg",
            "p:/media/covers",
            "p:/media",
        ] {
            assert!(probes.iter().any(|p| p == want), "{want}: {probes:?}");
        }
        let job = derived_probes(None, "/media/covers/a.jpg");
        assert!(job.iter().all(|p| !p.contains("/img/")), "{job:?}");
        assert!(job.iter().any(|p| p == "u:/media/covers/a.jpg"));
    }

    #[test]
    fn a_waiting_transform_shares_only_an_entry_proven_clean() {
        assert!(may_share(Verdict::Clean));
        assert!(!may_share(Verdict::Purged(Mode::Hard)));
        assert!(!may_share(Verdict::Purged(Mode::Soft)));
        assert!(!may_share(Verdict::Unconfirmed));
    }

    #[test]
    fn a_purge_empties_the_folders_of_the_originals_it_names_by_url_only() {
        let p = purge(
            "a",
            r#"{"urls":["/media/covers/a%20b.jpg?v=1","/media/covers/a%20b.jpg","/api/catalog","/media/derived/x","/media/../x"],"prefixes":["/media/covers"],"tags":["media"]}"#,
        );
        let keys: Vec<String> = originals_named(&p)
            .iter()
            .map(|k| k.as_str().to_owned())
            .collect();
        assert_eq!(keys, vec![String::from("covers/a b.jpg")]);
        let many: Vec<String> = (0..40).map(|i| format!("\"/media/k{i}.jpg\"")).collect();
        let p = purge("b", &format!(r#"{{"urls":[{}]}}"#, many.join(",")));
        assert_eq!(originals_named(&p).len(), MAX_FOLDERS_EMPTIED);
    }

    #[test]
    fn an_entry_stored_after_the_last_purge_is_clean_without_probing() {
        let mut ledger = Ledger::default();
        ledger.apply(&purge("a", r#"{"tags":["catalog"]}"#));
        assert_eq!(
            verdict_of(&ledger, 1, "/api/catalog", &["catalog"], &[]),
            Verdict::Clean
        );
        assert_eq!(
            verdict(
                5,
                Some(&Marks {
                    latest: 5,
                    ..Marks::default()
                })
            ),
            Verdict::Clean
        );
        assert_eq!(verdict(5, None), Verdict::Unconfirmed);
    }

    #[test]
    fn tags_urls_and_prefixes_purge_what_they_cover() {
        let mut ledger = Ledger::default();
        ledger.apply(&purge("a", r#"{"tags":["Course:7"]}"#));
        ledger.apply(&purge(
            "b",
            r#"{"urls":["/api/search?q=rust"],"mode":"soft"}"#,
        ));
        ledger.apply(&purge("c", r#"{"prefixes":["/media/covers/"]}"#));
        ledger.apply(&purge("d", r#"{"urls":["/api/feed"]}"#));
        let hard = Verdict::Purged(Mode::Hard);
        assert_eq!(
            verdict_of(&ledger, 0, "/api/courses/x", &["course:7", "catalog"], &[]),
            hard
        );
        assert_eq!(
            verdict_of(&ledger, 0, "/api/courses/y", &["course:8"], &[]),
            Verdict::Clean
        );
        assert_eq!(
            verdict_of(&ledger, 0, "/api/search?q=rust", &[], &[]),
            Verdict::Purged(Mode::Soft)
        );
        assert_eq!(
            verdict_of(&ledger, 0, "/api/search?q=go", &[], &[]),
            Verdict::Clean
        );
        // A URL without a query covers every query and variant of the path.
        assert_eq!(verdict_of(&ledger, 0, "/api/feed?x=1", &[], &[]), hard);
        assert_eq!(
            verdict_of(&ledger, 0, "/media/covers/a.jpg", &[], &[]),
            hard
        );
        assert_eq!(
            verdict_of(&ledger, 0, "/media/coversx/a.jpg", &[], &[]),
            Verdict::Clean
        );
        // A derivative answers for its source: purging the source reaches it.
        assert_eq!(
            verdict_of(
                &ledger,
                0,
                "/img/w=100/covers/a.jpg",
                &[],
                &["/media/covers/a.jpg"]
            ),
            hard
        );
        // Stored after the purge: clean again.
        assert_eq!(
            verdict_of(&ledger, 3, "/media/covers/a.jpg", &[], &[]),
            Verdict::Clean
        );
        assert_eq!(
            verdict_of(&ledger, 3, "/api/courses/x", &["course:7"], &[]),
            Verdict::Clean
        );
    }

    #[test]
    fn a_later_soft_purge_does_not_soften_an_earlier_hard_one() {
        let mut ledger = Ledger::default();
        ledger.apply(&purge("a", r#"{"tags":["x"]}"#));
        ledger.apply(&purge("b", r#"{"tags":["x"],"mode":"soft"}"#));
        // Stored before both: the hard purge still holds.
        assert_eq!(
            verdict_of(&ledger, 0, "/p", &["x"], &[]),
            Verdict::Purged(Mode::Hard)
        );
        // Stored between them: only the soft one covers it.
        assert_eq!(
            verdict_of(&ledger, 1, "/p", &["x"], &[]),
            Verdict::Purged(Mode::Soft)
        );
    }

    #[test]
    fn long_items_are_spelled_by_their_digest_on_both_sides() {
        let mut ledger = Ledger::default();
        let long = format!("/{}", "a".repeat(2000));
        ledger.apply(&purge("a", &format!(r#"{{"urls":["{long}"]}}"#)));
        assert!(ledger.items.keys().all(|k| k.len() <= MAX_ITEM_BYTES));
        assert_eq!(
            verdict_of(&ledger, 0, &long, &[], &[]),
            Verdict::Purged(Mode::Hard)
        );
        assert_eq!(verdict_of(&ledger, 0, "/b", &[], &[]), Verdict::Clean);
    }

    #[test]
    fn hard_wins_over_soft_and_a_repeated_purge_changes_nothing() {
        let mut ledger = Ledger::default();
        ledger.apply(&purge("a", r#"{"tags":["x"],"mode":"soft"}"#));
        ledger.apply(&purge("b", r#"{"tags":["y"]}"#));
        assert_eq!(
            verdict_of(&ledger, 0, "/p", &["x", "y"], &[]),
            Verdict::Purged(Mode::Hard)
        );
        let (again, dropped) = ledger.apply(&purge("a", r#"{"tags":["x"],"mode":"soft"}"#));
        assert!(dropped.is_empty());
        assert_eq!(
            again,
            Applied {
                applied: false,
                generation: 1
            }
        );
        assert_eq!(ledger.latest, 2);
    }

    #[test]
    fn a_bounded_ledger_revalidates_what_it_forgot() {
        let mut ledger = Ledger::default();
        let purges = MAX_ITEMS / 100 + 1;
        for i in 0..purges {
            let tags: Vec<String> = (0..100).map(|j| format!("\"t{i}-{j}\"")).collect();
            ledger.apply(&purge(
                &format!("p{i}"),
                &format!(r#"{{"tags":[{}]}}"#, tags.join(",")),
            ));
        }
        assert!(ledger.items.len() <= MAX_ITEMS);
        assert!(ledger.floor > 0);
        assert!(ledger.applied.len() <= MAX_APPLIED);
        // Stored before the floor, on a forgotten item: cannot be proven clean.
        assert_eq!(
            verdict_of(&ledger, 0, "/q", &["t0-0"], &[]),
            Verdict::Unconfirmed
        );
        // Stored before the floor, but a remembered item covers it: purged.
        let last = format!("t{}-99", purges - 1);
        assert_eq!(
            verdict_of(&ledger, 0, "/q", &[&last], &[]),
            Verdict::Purged(Mode::Hard)
        );
        // Stored after the floor and not covered: clean.
        assert_eq!(
            verdict_of(&ledger, ledger.floor, "/q", &["zzz"], &[]),
            Verdict::Clean
        );
    }

    #[test]
    fn the_memo_answers_only_what_it_can_prove_within_its_time() {
        let probes = vec![String::from("t:x")];
        let mut memo = Memo::default();
        assert_eq!(memo.verdict(5, &probes, 0.0, 1000.0), None, "empty: ask");
        let marks = Marks {
            latest: 5,
            floor: 0,
            ..Marks::default()
        };
        memo.record(5, &probes, &marks, Verdict::Clean, 0.0);
        assert_eq!(memo.latest(999.0, 1000.0), Some(5));
        assert_eq!(
            memo.verdict(5, &probes, 999.0, 1000.0),
            Some(Verdict::Clean)
        );
        assert_eq!(memo.verdict(5, &probes, 1000.0, 1000.0), None, "expired");
        // A newer purge than the entry: ask, unless this entry was proven clean at it.
        let newer = Marks {
            latest: 9,
            floor: 0,
            ..Marks::default()
        };
        memo.record(3, &probes, &newer, Verdict::Clean, 10.0);
        assert_eq!(memo.verdict(3, &probes, 20.0, 1000.0), Some(Verdict::Clean));
        assert_eq!(memo.verdict(4, &probes, 20.0, 1000.0), None);
        // Purged entries are never memoized as clean; below the floor: ask.
        memo.record(2, &probes, &newer, Verdict::Purged(Mode::Hard), 30.0);
        assert_eq!(memo.verdict(2, &probes, 40.0, 1000.0), None);
        let floored = Marks {
            latest: 9,
            floor: 8,
            ..Marks::default()
        };
        memo.record(0, &[], &floored, Verdict::Unconfirmed, 50.0);
        assert_eq!(memo.verdict(9, &probes, 60.0, 1000.0), Some(Verdict::Clean));
        assert_eq!(
            memo.verdict(7, &[String::from("t:y")], 60.0, 1000.0),
            None,
            "below the floor"
        );
        memo.forget();
        assert_eq!(
            memo.verdict(9, &probes, 60.0, 1000.0),
            None,
            "a purge passed here"
        );
        assert_eq!(memo.latest(60.0, 1000.0), None);
    }

    #[test]
    fn only_the_configured_bearer_secret_authorizes_a_purge() {
        let secret = Some("s".repeat(24));
        let good = format!("Bearer {}", "s".repeat(24));
        assert!(bearer_matches(Some(&good), secret.as_deref()));
        assert!(bearer_matches(
            Some(&good.replace("Bearer", "bearer")),
            secret.as_deref()
        ));
        for bad in [
            None,
            Some("Bearer"),
            Some("Bearer "),
            Some("Basic sss"),
            Some("Bearer wrong"),
        ] {
            assert!(!bearer_matches(bad, secret.as_deref()), "{bad:?}");
        }
        assert!(
            !bearer_matches(Some(&good), None),
            "no secret: nothing passes"
        );
        assert!(
            !bearer_matches(Some("Bearer "), Some("")),
            "an empty secret never matches"
        );
    }

    #[test]
    fn probes_are_bounded_by_the_path_and_the_tag_cap() {
        let tags: Vec<String> = (0..500).map(|i| format!("t{i}")).collect();
        let p = probes("/a/b/c?x=1", &tags, &[]);
        assert_eq!(p.len(), MAX_TAGS_PROBED + 2 + 4);
        assert!(p.contains(&String::from("u:/a/b/c?x=1")));
        assert!(p.contains(&String::from("p:/a")));
        assert!(p.contains(&String::from("p:/")));
    }

    fn revocation(id: &str, sid: &str, exp: i64) -> Purge {
        Purge {
            id: id.into(),
            change: Change {
                sessions: vec![protocol::purge::Revoked {
                    sid: sid.into(),
                    exp,
                }],
                ..Change::default()
            },
        }
    }

    #[test]
    fn a_revoked_session_is_reported_until_its_cookie_expires_and_never_forgotten_earlier() {
        let mut ledger = Ledger::default();
        ledger.apply(&revocation("r1", "sid-a", 1_000));
        assert_eq!(
            ledger.latest, 0,
            "a revocation purges no entry: no new generation"
        );
        let probe = session_probe("sid-a");
        let marks = ledger.check([probe.as_str(), "s:sid-b", "t:catalog"]);
        assert_eq!(marks.revoked.iter().collect::<Vec<_>>(), ["sid-a"]);
        // The item bound (tags, URLs) does not forget revocations.
        for i in 0..(MAX_ITEMS + 10) {
            ledger.apply(&purge(&format!("p{i}"), &format!(r#"{{"tags":["t{i}"]}}"#)));
        }
        assert!(ledger.floor > 0);
        assert!(ledger.check([probe.as_str()]).revoked.contains("sid-a"));
        // Expired cookies fail verification anyway: their revocations go.
        assert_eq!(ledger.prune_revoked(999), Vec::<String>::new());
        assert_eq!(ledger.prune_revoked(1_001), vec![String::from("sid-a")]);
        assert!(ledger.check([probe.as_str()]).revoked.is_empty());
    }

    #[test]
    fn past_the_cap_the_soonest_expiring_revocations_go_first() {
        let mut ledger = Ledger::default();
        for i in 0..(MAX_REVOKED + 3) {
            ledger.revoked.insert(format!("s{i}"), 10_000 + i as i64);
        }
        let mut gone = ledger.prune_revoked(0);
        gone.sort();
        assert_eq!(gone, ["s0", "s1", "s2"]);
        assert_eq!(ledger.revoked.len(), MAX_REVOKED);
    }

    #[test]
    fn the_session_memo_answers_within_its_time_and_never_remembers_an_unreachable_ledger() {
        let mut memo = SessionMemo::default();
        assert_eq!(memo.standing("a", 0.0, 1000.0), None);
        assert_eq!(memo.record("a", None, 0.0), SessionStanding::Unconfirmed);
        assert_eq!(memo.standing("a", 1.0, 1000.0), None, "asks again");
        let mut marks = Marks::default();
        assert_eq!(memo.record("a", Some(&marks), 0.0), SessionStanding::Live);
        assert_eq!(
            memo.standing("a", 999.0, 1000.0),
            Some(SessionStanding::Live)
        );
        assert_eq!(memo.standing("a", 1000.0, 1000.0), None, "the memo expired");
        marks.revoked.insert(String::from("a"));
        assert_eq!(
            memo.record("a", Some(&marks), 1000.0),
            SessionStanding::Revoked
        );
        assert_eq!(
            memo.standing("a", 1001.0, 1000.0),
            Some(SessionStanding::Revoked)
        );
        memo.forget();
        assert_eq!(memo.standing("a", 1001.0, 1000.0), None);
    }
}
