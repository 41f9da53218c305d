use super::*;
use protocol::Plan;

const PAGE: &str = concat!(
    r#"<!doctype html><html><head><title>t</title></head><body>"#,
    r#"<div class="account"><span data-edge-plan="free pro">Hi, <span data-edge="user-name">there</span></span>"#,
    r#"<a data-edge="account" href="/signin">Sign in</a></div>"#,
    r#"<div class="cta"><a data-edge-plan="anon" href="/signin?next=/c">Sign in to enrol</a>"#,
    r#"<a data-edge-plan="pro" href="/learn/c/1">Start</a>"#,
    r#"<a data-edge-plan="free" href="/?q=pro">Upgrade</a></div>"#,
    r#"<img src="/media/demo/rhythm.jpg" alt="a" sizes="22rem" width="3840" height="2400">"#,
    r#"<img src="/media/demo/tiny.png" width="120" height="80">"#,
    r#"<img src="/static/logo.png" width="10" height="10">"#,
    r#"<p>data-edge="user-name" in text stays text</p></body></html>"#,
);

fn member(plan: Plan, name: &str) -> Viewer {
    Viewer {
        audience: Audience::Member(plan),
        name: Some(name.to_owned()),
    }
}

fn open() -> Responsive {
    Responsive::new(None, None)
}

fn run(viewer: &Viewer) -> String {
    String::from_utf8(rewrite_all(PAGE.as_bytes(), viewer, &open())).unwrap()
}

