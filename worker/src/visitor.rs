//! The stable visitor id and experiment bucketing. Pure: the glue hands in the cookie
//! header and fresh random bytes; everything decided here is natively tested.
//!
//! **Visitor id**: the first-party cookie `ce_vid` (32 lowercase hex digits, 128 random
//! bits), set by the edge for every visitor who lacks a valid one
//! (`Secure; HttpOnly; SameSite=Lax`, 400 days). Sign-in and sign-out never touch it, so
//! a visitor keeps their arm across both.
//!
//! **Bucketing** (reproducible by any service): `h` = the first 8 bytes, big-endian, of
//! SHA-256 over the UTF-8 bytes of `"<salt>:<visitor id>"`; `point = h mod W`, where `W`
//! is the sum of the arms' integer weights; the arm is the first whose cumulative weight
//! exceeds `point`, arms taken in their configured order. Changing the salt reshuffles
//! everyone; so does changing the weights' sum `W` (keep it, e.g. at 100, and shift
//! weight between arms: then only visitors whose point crosses a boundary move).
//!
//! **Segments**: an experiment names the content classes it varies. For those classes
//! the arm joins the segment (`pro-en~hero=bold`) and is forwarded to the origin
//! (`x-course-experiments: hero=bold`); other classes never see it, so their hit ratio
//! is untouched. A class's segment cardinality is audiences × locales × the product of
//! its experiments' arm counts.

use sha2::{Digest, Sha256};

use crate::policy::{Audience, ContentClass};

/// The visitor-id cookie.
pub const COOKIE_NAME: &str = "ce_vid";
/// Its lifetime: 400 days, the most browsers keep a cookie.
pub const COOKIE_MAX_AGE_SECS: u64 = 400 * 24 * 3600;
/// The request header naming the arms the origin should render.
pub const EXPERIMENTS_HEADER: &str = protocol::headers::EXPERIMENTS;
/// At most this many experiments, each with at most this many arms.
pub const MAX_EXPERIMENTS: usize = 8;
pub const MAX_ARMS: usize = 8;

/// A visitor id: 16 bytes, spelled as 32 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitorId(String);

impl VisitorId {
    pub fn parse(raw: &str) -> Option<Self> {
        (raw.len() == 32 && raw.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Self(raw.to_owned()))
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `Set-Cookie` value that keeps it.
    pub fn set_cookie(&self) -> String {
        format!(
            "{COOKIE_NAME}={}; Path=/; Max-Age={COOKIE_MAX_AGE_SECS}; Secure; HttpOnly; SameSite=Lax",
            self.0
        )
    }
}

/// The visitor's id from the `Cookie` header, if it carries a valid one.
pub fn existing(cookie_header: Option<&str>) -> Option<VisitorId> {
    cookie_header.and_then(|header| {
        header
            .split(';')
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(name, _)| *name == COOKIE_NAME)
            .find_map(|(_, value)| VisitorId::parse(value.trim_matches('"')))
    })
}

/// The visitor's id from the `Cookie` header, or a new one from `fresh()` (then `true`:
/// the response must set it). `fresh` is called only for a visitor without an id.
pub fn identify(
    cookie_header: Option<&str>,
    fresh: impl FnOnce() -> [u8; 16],
) -> (VisitorId, bool) {
    match existing(cookie_header) {
        Some(id) => (id, false),
        None => (VisitorId::from_bytes(fresh()), true),
    }
}

/// Whether answers of `class` set the visitor-id cookie: the classes that are bucketed
/// (per segment) or personalized (pages, the sign-in form). Never on publicly cacheable
/// answers, which a cache downstream could replay with one visitor's id to many.
pub fn sets_cookie(class: ContentClass) -> bool {
    per_segment(class) || matches!(class, ContentClass::Html | ContentClass::Session)
}

/// One experiment from `EXPERIMENTS`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub name: String,
    pub salt: String,
    /// `[arm, weight]` in order.
    pub arms: Vec<(String, u32)>,
    /// The content classes it varies (`html`, `feed`, …).
    pub classes: Vec<String>,
}

/// Whether the policy table keys `class` per segment (the default table: a deployment's
/// overrides change TTLs, not audiences).
fn per_segment(class: ContentClass) -> bool {
    crate::policy::table::default_policy(class).audience == Audience::PerSegment
}

