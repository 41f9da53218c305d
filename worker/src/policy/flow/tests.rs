//! The decision core, table-driven: every class through every transition.

use super::*;
use crate::policy::stored::Meta;
use crate::policy::table::PolicyTable;

const T0: f64 = 1_764_000_000_000.0;

fn policy(class: ContentClass) -> Policy {
    PolicyTable::default().get(class)
}

/// The lifetimes an entry of `class` is stored with (pass-through: what an origin's
/// `max-age=300, stale-while-revalidate=60, stale-if-error=600` gives).
fn lifetimes(class: ContentClass) -> Lifetimes {
    match class {
        ContentClass::PassThrough => Lifetimes {
            edge: 300,
            swr: 60,
            sie: 600,
        },
        _ => policy(class).lifetimes(),
    }
}

fn entry(class: ContentClass, etag: Option<&str>) -> Entry {
    Entry {
        meta: Meta {
            status: 200,
            stored_at_ms: T0,
            initial_age: 0,
            lifetimes: lifetimes(class),
            length: Some(1000),
            source: None,
            generation: 0,
        },
        etag: etag.map(str::to_owned),
        last_modified: None,
        origin_cache_control: None,
        vary: Vec::new(),
        tags: Vec::new(),
    }
}

fn at(secs: u32) -> f64 {
    T0 + f64::from(secs) * 1000.0
}

fn upstream(status: u16, cache_control: Option<&str>) -> Upstream {
    Upstream {
        status,
        directives: OriginDirectives::parse(cache_control, None, false),
        age: 0,
        length: Some(10),
        etag: Some(String::from("\"v2\"")),
        last_modified: None,
        degraded: false,
        request_cookie: false,
        tags: vec![String::from("course:1")],
    }
}

/// Classes whose entries the cache keeps (all but sessions).
fn cached_classes() -> impl Iterator<Item = ContentClass> {
    ContentClass::ALL
        .into_iter()
        .filter(|c| *c != ContentClass::Session)
}

const FULL: Answer = Answer::Full { head: false };

#[test]
fn failures_are_5xx_and_429_only() {
    for status in [500, 502, 503, 504, 599, 429] {
        assert!(is_failure(status), "{status}");
    }
    for status in [200, 204, 301, 304, 400, 404, 410, 415, 422, 428, 499] {
        assert!(!is_failure(status), "{status}");
    }
}

#[test]
fn who_bypasses_the_cache() {
    for class in ContentClass::ALL {
        let p = policy(class);
        let get = Ask::get();
        let post = Ask {
            method: Method::Post,
            ..Ask::get()
        };
        let authorized = Ask {
            authorization: true,
            ..Ask::get()
        };
        let never_shared = class == ContentClass::Session;
        assert_eq!(
            start(p, &post),
            Start::Bypass(NoStoreReason::Method),
            "{class}"
        );
        let want = if never_shared {
            Start::Bypass(NoStoreReason::ClassPolicy)
        } else {
            Start::Lookup
        };
        assert_eq!(start(p, &get), want, "{class}");
        let want = match class {
            ContentClass::Session => Start::Bypass(NoStoreReason::ClassPolicy),
            // Only the class that forwards credentials can answer per credential.
            ContentClass::PassThrough => Start::Bypass(NoStoreReason::Authorization),
            _ => Start::Lookup,
        };
        assert_eq!(start(p, &authorized), want, "{class} with Authorization");
    }
}

#[test]
fn lookup_walks_fresh_stale_and_expired_for_every_class() {
    for class in cached_classes() {
        let l = lifetimes(class);
        let ask = Ask::get();
        assert_eq!(
            on_lookup(&ask, None, T0),
            OnLookup::Fetch { conditional: false },
            "{class}: nothing stored"
        );
        let e = entry(class, Some("\"v1\""));
        let hit = OnLookup::Serve {
            cache: EdgeCacheStatus::Hit,
            answer: FULL,
            refresh: false,
        };
        assert_eq!(on_lookup(&ask, Some(&e), at(0)), hit, "{class}");
        assert_eq!(on_lookup(&ask, Some(&e), at(l.edge - 1)), hit, "{class}");
        let past_edge = on_lookup(&ask, Some(&e), at(l.edge));
        if l.swr > 0 {
            assert_eq!(
                past_edge,
                OnLookup::Serve {
                    cache: EdgeCacheStatus::Stale,
                    answer: FULL,
                    refresh: true
                },
                "{class}: inside stale-while-revalidate"
            );
        } else {
            assert_eq!(past_edge, OnLookup::Fetch { conditional: true }, "{class}");
        }
        let past_swr = at(l.edge.saturating_add(l.swr));
        assert_eq!(
            on_lookup(&ask, Some(&e), past_swr),
            OnLookup::Fetch { conditional: true },
            "{class}: past stale-while-revalidate, validators held"
        );
        let no_validators = entry(class, None);
        assert_eq!(
            on_lookup(&ask, Some(&no_validators), past_swr),
            OnLookup::Fetch { conditional: false },
            "{class}: nothing to revalidate with"
        );
    }
}

