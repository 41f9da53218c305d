//! The demo course site's pages, rendered from the read models. Pure: no I/O, no
//! knowledge of the visitor. A page is rendered once per segment (locale) and cached at
//! the edge; what differs per user is marked for the edge's rewriter (`protocol::page`):
//! the display name, the account link, and the plan-specific calls to action, which are
//! all rendered here and kept or dropped at the edge.
//!
//! Every `<img>` carries its intrinsic `width`/`height` (from the `media` table), so the
//! browser reserves its box before the bytes arrive and nothing shifts; it points at the
//! original under `/media/`, which the edge turns into `srcset` candidates.

use maud::{DOCTYPE, Markup, PreEscaped, html};
use protocol::{Locale, Plan};
// maud takes attribute names as literals: `data-edge`, `data-edge-plan`, `user-name` and
// `account` below are protocol::page's names (a test holds them equal).
use protocol::page::{MEDIA_PREFIX, SIGN_IN_PATH};

use crate::domain::{CatalogPage, CourseDetail, CourseSummary, Lesson, Size, Video};

const STYLE: &str = include_str!("style.css");

/// Longest `next=` accepted after signing in.
pub const MAX_NEXT_BYTES: usize = 512;

/// Where to go after signing in: a local path only (no scheme, no `//host`, no
/// backslash tricks), else the catalog. Closes the open redirect a `next=` invites.
pub fn local_next(next: Option<&str>) -> String {
    next.filter(|n| {
        n.len() <= MAX_NEXT_BYTES
            && n.starts_with('/')
            && !n.starts_with("//")
            && !n.contains('\\')
            && !n.bytes().any(|b| b.is_ascii_control())
    })
    .unwrap_or("/")
    .to_owned()
}

/// What every page is rendered for: the segment's locale, and the experiment arms the
/// edge assigned (`hero=bold`), which a page may vary by and shows on `<html>`.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub locale: Locale,
    pub experiments: Option<&'a str>,
}

impl Context<'_> {
    pub fn english() -> Self {
        Self {
            locale: Locale::parse("en").unwrap_or_else(|| unreachable!("\"en\" is a locale")),
            experiments: None,
        }
    }
}

fn layout(cx: Context<'_>, title: &str, query: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(cx.locale.as_str()) data-experiments=[cx.experiments] {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · CourseEdge" }
                link rel="icon" href="data:,";
                style { (PreEscaped(STYLE)) }
            }
            body {
                header.top {
                    a.brand href="/" { "Course" span { "Edge" } }
                    form.search action="/" method="get" role="search" {
                        input type="search" name="q" placeholder="Search courses" aria-label="Search courses"
                            value=[query] maxlength="100";
                    }
                    div.account {
                        span data-edge-plan="free pro" { "Hi, " span data-edge="user-name" { "there" } }
                        a data-edge="account" href=(SIGN_IN_PATH) { "Sign in" }
                    }
                }
                main { (body) }
                footer {
                    "Demo content. Photographs from Debian's ukui-wallpapers (CC-BY-SA-3.0). "
                    "Served through course-edge: cached per segment, personalized at the edge."
                }
            }
        }
    }
}

/// An original image at its intrinsic size (the edge adds `srcset`).
fn image(key: &str, size: Option<Size>, alt: &str, sizes: &str, eager: bool) -> Markup {
    let src = format!("{MEDIA_PREFIX}{key}");
    html! {
        img src=(src) alt=(alt) sizes=(sizes)
            width=[size.map(|s| s.width)] height=[size.map(|s| s.height)]
            loading=(if eager { "eager" } else { "lazy" }) decoding="async";
    }
}

fn plan_badge(plan: Plan) -> Markup {
    html! {
        @match plan {
            Plan::Pro => span.badge.pro { "Pro" },
            Plan::Free => span.badge { "Free" },
        }
    }
}

fn card(course: &CourseSummary, eager: bool) -> Markup {
    html! {
        li.card {
            a href={ "/courses/" (course.slug) } {
                @if let Some(key) = &course.cover_image {
                    (image(key, course.cover_size, &course.title,
                        "(max-width: 40rem) 92vw, (max-width: 72rem) 45vw, 22rem", eager))
                }
                div.body {
                    div.meta { (plan_badge(course.plan)) span.badge { (course.level.as_str()) } }
                    h2 { (course.title) }
                    p { (course.summary) }
                }
            }
        }
    }
}