fn is_token(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Parses and checks `EXPERIMENTS` (a JSON array). Classes must be per-segment classes:
/// only they have a segment for the arm to join.
pub fn parse_experiments(raw: &str) -> Result<Vec<Experiment>, String> {
    let experiments: Vec<Experiment> = serde_json::from_str(raw).map_err(|e| {
        format!(
            "not a JSON array of {{name, salt, arms: [[arm, weight]…], classes: [class…]}}: {e}"
        )
    })?;
    if experiments.len() > MAX_EXPERIMENTS {
        return Err(format!("at most {MAX_EXPERIMENTS} experiments"));
    }
    for (i, e) in experiments.iter().enumerate() {
        if !is_token(&e.name) || experiments[..i].iter().any(|o| o.name == e.name) {
            return Err(format!(
                "experiment {:?}: names are unique, 1-32 of a-z 0-9 -",
                e.name
            ));
        }
        if e.salt.is_empty() || e.salt.len() > 64 {
            return Err(format!("experiment {}: the salt is 1-64 bytes", e.name));
        }
        if !(2..=MAX_ARMS).contains(&e.arms.len()) {
            return Err(format!("experiment {}: 2-{MAX_ARMS} arms", e.name));
        }
        for (j, (arm, weight)) in e.arms.iter().enumerate() {
            if !is_token(arm) || e.arms[..j].iter().any(|(o, _)| o == arm) {
                return Err(format!(
                    "experiment {}: arm {arm:?}: unique, 1-32 of a-z 0-9 -",
                    e.name
                ));
            }
            if !(1..=10_000).contains(weight) {
                return Err(format!("experiment {}: arm {arm}: weight 1-10000", e.name));
            }
        }
        if e.classes.is_empty() {
            return Err(format!("experiment {}: name the classes it varies", e.name));
        }
        for class in &e.classes {
            let known = ContentClass::ALL.iter().find(|c| c.as_str() == class);
            match known {
                Some(c) if per_segment(*c) => {}
                _ => {
                    return Err(format!(
                        "experiment {}: {class:?} is not a per-segment class ({})",
                        e.name,
                        ContentClass::ALL
                            .iter()
                            .filter(|c| per_segment(**c))
                            .map(|c| c.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        }
    }
    Ok(experiments)
}

/// The visitor's point in `0..total` under `salt` (the module docs' algorithm; the
/// canary buckets with it too).
pub fn bucket_point(salt: &str, visitor: &VisitorId, total: u64) -> u64 {
    let digest = Sha256::digest(format!("{salt}:{}", visitor.as_str()).as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(head) % total.max(1)
}

impl Experiment {
    /// The visitor's arm (see the module docs for the algorithm).
    pub fn arm(&self, visitor: &VisitorId) -> &str {
        let total: u64 = self.arms.iter().map(|(_, w)| u64::from(*w)).sum();
        let point = bucket_point(&self.salt, visitor, total);
        let mut upto = 0;
        for (arm, weight) in &self.arms {
            upto += u64::from(*weight);
            if point < upto {
                return arm;
            }
        }
        // Unreachable: point < total = the last cumulative weight.
        self.arms.last().map_or("", |(arm, _)| arm)
    }

    pub fn varies(&self, class: ContentClass) -> bool {
        self.classes.iter().any(|c| c == class.as_str())
    }
}

/// The visitor's arms in the experiments that vary `class`, as `name=arm` pairs in
/// config order.
pub fn arms_for(
    experiments: &[Experiment],
    class: ContentClass,
    visitor: &VisitorId,
) -> Vec<(String, String)> {
    experiments
        .iter()
        .filter(|e| e.varies(class))
        .map(|e| (e.name.clone(), e.arm(visitor).to_owned()))
        .collect()
}

/// The segment a cache key carries: the audience segment, then `~name=arm` per arm.
pub fn segment_key(segment: &str, arms: &[(String, String)]) -> String {
    let mut key = segment.to_owned();
    for (name, arm) in arms {
        key.push('~');
        key.push_str(name);
        key.push('=');
        key.push_str(arm);
    }
    key
}

/// The `x-course-experiments` value (`hero=bold, pricing=b`), or `None` without arms.
pub fn experiments_header(arms: &[(String, String)]) -> Option<String> {
    (!arms.is_empty()).then(|| {
        arms.iter()
            .map(|(n, a)| format!("{n}={a}"))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

#[cfg(test)]
mod tests;