#[test]
fn an_edge_made_entry_revalidates_by_its_source_version() {
    let mut e = entry(ContentClass::Image, None);
    e.meta.source = Some(String::from("\"src1\""));
    let past = at(lifetimes(ContentClass::Image).edge + 2 * 86_400);
    assert_eq!(
        on_lookup(&Ask::get(), Some(&e), past),
        OnLookup::Fetch { conditional: true }
    );
}

#[test]
fn upstream_outcomes_for_every_class() {
    for class in cached_classes() {
        let p = policy(class);
        let l = lifetimes(class);
        let ask = Ask::get();
        let e = entry(class, Some("\"v1\""));
        // Inside stale-if-error (or the longer stale window) and past it.
        let window = l.swr.max(l.sie);
        let usable = at(l.edge);
        let gone = at(l.edge.saturating_add(window));
        let stale = if window > 0 {
            OnUpstream::ServeStale { answer: FULL }
        } else {
            // No stale window (hashed static): nothing may stand in.
            OnUpstream::Fail
        };
        let run = |entry: Option<&Entry>, outcome: Outcome<'_>, now| {
            on_upstream(class, p, &ask, entry, outcome, now)
        };

        assert_eq!(run(Some(&e), Outcome::Failed, usable), stale, "{class}");
        assert_eq!(run(Some(&e), Outcome::Failed, gone), OnUpstream::Fail);
        assert_eq!(run(None, Outcome::Failed, usable), OnUpstream::Fail);
        for status in [500, 502, 503, 504, 429] {
            let up = upstream(status, Some("max-age=60"));
            let want = if window > 0 {
                stale
            } else {
                OnUpstream::Pass {
                    reason: NoStoreReason::Status,
                }
            };
            assert_eq!(
                run(Some(&e), Outcome::Answered(&up), usable),
                want,
                "{class} {status}"
            );
            assert_eq!(
                run(Some(&e), Outcome::Answered(&up), gone),
                OnUpstream::Pass {
                    reason: NoStoreReason::Status
                },
                "{class} {status}: passed on, never stored"
            );
        }

        let cc = (class == ContentClass::PassThrough)
            .then_some("max-age=300, stale-while-revalidate=60, stale-if-error=600");
        let not_modified = upstream(304, cc);
        assert_eq!(
            run(Some(&e), Outcome::Answered(&not_modified), gone),
            OnUpstream::Revalidated {
                lifetimes: l,
                answer: FULL
            },
            "{class}"
        );
        assert_eq!(
            run(None, Outcome::Answered(&not_modified), gone),
            OnUpstream::Pass {
                reason: NoStoreReason::Status
            },
            "{class}: a 304 we did not ask for"
        );

        let ok = upstream(200, cc);
        assert_eq!(
            run(None, Outcome::Answered(&ok), T0),
            OnUpstream::Store {
                lifetimes: l,
                answer: FULL
            },
            "{class}"
        );
        let mut cookie = upstream(200, cc);
        cookie.directives.set_cookie = true;
        assert_eq!(
            run(None, Outcome::Answered(&cookie), T0),
            OnUpstream::Pass {
                reason: NoStoreReason::SetCookie
            },
            "{class}"
        );
    }
}

#[test]
fn a_client_conditional_is_answered_from_the_entry_just_stored() {
    let ask = Ask {
        if_none_match: Some(String::from("\"v2\"")),
        ..Ask::get()
    };
    let ok = upstream(200, None);
    assert_eq!(
        on_upstream(
            ContentClass::Catalog,
            policy(ContentClass::Catalog),
            &ask,
            None,
            Outcome::Answered(&ok),
            T0
        ),
        OnUpstream::Store {
            lifetimes: lifetimes(ContentClass::Catalog),
            answer: Answer::NotModified
        }
    );
}

