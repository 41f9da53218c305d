use super::*;

fn url(raw: &str) -> RemoteUrl {
    RemoteUrl::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"))
}

fn policy(patterns: &str) -> RemotePolicy {
    RemotePolicy::parse(patterns, false).unwrap()
}

#[test]
fn urls_are_parsed_once_and_spelled_one_way() {
    let u = url("https://Images.Example.com/a/b.jpg?v=2");
    assert_eq!(u.host, "images.example.com");
    assert_eq!(
        (u.path.as_str(), u.query.as_deref()),
        ("/a/b.jpg", Some("v=2"))
    );
    assert_eq!(u.as_string(), "https://images.example.com/a/b.jpg?v=2");
    // Merged slashes (some proxies) and a port.
    assert_eq!(
        url("https:/cdn.example.com:8443/x.png").as_string(),
        "https://cdn.example.com:8443/x.png"
    );
    assert_eq!(url("https://h.example").path, "/");
    for bad in [
        "ftp://h/x.jpg",
        "https://user:pw@h/x.jpg",
        "https://h/x.jpg#frag",
        "https://h/a/../secret",
        "https://h/a/%2E%2E/secret",
        "https://h/a/./b",
        "https://h:0/x",
        "https://h:99999/x",
        "https://h x/y",
        "https://",
        "https://h/\u{e9}",
        "https://h/ok/..\\private/x.jpg",
        "https://h/ok/%2e%2e%5Cprivate/x.jpg",
        "https://h/ok/..%2Fprivate/x.jpg",
        "https://[::1]junk/x",
        &format!("https://h/{}", "a".repeat(MAX_URL_BYTES)),
    ] {
        assert!(RemoteUrl::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_list_admits_hosts_and_path_prefixes_only() {
    let p = policy(
        "https://images.example.com/courses/, https://*.cdn.example.net/, http://127.0.0.1:9000/ok/",
    );
    for ok in [
        "https://images.example.com/courses/a.jpg",
        "https://eu.cdn.example.net/anything.png",
        "https://a.b.cdn.example.net/x",
    ] {
        assert_eq!(p.admit(&url(ok)), Ok(()), "{ok}");
    }
    for (bad, why) in [
        ("https://images.example.com/private/a.jpg", "not listed"),
        (
            "https://images.example.com.evil.net/courses/a.jpg",
            "not listed",
        ),
        (
            "https://cdn.example.net/x",
            "the wildcard is subdomains only",
        ),
        ("https://evilcdn.example.net/x", "not a subdomain"),
        (
            "http://images.example.com/courses/a.jpg",
            "the scheme counts",
        ),
        (
            "https://images.example.com:444/courses/a.jpg",
            "the port counts",
        ),
    ] {
        assert!(
            matches!(p.admit(&url(bad)), Err(RemoteError::NotAllowed(_))),
            "{bad}: {why}"
        );
    }
    // Literal private addresses are refused even when listed, unless development.
    assert!(matches!(
        p.admit(&url("http://127.0.0.1:9000/ok/a.jpg")),
        Err(RemoteError::Private(_))
    ));
    let dev = RemotePolicy::parse("http://127.0.0.1:9000/ok/", true).unwrap();
    assert_eq!(dev.admit(&url("http://127.0.0.1:9000/ok/a.jpg")), Ok(()));
    // No list: no remote fetch at all.
    assert_eq!(
        RemotePolicy::default().admit(&url("https://a.example/x")),
        Err(RemoteError::Off)
    );
    assert!(RemotePolicy::parse("https://h/x?q=1", false).is_err());
    assert!(RemotePolicy::parse("h/x", false).is_err());
    // One wildcard level is stripped, never more.
    let nested = policy("https://*.wildcard.example.com/");
    assert_eq!(nested.patterns[0].host, "*.wildcard.example.com");
}

#[test]
fn private_and_loopback_literals_in_every_spelling() {
    for private in [
        "127.0.0.1",
        "127.1",
        "2130706433",
        "0x7f.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "localhost",
        "api.localhost",
        "localhost.",
        "[::1]",
        "[::]",
        "[fc00::1]",
        "[fe80::1]",
        "[::ffff:127.0.0.1]",
        "[::7f00:1]",
        "[64:ff9b::a9fe:a9fe]",
        "[2002:c0a8:0101::1]",
        "[fec0::1]",
    ] {
        assert!(is_private_host(private), "{private}");
    }
    for public in [
        "8.8.8.8",
        "images.example.com",
        "1e100.net",
        "[2606:4700::1111]",
        "100.128.0.1",
    ] {
        assert!(!is_private_host(public), "{public}");
    }
}

#[test]
fn redirects_are_followed_only_inside_the_list_and_only_three_times() {
    let p = policy("https://images.example.com/, https://other.example.com/ok/");
    let from = url("https://images.example.com/a.jpg");
    assert_eq!(next_hop(&p, &from, 200, None, 0), Ok(Hop::Body));
    assert_eq!(next_hop(&p, &from, 304, None, 0), Ok(Hop::NotModified));
    assert_eq!(
        next_hop(&p, &from, 302, Some("/b.jpg"), 0),
        Ok(Hop::Redirect(url("https://images.example.com/b.jpg")))
    );
    assert_eq!(
        next_hop(
            &p,
            &from,
            301,
            Some("https://other.example.com/ok/c.jpg"),
            2
        ),
        Ok(Hop::Redirect(url("https://other.example.com/ok/c.jpg")))
    );
    assert!(matches!(
        next_hop(
            &p,
            &from,
            307,
            Some("https://other.example.com/no/c.jpg"),
            0
        ),
        Err(RemoteError::NotAllowed(_))
    ));
    // A listed pattern for a private literal would not help: the address is refused
    // before the list is read.
    let open = policy("https://images.example.com/, http://169.254.169.254/");
    assert!(matches!(
        next_hop(
            &open,
            &from,
            302,
            Some("http://169.254.169.254/latest/meta-data"),
            0
        ),
        Err(RemoteError::Private(_))
    ));
    // A backslash in a Location cannot step out of the prefix (`fetch` reads it as `/`).
    let narrow = policy("https://images.example.com/public/");
    let inside = url("https://images.example.com/public/a.jpg");
    assert!(matches!(
        next_hop(
            &narrow,
            &inside,
            302,
            Some("https://images.example.com/public/..\\private/x.jpg"),
            0
        ),
        Err(RemoteError::BadUrl(_))
    ));
    assert!(matches!(
        next_hop(&p, &from, 302, Some("/b.jpg"), 3),
        Err(RemoteError::Redirects(_))
    ));
    assert!(matches!(
        next_hop(&p, &from, 302, None, 0),
        Err(RemoteError::Redirects(_))
    ));
    assert!(matches!(
        next_hop(&p, &from, 302, Some("b.jpg"), 0),
        Err(RemoteError::Redirects(_))
    ));
    assert!(matches!(
        next_hop(&p, &from, 302, Some("//evil.example/x"), 0),
        Err(RemoteError::Redirects(_))
    ));
    assert_eq!(
        next_hop(&p, &from, 404, None, 0),
        Err(RemoteError::NotFound)
    );
    assert_eq!(
        next_hop(&p, &from, 503, None, 0),
        Err(RemoteError::Upstream(503))
    );
    assert_eq!(RemoteError::Upstream(503).status(), 502);
    assert_eq!(RemoteError::Off.status(), 403);
}

#[test]
fn a_source_is_versioned_by_etag_then_date_then_bytes() {
    assert_eq!(
        version_of(Some("\"abc\""), Some("Tue, 01 Dec 2026 00:00:00 GMT"), b"x"),
        "\"abc\""
    );
    assert_eq!(
        version_of(None, Some("Tue, 01 Dec 2026 00:00:00 GMT"), b"x"),
        "\"lm:Tue, 01 Dec 2026 00:00:00 GMT\""
    );
    let a = version_of(None, None, b"one");
    assert!(a.starts_with("\"sha256:") && a != version_of(None, None, b"two"));
    assert_eq!(a, version_of(Some(""), None, b"one"));
    assert_ne!(
        original_cache_key(&url("https://h.example/a.jpg")),
        original_cache_key(&url("https://h.example/a.jpg?v=2"))
    );
}

#[test]
fn only_the_hosts_own_etag_is_sent_back_as_a_validator() {
    let date = version_of(None, Some("Tue, 01 Dec 2026 00:00:00 GMT"), b"x");
    let digest = version_of(None, None, b"x");
    assert_eq!(conditional("\"abc\""), Some("\"abc\""));
    assert_eq!(conditional("W/\"abc\""), Some("W/\"abc\""));
    assert_eq!(conditional(&date), None);
    assert_eq!(conditional(&digest), None);
}

#[test]
fn the_extension_names_the_type_the_format_decision_goes_on() {
    for (raw, want) in [
        ("https://h.example/a.JPG", "image/jpeg"),
        ("https://h.example/a.jpeg?w=1", "image/jpeg"),
        ("https://h.example/p/a.png", "image/png"),
        ("https://h.example/a.gif", "image/gif"),
        ("https://h.example/a.WebP", "image/webp"),
        ("https://h.example/a", ""),
        ("https://h.example/dir.jpg/a", ""),
        ("https://h.example/a.avif", ""),
    ] {
        assert_eq!(url(raw).named_type(), want, "{raw}");
    }
}
