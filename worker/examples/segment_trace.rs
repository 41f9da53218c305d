//! Replays a synthetic trace against an edge cache keyed the way the worker keys pages,
//! to measure what segments and experiments cost in hit ratio. Used by
//! `scripts/bench-segments`; the keys come from the production code (`visitor::arms_for`,
//! `visitor::segment_key`), the cache is a TTL map like one location's Cache API.
//!
//! Trace: `PAGES` pages with Zipf(s) popularity; visitors from a pool, each with a fixed
//! audience and locale drawn from the demo's mix and a sticky visitor id; requests
//! arrive at a fixed rate; an entry is fresh for the html class's edge TTL.
//!
//! Usage: segment_trace [requests] [rate per second] [zipf s]

use std::collections::HashMap;

use course_edge_worker::policy::ContentClass;
use course_edge_worker::visitor::{
    Experiment, VisitorId, arms_for, parse_experiments, segment_key,
};

const PAGES: usize = 300;
const VISITORS: usize = 20_000;
/// The html class's edge TTL (policy table), seconds.
const TTL_SECS: f64 = 60.0;

/// splitmix64: a fixed, seedable generator, so every run replays the same trace.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick(&mut self, cdf: &[f64]) -> usize {
        let u = self.unit();
        cdf.partition_point(|c| *c < u).min(cdf.len() - 1)
    }
}

fn cdf(weights: &[f64]) -> Vec<f64> {
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    weights
        .iter()
        .map(|w| {
            acc += w / total;
            acc
        })
        .collect()
}

struct Visitor {
    id: VisitorId,
    segment: String,
}

/// How a page request is keyed.
#[derive(Clone, Copy)]
enum Keying {
    /// One entry per page (what a page without personalization would get).
    Shared,
    /// Per audience × locale segment (this project, no experiment).
    Segment,
    /// Per segment × the experiments' arms.
    SegmentAndArms,
    /// One entry per visitor (what caching a filled page per user would get).
    PerUser,
}

fn replay(
    keying: Keying,
    experiments: &[Experiment],
    visitors: &[Visitor],
    requests: usize,
    rate: f64,
    zipf: &[f64],
    visit_cdf: &[f64],
) -> (f64, usize) {
    let mut rng = Rng(42);
    let mut fresh_until: HashMap<String, f64> = HashMap::new();
    let mut hits = 0usize;
    for n in 0..requests {
        let now = n as f64 / rate;
        let page = rng.pick(zipf);
        let who = &visitors[rng.pick(visit_cdf)];
        let key = match keying {
            Keying::Shared => format!("{page}"),
            Keying::Segment => format!("{page}|{}", who.segment),
            Keying::SegmentAndArms => {
                let arms = arms_for(experiments, ContentClass::Html, &who.id);
                format!("{page}|{}", segment_key(&who.segment, &arms))
            }
            Keying::PerUser => format!("{page}|{}", who.id.as_str()),
        };
        match fresh_until.get(&key) {
            Some(until) if *until > now => hits += 1,
            _ => {
                fresh_until.insert(key, now + TTL_SECS);
            }
        }
    }
    (hits as f64 / requests as f64, fresh_until.len())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let requests: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let rate: f64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(20.0);
    let s: f64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(1.0);

    let zipf = cdf(&(1..=PAGES)
        .map(|k| 1.0 / (k as f64).powf(s))
        .collect::<Vec<_>>());
    // The demo's mix: audiences anon 70 %, free 20 %, pro 10 %; locales en 70 %, de 15 %,
    // fr 15 %. Visitor activity is itself skewed (Zipf 0.8 over the pool).
    let audiences = [("anon", 0.70), ("free", 0.20), ("pro", 0.10)];
    let locales = [("en", 0.70), ("de", 0.15), ("fr", 0.15)];
    let audience_cdf = cdf(&audiences.map(|(_, w)| w));
    let locale_cdf = cdf(&locales.map(|(_, w)| w));
    let mut rng = Rng(7);
    let visitors: Vec<Visitor> = (0..VISITORS)
        .map(|_| {
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&rng.next().to_be_bytes());
            bytes[8..].copy_from_slice(&rng.next().to_be_bytes());
            let audience = audiences[rng.pick(&audience_cdf)].0;
            let locale = locales[rng.pick(&locale_cdf)].0;
            Visitor {
                id: VisitorId::from_bytes(bytes),
                segment: format!("{audience}-{locale}"),
            }
        })
        .collect();
    let visit_cdf = cdf(&(1..=VISITORS)
        .map(|k| 1.0 / (k as f64).powf(0.8))
        .collect::<Vec<_>>());

    let one = parse_experiments(
        r#"[{"name":"hero","salt":"2026-12","arms":[["control",50],["bold",50]],"classes":["html"]}]"#,
    )
    .unwrap_or_default();
    let two = parse_experiments(
        r#"[{"name":"hero","salt":"2026-12","arms":[["control",50],["bold",50]],"classes":["html"]},
            {"name":"cta","salt":"2026-12b","arms":[["a",34],["b",33],["c",33]],"classes":["html"]}]"#,
    )
    .unwrap_or_default();

    println!(
        "segment trace: {requests} requests at {rate}/s over {PAGES} pages (Zipf s={s}), {VISITORS} visitors, TTL {TTL_SECS} s"
    );
    println!("segments: 3 audiences x 3 locales = 9; x arms per experiment varying html");
    println!(
        "{:<44} {:>9} {:>12} {:>10}",
        "keying", "hit ratio", "keys", "vs shared"
    );
    let (shared, _) = replay(
        Keying::Shared,
        &[],
        &visitors,
        requests,
        rate,
        &zipf,
        &visit_cdf,
    );
    for (name, keying, experiments) in [
        ("shared (no personalization)", Keying::Shared, &[][..]),
        ("per segment (9)", Keying::Segment, &[][..]),
        (
            "per segment x hero (2 arms: 18)",
            Keying::SegmentAndArms,
            &one[..],
        ),
        (
            "per segment x hero x cta (6 arms: 54)",
            Keying::SegmentAndArms,
            &two[..],
        ),
        ("per user (the strawman)", Keying::PerUser, &[][..]),
    ] {
        let (ratio, keys) = replay(
            keying,
            experiments,
            &visitors,
            requests,
            rate,
            &zipf,
            &visit_cdf,
        );
        println!(
            "{name:<44} {:>8.1}% {keys:>12} {:>9.2}x",
            ratio * 100.0,
            ratio / shared
        );
    }
}