#[test]
fn answers_honour_conditionals_ranges_and_head() {
    let lm = "Wed, 25 Nov 2026 10:00:00 GMT";
    let etag = Some("\"abc\"");
    let ask = |f: &dyn Fn(&mut Ask)| {
        let mut a = Ask::get();
        f(&mut a);
        a
    };
    let range = |start, end| {
        Some(ByteRange::From {
            start,
            end: Some(end),
        })
    };
    let table: Vec<(Ask, u16, Option<u64>, Answer)> = vec![
        (Ask::get(), 200, Some(100), FULL),
        (
            ask(&|a| a.method = Method::Head),
            200,
            Some(100),
            Answer::Full { head: true },
        ),
        (
            ask(&|a| a.if_none_match = Some("W/\"abc\"".into())),
            200,
            Some(100),
            Answer::NotModified,
        ),
        (
            ask(&|a| a.if_modified_since = Some(lm.into())),
            200,
            Some(100),
            Answer::NotModified,
        ),
        (
            ask(&|a| a.range = range(10, 19)),
            200,
            Some(100),
            Answer::Partial {
                start: 10,
                end: 19,
                size: 100,
                head: false,
            },
        ),
        (
            ask(&|a| a.range = range(200, 300)),
            200,
            Some(100),
            Answer::Unsatisfiable { size: 100 },
        ),
        // If-Range: the range only applies to the version the client holds.
        (
            ask(&|a| {
                a.range = range(0, 9);
                a.if_range = Some("\"abc\"".into());
            }),
            200,
            Some(100),
            Answer::Partial {
                start: 0,
                end: 9,
                size: 100,
                head: false,
            },
        ),
        (
            ask(&|a| {
                a.range = range(0, 9);
                a.if_range = Some("\"old\"".into());
            }),
            200,
            Some(100),
            FULL,
        ),
        (
            ask(&|a| {
                a.range = range(0, 9);
                a.if_range = Some(lm.into());
            }),
            200,
            Some(100),
            Answer::Partial {
                start: 0,
                end: 9,
                size: 100,
                head: false,
            },
        ),
        // No length known, or not a 200: the whole thing.
        (ask(&|a| a.range = range(0, 9)), 200, None, FULL),
        (ask(&|a| a.range = range(0, 9)), 404, Some(100), FULL),
        (
            ask(&|a| a.if_none_match = Some("\"abc\"".into())),
            404,
            Some(100),
            FULL,
        ),
    ];
    for (ask, status, length, want) in table {
        assert_eq!(
            answer(&ask, status, etag, Some(lm), length),
            want,
            "{ask:?} {status}"
        );
    }
    assert_eq!(Answer::NotModified.status(200), 304);
    assert!(!Answer::Full { head: true }.has_body());
    assert!(!Answer::NotModified.has_body());
}

#[test]
fn a_degraded_answer_lives_no_longer_than_the_origin_says() {
    let p = policy(ContentClass::Feed);
    let mut shed = upstream(200, Some("public, max-age=30"));
    shed.degraded = true;
    let got = on_upstream(
        ContentClass::Feed,
        p,
        &Ask::get(),
        None,
        Outcome::Answered(&shed),
        T0,
    );
    assert_eq!(
        got,
        OnUpstream::Store {
            lifetimes: Lifetimes {
                edge: 30,
                swr: 0,
                sie: 0
            },
            answer: FULL
        }
    );
    let mut no_lifetime = upstream(200, None);
    no_lifetime.degraded = true;
    assert_eq!(
        on_upstream(
            ContentClass::Feed,
            p,
            &Ask::get(),
            None,
            Outcome::Answered(&no_lifetime),
            T0
        ),
        OnUpstream::Pass {
            reason: NoStoreReason::Degraded
        }
    );
}