/// The catalog (or search results when `query` is set).
pub fn catalog(cx: Context<'_>, page: &CatalogPage, query: Option<&str>) -> Markup {
    let title = match query {
        Some(q) => format!("Results for “{q}”"),
        None => String::from("Learn something new this week"),
    };
    layout(
        cx,
        &title,
        query,
        html! {
            h1 { (title) }
            @if query.is_none() {
                // The demo experiment `hero` (wrangler.toml): the bold arm sells harder.
                @if cx.experiments.is_some_and(|e| e.split(", ").any(|a| a == "hero=bold")) {
                    p.lead { strong { "Ship a real project by Friday." } " Hands-on courses, reviewed by working engineers." }
                } @else {
                    p.lead { "Short, practical courses from working engineers. Start free; go Pro for every course." }
                }
            }
            @if page.items.is_empty() {
                p.lead { "No courses match. Try a shorter word." }
            }
            ul.grid {
                @for (i, course) in page.items.iter().enumerate() { (card(course, i < 3)) }
            }
            @if query.is_none() {
                nav.pager {
                    @if page.page > 1 { a href={ "/?page=" (page.page - 1) } { "← Newer" } } @else { span {} }
                    @if page.has_more { a href={ "/?page=" (page.page + 1) } { "More courses →" } }
                }
            }
        },
    )
}

fn lesson_href(slug: &str, lesson: &Lesson) -> String {
    format!("/learn/{slug}/{}", lesson.position)
}

/// A course: cover, syllabus, instructor, and one call to action per audience.
pub fn course(cx: Context<'_>, detail: &CourseDetail) -> Markup {
    let c = &detail.course;
    let first = detail.lessons.first().map(|l| lesson_href(&c.slug, l));
    let sign_in = format!("{SIGN_IN_PATH}?next=/courses/{}", c.slug);
    layout(
        cx,
        &c.title,
        None,
        html! {
            div.course {
                div {
                    div.meta { (plan_badge(c.plan)) span.badge { (c.level.as_str()) } }
                    h1 { (c.title) }
                    p.lead { (c.summary) }
                    @if let Some(key) = &c.cover_image {
                        div.cover { (image(key, c.cover_size, &c.title, "(max-width: 48rem) 92vw, 42rem", true)) }
                    }
                }
                aside.panel {
                    h2 { "Syllabus" }
                    ol.syllabus {
                        @for lesson in &detail.lessons {
                            li { a href=(lesson_href(&c.slug, lesson)) { (lesson.title) } }
                        }
                    }
                    div.cta {
                        a.btn data-edge-plan="anon" href=(sign_in) { "Sign in to enrol" }
                        @if let Some(first) = &first {
                            @match c.plan {
                                Plan::Free => a.btn data-edge-plan="free pro" href=(first) { "Start the course" },
                                Plan::Pro => {
                                    a.btn data-edge-plan="pro" href=(first) { "Start the course" }
                                    a.btn.upsell data-edge-plan="free" href="/?q=pro" { "Upgrade to Pro to enrol" }
                                }
                            }
                        }
                    }
                    @if let Some(instructor) = &detail.instructor {
                        div.instructor {
                            @if let Some(photo) = &instructor.photo {
                                (image(photo, instructor.photo_size, &instructor.name, "64px", false))
                            }
                            div { "Taught by " strong { (instructor.name) } }
                        }
                    }
                }
            }
        },
    )
}

/// A lesson: its video (the progressive file, with ranges) and the way on.
pub fn lesson(
    cx: Context<'_>,
    detail: &CourseDetail,
    lesson: &Lesson,
    video: Option<&Video>,
) -> Markup {
    let c = &detail.course;
    let next = detail
        .lessons
        .iter()
        .find(|l| l.position == lesson.position + 1);
    layout(
        cx,
        &lesson.title,
        None,
        html! {
            p.meta { a href={ "/courses/" (c.slug) } { "← " (c.title) } }
            h1 { (lesson.title) }
            @match video.and_then(|v| v.progressive.as_deref()) {
                Some(key) => video.player controls preload="metadata" playsinline width="1280" height="720"
                    src={ "/" (key) } {},
                None => p.lead { "This lesson has no video yet." },
            }
            nav.pager {
                a href={ "/courses/" (c.slug) } { "Syllabus" }
                @if let Some(next) = next { a.btn href=(lesson_href(&c.slug, next)) { "Next: " (next.title) } }
            }
        },
    )
}

/// The sign-in form. `failed` re-renders it after a wrong password.
pub fn sign_in(cx: Context<'_>, next: &str, failed: Option<&str>) -> Markup {
    layout(
        cx,
        "Sign in",
        None,
        html! {
            form.signin.panel method="post" action=(SIGN_IN_PATH) {
                h1 { "Sign in" }
                @if let Some(why) = failed { p.error role="alert" { (why) } }
                input type="hidden" name="next" value=(next);
                label for="email" { "Email" }
                input #email type="email" name="email" required autocomplete="username" maxlength="254";
                label for="password" { "Password" }
                input #password type="password" name="password" required autocomplete="current-password" maxlength="256";
                button.btn type="submit" { "Sign in" }
                p.hint { "Demo accounts: ada@example.com (Pro), bo@example.com (Free); passwords demo-password-ada, demo-password-bo." }
            }
        },
    )
}

/// A page that does not exist.
pub fn not_found(cx: Context<'_>, what: &str) -> Markup {
    layout(
        cx,
        "Not found",
        None,
        html! {
            h1 { "Not found" }
            p.lead { (what) " does not exist. " a href="/" { "Back to the catalog" } "." }
        },
    )
}

#[cfg(test)]
mod tests;