#[test]
fn a_member_sees_their_name_their_plans_call_to_action_and_a_sign_out_form() {
    let html = run(&member(Plan::Pro, "Ada"));
    assert!(html.contains("Hi, <span>Ada</span>"), "{html}");
    assert!(html.contains(r#"<form method="post" action="/signout">"#));
    assert!(!html.contains("Sign in</a>"));
    assert!(html.contains(r#"<a href="/learn/c/1">Start</a>"#));
    assert!(!html.contains("Upgrade") && !html.contains("Sign in to enrol"));
    assert!(!html.contains("data-edge-plan"), "marks are consumed");

    let free = run(&member(Plan::Free, "Bo"));
    assert!(free.contains("Upgrade") && !free.contains(">Start<"));
}

#[test]
fn an_anonymous_visitor_gets_the_sign_in_link_and_no_member_pieces() {
    let html = run(&Viewer::anonymous());
    assert!(html.contains(r#"<a href="/signin">Sign in</a>"#), "{html}");
    assert!(html.contains("Sign in to enrol"));
    assert!(!html.contains("Hi,"), "the greeting is for members");
    assert!(!html.contains("Start</a>") && !html.contains("Upgrade"));
    assert!(!html.contains("/signout"));
}

#[test]
fn a_name_is_inserted_as_escaped_text() {
    let html = run(&member(
        Plan::Free,
        "<img src=x onerror=alert(1)> & \"Bob\"",
    ));
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt; &amp; \"Bob\""),
        "{html}"
    );
    assert!(!html.contains("<img src=x"));
}

#[test]
fn originals_get_srcset_candidates_up_to_their_intrinsic_width() {
    let html = run(&Viewer::anonymous());
    let big = html.split("<img ").find(|t| t.contains("rhythm")).unwrap();
    assert!(big.contains(r#"src="/img/w=640/demo/rhythm.jpg""#), "{big}");
    for w in DEFAULT_LADDER {
        assert!(
            big.contains(&format!("/img/w={w}/demo/rhythm.jpg {w}w")),
            "{w}: {big}"
        );
    }
    assert!(big.contains(r#"sizes="22rem""#), "the origin's sizes stay");
    let tiny = html.split("<img ").find(|t| t.contains("tiny")).unwrap();
    assert!(
        tiny.contains(r#"srcset="/img/w=96/demo/tiny.png 96w""#),
        "{tiny}"
    );
    assert!(tiny.contains(r#"sizes="100vw""#));
    let other = html.split("<img ").find(|t| t.contains("logo")).unwrap();
    assert!(
        !other.contains("srcset"),
        "only /media/ originals are rewritten"
    );
}

#[test]
fn the_ladder_is_cut_to_the_allow_list_and_urls_are_signed_when_signing_is_on() {
    let images = Responsive::new(Some(&[320, 640, 1000]), Some(b"k".repeat(32)));
    assert_eq!(images.ladder(), [320, 640]);
    let (src, srcset) = images.rewrite("demo/rhythm.jpg", Some(3840)).unwrap();
    let options = ImageOptions::parse("w=640").unwrap().options.canonical();
    let sig = crate::image::sign::sign(&b"k".repeat(32), "demo/rhythm.jpg", &options);
    assert_eq!(src, format!("/img/w=640,sig={sig}/demo/rhythm.jpg"));
    assert!(srcset.contains("320w") && srcset.ends_with("640w"));
    // What the image route will accept: each candidate verifies against its options.
    for candidate in srcset.split(", ") {
        let url = candidate.split(' ').next().unwrap();
        let segment = url.trim_start_matches("/img/").split('/').next().unwrap();
        let parsed = ImageOptions::parse(segment).unwrap();
        assert!(crate::image::sign::verify(
            &b"k".repeat(32),
            "demo/rhythm.jpg",
            &parsed.options.canonical(),
            parsed.signature.as_deref().unwrap()
        ));
    }
    assert_eq!(
        Responsive::new(Some(&[5000]), None).rewrite("a.jpg", None),
        None
    );
    assert_eq!(open().rewrite("derived/x/y.webp", None), None);
    assert_eq!(open().rewrite("../etc/passwd", None), None);
}

#[test]
fn every_chunk_boundary_gives_the_same_page() {
    for viewer in [
        Viewer::anonymous(),
        member(Plan::Pro, "Ada Lovelace"),
        member(Plan::Free, "Bo"),
    ] {
        let whole = rewrite_all(PAGE.as_bytes(), &viewer, &open());
        let bytes = PAGE.as_bytes();
        for split in 0..=bytes.len() {
            let mut rewriter = PageRewriter::new(&viewer, &open());
            let mut out = rewriter.push(&bytes[..split]);
            out.extend(rewriter.push(&bytes[split..]));
            let (tail, failed) = rewriter.finish();
            out.extend(tail);
            assert_eq!(failed, None);
            assert_eq!(out, whole, "split at {split}");
        }
        // And one byte at a time.
        let mut rewriter = PageRewriter::new(&viewer, &open());
        let mut out = Vec::new();
        for b in bytes {
            out.extend(rewriter.push(std::slice::from_ref(b)));
        }
        out.extend(rewriter.finish().0);
        assert_eq!(out, whole);
    }
}

#[test]
fn output_streams_instead_of_waiting_for_the_end() {
    let mut rewriter = PageRewriter::new(&member(Plan::Pro, "Ada"), &open());
    let head = "<html><body>".to_owned() + &"<p>paragraph</p>".repeat(2000);
    let out = rewriter.push(head.as_bytes());
    assert!(
        out.len() > head.len() - 64,
        "only the tail of a chunk may be held back ({} of {})",
        out.len(),
        head.len()
    );
}

#[test]
fn a_tag_larger_than_the_parser_budget_fails_the_rewrite_not_the_worker() {
    let mut rewriter = PageRewriter::new(&member(Plan::Pro, "Ada"), &open());
    let mut page = String::from("<html><body><div data-edge=\"user-name\" title=\"");
    page.push_str(&"x".repeat(2 << 20));
    let _ = rewriter.push(page.as_bytes());
    let after = rewriter.push(b"</div>");
    assert_eq!(after, b"</div>", "later chunks pass through");
    let (_, failed) = rewriter.finish();
    assert!(failed.is_some());
}

#[test]
fn only_html_bodies_of_pages_and_forms_are_rewritten() {
    use crate::policy::ContentClass::{Feed, Html, Session};
    assert!(rewrites(Html, 200, Some("text/html; charset=utf-8"), false));
    assert!(rewrites(Html, 200, Some("TEXT/HTML"), false));
    assert!(rewrites(Html, 404, Some("text/html"), false));
    assert!(rewrites(Session, 401, Some("text/html"), false));
    for (class, status, ct, head) in [
        (Html, 304, Some("text/html"), false),
        (Html, 206, Some("text/html"), false),
        (Html, 416, Some("text/html"), false),
        (Session, 204, Some("text/html"), false),
        (Html, 200, Some("text/html"), true),
        (Html, 200, Some("application/json"), false),
        (Html, 200, None, false),
        (Feed, 200, Some("text/html"), false),
    ] {
        assert!(
            !rewrites(class, status, ct, head),
            "{class:?} {status} {ct:?}"
        );
    }
}

#[test]
fn a_page_is_asked_for_whole_and_its_headers_never_let_anyone_store_it() {
    use crate::policy::ContentClass::{Catalog, Html, Session};
    let mut ask = Ask::get();
    ask.range = crate::assets::ByteRange::parse("bytes=0-99");
    ask.if_none_match = Some(String::from("\"p-1\""));
    ask.if_modified_since = Some(String::from("Sun, 06 Dec 2026 07:00:00 GMT"));
    ask.if_range = Some(String::from("\"p-1\""));
    for class in [Html, Session] {
        let page = ask_for(class, ask.clone());
        assert!(page.range.is_none() && page.if_range.is_none(), "{class:?}");
        assert!(page.if_none_match.is_none() && page.if_modified_since.is_none());
    }
    assert_eq!(
        ask_for(Catalog, ask.clone()),
        ask,
        "other classes keep them"
    );
    assert_eq!(
        page_cache_control(Some("public, max-age=0")),
        "private, no-cache"
    );
    assert_eq!(page_cache_control(None), "private, no-cache");
    assert_eq!(
        page_cache_control(Some("private, No-Store")),
        "private, no-store"
    );
    assert!(DROPPED_HEADERS.contains(&"cdn-cache-control"));
}