#[test]
fn an_image_that_fails_to_transform_is_remembered_briefly() {
    let p = image_policy(policy(ContentClass::Image), 60);
    for status in [415, 422] {
        let failed = upstream(status, None);
        assert_eq!(
            on_upstream(
                ContentClass::Image,
                p,
                &Ask::get(),
                None,
                Outcome::Answered(&failed),
                T0
            ),
            OnUpstream::Store {
                lifetimes: Lifetimes {
                    edge: FAILED_TRANSFORM_SECS,
                    swr: 0,
                    sie: 0
                },
                answer: FULL
            }
        );
    }
    assert_eq!(p.edge, 60);
    assert_eq!(p.swr, policy(ContentClass::Image).swr);
    assert_eq!(image_policy(policy(ContentClass::Image), 0).edge, 1);
    let versioned = versioned_image_policy(p);
    assert!(versioned.immutable && versioned.browser == 31_536_000);
    assert_eq!(versioned.edge, 60, "the edge still rechecks the source");
    assert_eq!(
        emitted(versioned, 200, &OriginDirectives::default(), None, None).cache_control,
        Edit::Set(String::from(
            "public, max-age=31536000, stale-if-error=604800, immutable"
        ))
    );
}

#[test]
fn pass_through_stores_any_final_status_with_explicit_freshness() {
    let p = policy(ContentClass::PassThrough);
    let run = |status: u16, cc: Option<&str>| {
        let up = upstream(status, cc);
        on_upstream(
            ContentClass::PassThrough,
            p,
            &Ask::get(),
            None,
            Outcome::Answered(&up),
            T0,
        )
    };
    let store = |edge| OnUpstream::Store {
        lifetimes: Lifetimes {
            edge,
            swr: 0,
            sie: 0,
        },
        answer: FULL,
    };
    for status in [200, 204, 301, 302, 303, 307, 308, 404, 410] {
        assert_eq!(run(status, Some("max-age=60")), store(60), "{status}");
        assert_eq!(
            run(status, None),
            OnUpstream::Pass {
                reason: NoStoreReason::NoLifetime
            },
            "{status}: no heuristic freshness"
        );
    }
    for status in [206, 304, 101, 403, 418] {
        assert!(
            matches!(
                run(status, Some("max-age=60")),
                OnUpstream::Pass {
                    reason: NoStoreReason::Status
                }
            ),
            "{status}"
        );
    }
    // A pass-through 304 brings new freshness.
    let mut e = entry(ContentClass::PassThrough, Some("\"v1\""));
    e.meta.lifetimes = Lifetimes {
        edge: 5,
        swr: 0,
        sie: 0,
    };
    let renewed = upstream(304, Some("max-age=90"));
    assert_eq!(
        on_upstream(
            ContentClass::PassThrough,
            p,
            &Ask::get(),
            Some(&e),
            Outcome::Answered(&renewed),
            at(10)
        ),
        OnUpstream::Revalidated {
            lifetimes: Lifetimes {
                edge: 90,
                swr: 0,
                sie: 0
            },
            answer: FULL
        }
    );
    let silent = upstream(304, None);
    assert_eq!(
        on_upstream(
            ContentClass::PassThrough,
            p,
            &Ask::get(),
            Some(&e),
            Outcome::Answered(&silent),
            at(10)
        ),
        OnUpstream::Revalidated {
            lifetimes: e.meta.lifetimes,
            answer: FULL
        }
    );
}

#[test]
fn age_on_arrival_counts_toward_freshness() {
    let now = at(0);
    assert_eq!(initial_age(Some("40"), None, now), 40);
    assert_eq!(initial_age(None, None, now), 0);
    assert_eq!(initial_age(Some("junk"), None, now), 0);
    let ten_ago = http_date::format((now / 1000.0) as i64 - 10);
    assert_eq!(initial_age(Some("3"), Some(&ten_ago), now), 10);
    assert_eq!(initial_age(Some("99999999999"), None, now), u32::MAX);
    let mut e = entry(ContentClass::PassThrough, None);
    e.meta.initial_age = 290;
    assert_eq!(
        on_lookup(&Ask::get(), Some(&e), at(10)),
        OnLookup::Serve {
            cache: EdgeCacheStatus::Stale,
            answer: FULL,
            refresh: true
        },
        "300 s of freshness, 290 spent upstream"
    );
}

#[test]
fn expires_without_date_counts_from_receipt() {
    let now = at(0);
    let secs = (now / 1000.0) as i64;
    let in_90 = http_date::format(secs + 90);
    assert_eq!(expires_in(Some(&in_90), None, now), Some(90));
    let date = http_date::format(secs - 30);
    assert_eq!(expires_in(Some(&in_90), Some(&date), now), Some(120));
    assert_eq!(
        expires_in(Some("0"), None, now),
        Some(0),
        "invalid = expired"
    );
    assert_eq!(expires_in(None, None, now), None);
}

