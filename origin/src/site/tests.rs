use super::*;
use crate::domain::{Instructor, Level};

fn summary(plan: Plan) -> CourseSummary {
    CourseSummary {
        id: 7,
        slug: String::from("rust-beginner"),
        title: String::from("Rust <for> \"Beginners\""),
        summary: String::from("Ownership & borrowing"),
        locale: Locale::parse("en").unwrap(),
        level: Level::Beginner,
        tags: vec![],
        plan,
        cover_image: Some(String::from("demo/rhythm.jpg")),
        cover_size: Some(Size {
            width: 3840,
            height: 2400,
        }),
        views: 1,
        updated_at: String::new(),
    }
}

fn detail(plan: Plan) -> CourseDetail {
    CourseDetail {
        course: summary(plan),
        lessons: vec![
            Lesson {
                position: 1,
                title: String::from("One"),
                video_id: Some(1),
            },
            Lesson {
                position: 2,
                title: String::from("Two"),
                video_id: None,
            },
        ],
        instructor: Some(Instructor {
            name: String::from("Grace <script>"),
            photo: Some(String::from("demo/the-mouse.jpg")),
            photo_size: Some(Size {
                width: 640,
                height: 400,
            }),
        }),
    }
}

fn en() -> Context<'static> {
    Context::english()
}

#[test]
fn the_arms_the_edge_assigned_are_on_the_page() {
    let cx = Context {
        experiments: Some("hero=bold"),
        ..Context::english()
    };
    let html = not_found(cx, "x").into_string();
    assert!(
        html.contains(r#"<html lang="en" data-experiments="hero=bold">"#),
        "{html}"
    );
    assert!(
        !not_found(en(), "x")
            .into_string()
            .contains("data-experiments")
    );
}

#[test]
fn text_from_the_store_is_escaped() {
    let html = course(en(), &detail(Plan::Free)).into_string();
    assert!(
        html.contains("Rust &lt;for&gt; &quot;Beginners&quot;"),
        "{html}"
    );
    assert!(html.contains("Grace &lt;script&gt;"));
    assert!(!html.contains("<script>"));
}

#[test]
fn every_image_carries_its_intrinsic_size_and_points_at_the_original() {
    let page = CatalogPage {
        items: vec![summary(Plan::Free), summary(Plan::Pro)],
        page: 1,
        per_page: 20,
        total: 2,
        has_more: false,
    };
    for html in [
        catalog(en(), &page, None).into_string(),
        course(en(), &detail(Plan::Pro)).into_string(),
    ] {
        let imgs: Vec<&str> = html.split("<img ").skip(1).collect();
        assert!(!imgs.is_empty());
        for img in imgs {
            let tag = &img[..img.find('>').unwrap()];
            assert!(
                tag.contains("width=\"") && tag.contains("height=\""),
                "{tag}"
            );
            assert!(tag.contains("src=\"/media/demo/"), "{tag}");
            assert!(tag.contains("sizes=\""), "{tag}");
        }
    }
}

#[test]
fn calls_to_action_are_rendered_for_every_audience_and_marked() {
    let free = course(en(), &detail(Plan::Free)).into_string();
    assert!(free.contains(r#"data-edge-plan="anon" href="/signin?next=/courses/rust-beginner""#));
    assert!(free.contains(r#"data-edge-plan="free pro" href="/learn/rust-beginner/1""#));
    let pro = course(en(), &detail(Plan::Pro)).into_string();
    assert!(pro.contains(r#"data-edge-plan="pro" href="/learn/rust-beginner/1""#));
    assert!(
        pro.contains(r#"data-edge-plan="free""#),
        "free members get the upsell"
    );
    // The chrome: a name slot for members and the account slot.
    assert!(pro.contains(r#"<span data-edge="user-name">there</span>"#));
    assert!(pro.contains(r#"<a data-edge="account" href="/signin">Sign in</a>"#));
}

#[test]
fn a_lesson_plays_its_progressive_file_or_says_there_is_none() {
    let d = detail(Plan::Free);
    let video = Video {
        id: 1,
        title: String::new(),
        duration_secs: 6,
        hls_playlist: String::from("video/1/master.m3u8"),
        renditions: vec![],
        progressive: Some(String::from("video/demo/lesson.webm")),
        updated_at: String::new(),
    };
    let html = lesson(en(), &d, &d.lessons[0], Some(&video)).into_string();
    assert!(html.contains(r#"src="/video/demo/lesson.webm""#), "{html}");
    assert!(html.contains("Next: Two"));
    let html = lesson(en(), &d, &d.lessons[1], None).into_string();
    assert!(html.contains("no video yet"));
}

#[test]
fn next_is_a_local_path_or_the_catalog() {
    for (given, expected) in [
        (Some("/courses/x?y=1"), "/courses/x?y=1"),
        (Some("//evil.example/x"), "/"),
        (Some("https://evil.example/"), "/"),
        (Some("/\\evil.example"), "/"),
        (Some("/a\nb"), "/"),
        (None, "/"),
    ] {
        assert_eq!(local_next(given), expected, "{given:?}");
    }
    assert_eq!(local_next(Some(&format!("/{}", "a".repeat(600)))), "/");
}

#[test]
fn the_literal_marks_are_the_protocols() {
    use protocol::page::{ACCOUNT, PLAN_ATTR, SLOT_ATTR, USER_NAME};
    let html = course(en(), &detail(Plan::Pro)).into_string();
    assert!(html.contains(&format!(r#"{SLOT_ATTR}="{USER_NAME}""#)));
    assert!(html.contains(&format!(r#"{SLOT_ATTR}="{ACCOUNT}""#)));
    assert!(html.contains(&format!(r#"{PLAN_ATTR}="pro""#)));
}
