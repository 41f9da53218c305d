use super::*;

fn experiment(arms: &[(&str, u32)]) -> Experiment {
    Experiment {
        name: String::from("hero"),
        salt: String::from("2026-12"),
        arms: arms.iter().map(|(a, w)| (a.to_string(), *w)).collect(),
        classes: vec![String::from("html")],
    }
}

fn ids(n: u32) -> impl Iterator<Item = VisitorId> {
    (0..n).map(|i| {
        let digest = Sha256::digest(i.to_be_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        VisitorId::from_bytes(bytes)
    })
}

/// Pearson's chi-square of observed counts against the weights.
fn chi_square(counts: &[u64], weights: &[u32]) -> f64 {
    let n: u64 = counts.iter().sum();
    let total: u32 = weights.iter().sum();
    counts
        .iter()
        .zip(weights)
        .map(|(&o, &w)| {
            let e = n as f64 * f64::from(w) / f64::from(total);
            (o as f64 - e).powi(2) / e
        })
        .sum()
}

#[test]
fn arms_are_balanced_by_weight_over_100k_ids() {
    // Critical values at p = 0.001: 10.83 (1 degree of freedom), 13.82 (2).
    for (arms, critical) in [
        (vec![("control", 50), ("bold", 50)], 10.83),
        (vec![("a", 70), ("b", 20), ("c", 10)], 13.82),
    ] {
        let e = experiment(&arms);
        let mut counts = vec![0u64; arms.len()];
        for id in ids(100_000) {
            let arm = e.arm(&id);
            let i = arms.iter().position(|(a, _)| *a == arm).unwrap();
            counts[i] += 1;
        }
        let weights: Vec<u32> = arms.iter().map(|(_, w)| *w).collect();
        let chi = chi_square(&counts, &weights);
        assert!(chi < critical, "{arms:?}: {counts:?} chi2 {chi:.2}");
    }
}

#[test]
fn bucketing_is_stable_and_reproducible_from_the_documented_algorithm() {
    let e = experiment(&[("control", 50), ("bold", 50)]);
    let id = VisitorId::parse("00112233445566778899aabbccddeeff").unwrap();
    // By hand, as another service would: SHA-256("2026-12:<id>"), first 8 bytes BE, mod 100.
    let digest = Sha256::digest(b"2026-12:00112233445566778899aabbccddeeff");
    let point = u64::from_be_bytes(digest[..8].try_into().unwrap()) % 100;
    let expected = if point < 50 { "control" } else { "bold" };
    assert_eq!(e.arm(&id), expected);
    for _ in 0..3 {
        assert_eq!(e.arm(&id), expected, "the same id always gets the same arm");
    }
    // A new salt reshuffles: over 1000 ids, some change arm.
    let mut other = e.clone();
    other.salt = String::from("2027-01");
    let moved = ids(1000).filter(|id| e.arm(id) != other.arm(id)).count();
    assert!((350..650).contains(&moved), "{moved}");
}

#[test]
fn the_visitor_id_comes_from_its_cookie_or_is_new() {
    let fresh = [0xab; 16];
    let (id, new) = identify(
        Some("a=1; ce_vid=00112233445566778899aabbccddeeff; ce_session=x"),
        || unreachable!("a visitor with an id needs no new one"),
    );
    assert_eq!(
        (id.as_str(), new),
        ("00112233445566778899aabbccddeeff", false)
    );
    for header in [
        None,
        Some("ce_vid=short"),
        Some("ce_vid=00112233445566778899AABBCCDDEEFF"),
        Some("ce_vid=00112233445566778899aabbccddeeff00"),
        Some("xce_vid=00112233445566778899aabbccddeeff"),
    ] {
        let (id, new) = identify(header, || fresh);
        assert!(new, "{header:?}");
        assert_eq!(id.as_str(), "ab".repeat(16));
    }
    let cookie = VisitorId::from_bytes(fresh).set_cookie();
    for attr in [
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=34560000",
    ] {
        assert!(cookie.contains(attr), "{cookie}");
    }
}

#[test]
fn arms_join_the_segment_only_for_the_classes_an_experiment_varies() {
    let experiments = parse_experiments(
        r#"[{"name":"hero","salt":"s","arms":[["a",1],["b",1]],"classes":["html"]},
            {"name":"feed-rank","salt":"t","arms":[["x",1],["y",3]],"classes":["feed","html"]}]"#,
    )
    .unwrap();
    let id = VisitorId::from_bytes([7; 16]);
    let html = arms_for(&experiments, ContentClass::Html, &id);
    assert_eq!(html.len(), 2);
    let key = segment_key("pro-en", &html);
    assert!(
        key.starts_with("pro-en~hero=") && key.contains("~feed-rank="),
        "{key}"
    );
    assert_eq!(arms_for(&experiments, ContentClass::Feed, &id).len(), 1);
    assert!(arms_for(&experiments, ContentClass::Catalog, &id).is_empty());
    assert_eq!(segment_key("anon-en", &[]), "anon-en");
    assert_eq!(experiments_header(&[]), None);
    assert_eq!(
        experiments_header(&html).unwrap(),
        format!("hero={}, feed-rank={}", html[0].1, html[1].1)
    );
}

#[test]
fn bad_experiment_configs_are_refused_with_the_reason() {
    for (raw, says) in [
        ("{}", "JSON array"),
        (
            r#"[{"name":"Hero","salt":"s","arms":[["a",1],["b",1]],"classes":["html"]}]"#,
            "names",
        ),
        (
            r#"[{"name":"h","salt":"","arms":[["a",1],["b",1]],"classes":["html"]}]"#,
            "salt",
        ),
        (
            r#"[{"name":"h","salt":"s","arms":[["a",1]],"classes":["html"]}]"#,
            "2-8 arms",
        ),
        (
            r#"[{"name":"h","salt":"s","arms":[["a",1],["a",1]],"classes":["html"]}]"#,
            "unique",
        ),
        (
            r#"[{"name":"h","salt":"s","arms":[["a",0],["b",1]],"classes":["html"]}]"#,
            "weight",
        ),
        (
            r#"[{"name":"h","salt":"s","arms":[["a",1],["b",1]],"classes":["catalog"]}]"#,
            "per-segment",
        ),
        (
            r#"[{"name":"h","salt":"s","arms":[["a",1],["b",1]],"classes":[]}]"#,
            "classes",
        ),
        (
            r#"[{"name":"h","salt":"s","arms":[["a",1],["b",1]],"classes":["html"],"x":1}]"#,
            "unknown field",
        ),
    ] {
        let err = parse_experiments(raw).unwrap_err();
        assert!(err.contains(says), "{raw}: {err}");
    }
}

#[test]
fn only_bucketed_or_personalized_classes_set_the_visitor_cookie() {
    assert!(sets_cookie(ContentClass::Html));
    assert!(sets_cookie(ContentClass::Session));
    assert!(sets_cookie(ContentClass::Feed));
    for class in [
        ContentClass::Catalog,
        ContentClass::Search,
        ContentClass::PassThrough,
        ContentClass::Image,
    ] {
        assert!(!sets_cookie(class), "{class:?}");
    }
}