#[test]
fn emitted_headers_per_class() {
    let d = OriginDirectives::default();
    for class in cached_classes().filter(|c| *c != ContentClass::PassThrough) {
        let p = policy(class);
        let l = lifetimes(class);
        let fresh = emitted(p, 200, &d, Some(l), None);
        assert_eq!(
            fresh.cdn_cache_control,
            Edit::Set(l.cdn_cache_control()),
            "{class}: CDN-Cache-Control says what the edge does"
        );
        assert_eq!(fresh.age, None);
        let aged = emitted(p, 200, &d, Some(l), Some(100));
        assert_eq!(aged.age, Some(100));
        let want_browser = if p.browser > 0 && !p.immutable {
            p.browser + 100
        } else {
            p.browser
        };
        let Edit::Set(cc) = aged.cache_control else {
            panic!("{class}: a policy class always says")
        };
        assert!(
            cc.contains(&format!("max-age={want_browser}")) || cc.contains("no-cache"),
            "{class}: {cc}"
        );
        let unstored = emitted(p, 200, &d, None, None);
        assert_eq!(unstored.cdn_cache_control, Edit::Remove, "{class}");
    }
    let p = policy(ContentClass::PassThrough);
    for cc in ["no-store", "max-age=60, must-revalidate", "private"] {
        let d = OriginDirectives::parse(Some(cc), None, false);
        let e = emitted(p, 200, &d, None, None);
        assert_eq!(e.cache_control, Edit::Keep, "verbatim");
        assert_eq!(e.cdn_cache_control, Edit::Keep);
        assert_eq!(e.age, None);
    }
    let e = emitted(p, 200, &OriginDirectives::default(), None, Some(7));
    assert_eq!(e.age, Some(7), "an upstream Age is passed on");
}

#[test]
fn a_304_updates_the_stored_headers() {
    let mut stored: Vec<(String, String)> = [
        ("content-type", "application/json"),
        ("etag", "\"v1\""),
        ("x-origin-cache", "hit"),
        ("cache-tag", "a"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    let update: Vec<(String, String)> = [
        ("etag", "\"v1\""),
        ("cache-tag", "a,b"),
        ("x-custom", "new"),
        ("content-length", "0"),
        ("connection", "x-hop"),
        ("x-hop", "1"),
        ("content-type", "text/plain"),
        ("set-cookie", "sid=one-users"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    merge_not_modified(&mut stored, &update);
    let get = |n: &str| {
        stored
            .iter()
            .filter(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(get("cache-tag"), ["a,b"]);
    assert_eq!(get("x-custom"), ["new"]);
    assert_eq!(get("x-origin-cache"), ["hit"], "kept when not in the 304");
    assert_eq!(get("content-type"), ["application/json"]);
    assert!(get("content-length").is_empty());
    assert!(get("x-hop").is_empty(), "Connection-listed");
    assert!(get("connection").is_empty());
    assert!(
        get("set-cookie").is_empty(),
        "one user's cookie never enters an entry"
    );
}

#[test]
fn a_304_is_held_to_the_rules_of_a_full_answer() {
    let run = |class: ContentClass, e: &Entry, up: &Upstream| {
        on_upstream(
            class,
            policy(class),
            &Ask::get(),
            Some(e),
            Outcome::Answered(up),
            at(10_000_000),
        )
    };
    let e = entry(ContentClass::Catalog, Some("\"v1\""));
    for prohibit in ["private", "no-store"] {
        let up = upstream(304, Some(prohibit));
        assert_eq!(
            run(ContentClass::Catalog, &e, &up),
            OnUpstream::Confirmed { answer: FULL },
            "{prohibit}"
        );
    }
    let mut cookie = upstream(304, None);
    cookie.directives.set_cookie = true;
    assert_eq!(
        run(ContentClass::Catalog, &cookie_entry(&e), &cookie),
        OnUpstream::Confirmed { answer: FULL }
    );
    // A remembered failed transform keeps its short life when its source is unchanged.
    let mut failed = entry(ContentClass::Image, None);
    failed.meta.status = 422;
    failed.meta.source = Some(String::from("\"s\""));
    assert_eq!(
        run(ContentClass::Image, &failed, &upstream(304, None)),
        OnUpstream::Revalidated {
            lifetimes: Lifetimes {
                edge: FAILED_TRANSFORM_SECS,
                swr: 0,
                sie: 0
            },
            answer: FULL
        }
    );
    // A degraded 304 lives no longer than the origin says.
    let mut shed = upstream(304, Some("max-age=30"));
    shed.degraded = true;
    let feed = entry(ContentClass::Feed, Some("\"f\""));
    assert_eq!(
        run(ContentClass::Feed, &feed, &shed),
        OnUpstream::Revalidated {
            lifetimes: Lifetimes {
                edge: 30,
                swr: 0,
                sie: 0
            },
            answer: FULL
        }
    );
}

fn cookie_entry(e: &Entry) -> Entry {
    e.clone()
}

#[test]
fn connection_lists_hop_by_hop_names() {
    assert_eq!(
        connection_listed(Some("close, X-Foo ,keep-alive")),
        ["close", "x-foo", "keep-alive"]
    );
    assert!(connection_listed(None).is_empty());
    for name in ["connection", "transfer-encoding", "x-ce-meta", "age"] {
        assert!(!replayable(name), "{name}");
    }
    assert!(replayable("etag"));
}

#[test]
fn only_bodies_of_known_bounded_length_are_stored() {
    let p = policy(ContentClass::Static);
    let run = |status: u16, length: Option<u64>| {
        let up = Upstream {
            length,
            ..upstream(status, None)
        };
        on_upstream(
            ContentClass::Static,
            p,
            &Ask::get(),
            None,
            Outcome::Answered(&up),
            T0,
        )
    };
    let size = OnUpstream::Pass {
        reason: NoStoreReason::Size,
    };
    assert_eq!(run(200, None), size, "unknown length");
    assert_eq!(run(200, Some(MAX_STORED_BYTES + 1)), size);
    assert!(matches!(
        run(200, Some(MAX_STORED_BYTES)),
        OnUpstream::Store { .. }
    ));
    assert!(
        matches!(run(204, None), OnUpstream::Store { .. }),
        "no body"
    );
}

#[test]
fn browsers_never_keep_an_error() {
    for status in [400, 403, 415, 422] {
        let e = emitted(
            policy(ContentClass::Image),
            status,
            &OriginDirectives::default(),
            Some(Lifetimes {
                edge: FAILED_TRANSFORM_SECS,
                swr: 0,
                sie: 0,
            }),
            None,
        );
        assert_eq!(
            e.cache_control,
            Edit::Set(String::from("no-store")),
            "{status}"
        );
        assert_eq!(e.cdn_cache_control, Edit::Set(String::from("max-age=60")));
    }
}

#[test]
fn a_vary_the_key_already_carries_does_not_stop_storage() {
    let run = |class: ContentClass, vary: &str| {
        let up = Upstream {
            directives: OriginDirectives::parse(Some("max-age=60"), Some(vary), false),
            ..upstream(200, Some("max-age=60"))
        };
        on_upstream(
            class,
            policy(class),
            &Ask::get(),
            None,
            Outcome::Answered(&up),
            T0,
        )
    };
    assert!(matches!(
        run(ContentClass::Image, "Accept"),
        OnUpstream::Store { .. }
    ));
    assert!(matches!(
        run(ContentClass::Image, "Accept, Accept-Encoding"),
        OnUpstream::Store { .. }
    ));
    let vary = OnUpstream::Pass {
        reason: NoStoreReason::Vary,
    };
    assert_eq!(run(ContentClass::Image, "Accept, Cookie"), vary);
    assert_eq!(run(ContentClass::Catalog, "Accept"), vary);
    // The pass-through class keeps one variant per value of what Vary names.
    assert!(matches!(
        run(ContentClass::PassThrough, "User-Agent, Cookie"),
        OnUpstream::Store { .. }
    ));
    let d = |v: &str| OriginDirectives::parse(None, Some(v), false);
    assert_eq!(
        variant_names(
            ContentClass::PassThrough,
            &d("User-Agent, Accept-Encoding").vary
        ),
        ["user-agent"]
    );
    assert!(
        variant_names(ContentClass::Image, &d("Accept").vary).is_empty(),
        "keyed already"
    );
    assert!(variant_names(ContentClass::PassThrough, &d("").vary).is_empty());
}

#[test]
fn parts_and_refusals_are_not_for_downstream_caches() {
    let base = emitted(
        policy(ContentClass::MediaSegment),
        200,
        &OriginDirectives::default(),
        Some(lifetimes(ContentClass::MediaSegment)),
        Some(5),
    );
    let refused = for_answer(base.clone(), Answer::Unsatisfiable { size: 10 });
    assert_eq!(refused.cache_control, Edit::Set(String::from("no-store")));
    assert_eq!(refused.cdn_cache_control, Edit::Remove);
    let part = for_answer(
        base.clone(),
        Answer::Partial {
            start: 0,
            end: 1,
            size: 10,
            head: false,
        },
    );
    assert_eq!(part.cdn_cache_control, Edit::Remove);
    assert_eq!(part.cache_control, base.cache_control);
    assert_eq!(for_answer(base.clone(), FULL), base);
    assert!(omitted_from(Answer::NotModified, "content-type"));
    assert!(!omitted_from(Answer::NotModified, "etag"));
    assert!(!omitted_from(FULL, "content-type"));
    assert_eq!(served_age(true, 0), Some(0));
    assert_eq!(served_age(false, 0), None);
    assert_eq!(served_age(false, 30), Some(30));
    for status in [204, 304, 205] {
        assert!(null_body_status(status));
    }
    assert!(!null_body_status(200));
}

#[test]
fn a_successful_write_invalidates_its_url() {
    assert!(invalidates(Method::Post, 201));
    assert!(invalidates(Method::Delete, 204));
    assert!(invalidates(Method::Other, 303));
    assert!(!invalidates(Method::Post, 500));
    assert!(!invalidates(Method::Post, 404));
    assert!(!invalidates(Method::Get, 200));
    assert!(!invalidates(Method::Head, 200));
}

#[test]
fn a_ranged_miss_waits_only_for_a_small_body() {
    let part = Answer::Partial {
        start: 0,
        end: 1,
        size: 100,
        head: false,
    };
    assert_eq!(range_on_miss(part, Some(100)), part);
    assert_eq!(range_on_miss(part, Some(RANGE_AFTER_STORE_MAX)), part);
    assert_eq!(range_on_miss(part, Some(RANGE_AFTER_STORE_MAX + 1)), FULL);
    assert_eq!(range_on_miss(part, None), FULL);
    assert_eq!(
        range_on_miss(Answer::NotModified, None),
        Answer::NotModified
    );
}

#[test]
fn entries_are_derived_from_what_upstream_said() {
    let l = lifetimes(ContentClass::Catalog);
    let up = Upstream {
        age: 4,
        ..upstream(200, Some("max-age=60"))
    };
    let fresh = new_entry(&up, Some(String::from("\"src\"")), l, T0, 7);
    assert_eq!(fresh.meta.generation, 7);
    assert_eq!(fresh.tags, ["course:1"]);
    assert_eq!(fresh.meta.stored_at_ms, T0);
    assert_eq!(fresh.meta.initial_age, 4);
    assert_eq!(fresh.meta.length, Some(10));
    assert_eq!(fresh.etag.as_deref(), Some("\"v2\""));
    assert_eq!(fresh.origin_cache_control.as_deref(), Some("max-age=60"));
    assert_eq!(fresh.meta.source.as_deref(), Some("\"src\""));

    let headers: Vec<(String, String)> = vec![
        (String::from("etag"), String::from("\"v3\"")),
        (String::from("cache-control"), String::from("max-age=90")),
    ];
    let not_modified = Upstream {
        age: 1,
        ..upstream(304, None)
    };
    let again = revalidated_entry(&fresh, &headers, &not_modified, l, at(100), 9);
    assert_eq!(
        again.meta.generation, 9,
        "revalidated under the generation read before"
    );
    assert_eq!(again.meta.stored_at_ms, at(100));
    assert_eq!(again.meta.initial_age, 1);
    assert_eq!(again.meta.status, 200, "the entry's own status");
    assert_eq!(again.meta.length, Some(10));
    assert_eq!(
        again.etag.as_deref(),
        Some("\"v3\""),
        "validators from the merged headers"
    );
    assert_eq!(again.origin_cache_control.as_deref(), Some("max-age=90"));
    let kept = revalidated_entry(&fresh, &[], &not_modified, l, at(100), 9);
    assert_eq!(
        kept.etag, fresh.etag,
        "absent from the headers: the entry's own"
    );
}

/// The purge check, for every cached class: a clean entry follows the clock; a hard
/// purge refetches and never lets the entry stand in; a soft purge serves the stale copy
/// while one revalidation runs (only inside its stale-if-error window, and only with a
/// validator to revalidate with); an unconfirmed entry is revalidated before serving.
#[test]
fn purge_verdicts_for_every_class() {
    use crate::policy::purge::Verdict;
    use protocol::purge::Mode;
    let ask = Ask::get();
    for class in cached_classes() {
        let e = entry(class, Some("\"v1\""));
        let fresh = at(0);
        assert_eq!(
            on_checked_lookup(&ask, Some(&e), Verdict::Clean, fresh),
            on_lookup(&ask, Some(&e), fresh),
            "{class}"
        );
        assert_eq!(
            on_checked_lookup(&ask, Some(&e), Verdict::Purged(Mode::Hard), fresh),
            OnLookup::Refetch,
            "{class}"
        );
        assert_eq!(
            on_checked_lookup(&ask, Some(&e), Verdict::Purged(Mode::Soft), fresh),
            OnLookup::Serve {
                cache: EdgeCacheStatus::Stale,
                answer: Answer::Full { head: false },
                refresh: true
            },
            "{class}"
        );
        assert_eq!(
            on_checked_lookup(&ask, Some(&e), Verdict::Unconfirmed, fresh),
            OnLookup::Fetch { conditional: true },
            "{class}"
        );
        // Soft, without a validator to revalidate with: refetched.
        let bare = entry(class, None);
        assert_eq!(
            on_checked_lookup(&ask, Some(&bare), Verdict::Purged(Mode::Soft), fresh),
            OnLookup::Refetch,
            "{class}"
        );
        assert_eq!(
            on_checked_lookup(&ask, Some(&bare), Verdict::Unconfirmed, fresh),
            OnLookup::Fetch { conditional: false },
            "{class}"
        );
        // Soft, past the stale-if-error window: refetched, never served.
        let l = e.meta.lifetimes;
        let past = at(l.edge.saturating_add(l.sie).saturating_add(1));
        assert_eq!(
            on_checked_lookup(&ask, Some(&e), Verdict::Purged(Mode::Soft), past),
            OnLookup::Refetch,
            "{class}"
        );
        // No entry: whatever the ledger says, an unconditional fetch.
        for v in [
            Verdict::Clean,
            Verdict::Unconfirmed,
            Verdict::Purged(Mode::Hard),
        ] {
            assert_eq!(
                on_checked_lookup(&ask, None, v, fresh),
                OnLookup::Fetch { conditional: false }
            );
        }
    }
}

/// Unconfirmed (the ledger down) and the origin down too: the entry stands in only
/// inside its stale-if-error window.
#[test]
fn unconfirmed_entries_stand_in_only_as_stale_on_error() {
    let ask = Ask::get();
    for class in cached_classes() {
        let e = entry(class, Some("\"v1\""));
        let l = e.meta.lifetimes;
        let inside = on_upstream(class, policy(class), &ask, Some(&e), Outcome::Failed, at(0));
        assert!(matches!(inside, OnUpstream::ServeStale { .. }), "{class}");
        let past = at(l.edge.saturating_add(l.sie).saturating_add(1));
        let outside = on_upstream(class, policy(class), &ask, Some(&e), Outcome::Failed, past);
        assert_eq!(outside, OnUpstream::Fail, "{class}");
    }
}

#[test]
fn an_answer_with_more_tags_than_an_entry_keeps_is_never_stored() {
    let tags = |n: usize| {
        (0..n)
            .map(|i| format!("t{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let read = |value: String| {
        Upstream::read(
            200,
            |name| match name {
                "cache-control" => Some(String::from("public, max-age=60")),
                "cache-tag" => Some(value.clone()),
                _ => None,
            },
            0.0,
            false,
        )
    };
    let fits = read(tags(crate::policy::purge::MAX_TAGS_PROBED));
    assert!(!fits.directives.no_store);
    assert_eq!(fits.tags.len(), crate::policy::purge::MAX_TAGS_PROBED);
    // One more: a purge of the dropped tag could not reach the entry, so there is none.
    let over = read(tags(crate::policy::purge::MAX_TAGS_PROBED + 1));
    assert!(over.directives.no_store);
}
