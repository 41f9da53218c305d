//! Demo content: the JSON file `scripts/seed` loads (`course-origin seed --file …`), and
//! the feed precomputation, which is pure so it is tested without a database.

use std::collections::BTreeSet;

use protocol::{Audience, Locale, Plan, Segment};
use serde::Deserialize;

use crate::domain::{CourseSummary, Feed, Level, Rendition};

#[derive(Debug, Clone, Deserialize)]
pub struct DemoData {
    pub users: Vec<DemoUser>,
    pub videos: Vec<DemoVideo>,
    pub courses: Vec<DemoCourse>,
    /// Intrinsic sizes of the demo images (the seed's answer to what an upload records).
    #[serde(default)]
    pub media: Vec<DemoMedia>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DemoMedia {
    pub key: String,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DemoInstructor {
    pub name: String,
    pub photo: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DemoUser {
    pub email: String,
    pub display_name: String,
    /// Plain text in the demo file only; the store keeps an argon2id hash.
    pub password: String,
    pub plan: Plan,
    pub locale: Locale,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DemoVideo {
    pub id: i64,
    pub title: String,
    pub duration_secs: i64,
    pub hls_playlist: String,
    pub renditions: Vec<Rendition>,
    #[serde(default)]
    pub progressive: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DemoCourse {
    pub slug: String,
    pub title: String,
    pub summary: String,
    pub locale: Locale,
    pub level: Level,
    pub tags: Vec<String>,
    pub plan: Plan,
    pub cover_image: Option<String>,
    pub views: i64,
    pub updated_at: String,
    #[serde(default)]
    pub lessons: Vec<DemoLesson>,
    #[serde(default)]
    pub instructor: Option<DemoInstructor>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DemoLesson {
    pub title: String,
    pub video_id: Option<i64>,
}

impl DemoData {
    /// Largest demo file accepted.
    pub const MAX_BYTES: usize = 8 * 1024 * 1024;

    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() > Self::MAX_BYTES {
            return Err(format!(
                "demo file is larger than {} bytes",
                Self::MAX_BYTES
            ));
        }
        serde_json::from_slice(bytes).map_err(|e| format!("demo file: {e}"))
    }
}

/// How many courses a precomputed feed lists.
pub const FEED_LEN: usize = 10;

/// One feed per audience × locale present in the catalog: the most-viewed courses of
/// that locale the audience may take (visitors and free members see free courses; pro
/// members see all).
pub fn compute_feeds(courses: &[CourseSummary], now: i64) -> Vec<Feed> {
    let locales: BTreeSet<Locale> = courses.iter().map(|c| c.locale).collect();
    let mut feeds = Vec::new();
    for audience in Audience::ALL {
        for &locale in &locales {
            let mut items: Vec<CourseSummary> = courses
                .iter()
                .filter(|c| c.locale == locale)
                .filter(|c| matches!(audience, Audience::Member(Plan::Pro)) || c.plan == Plan::Free)
                .cloned()
                .collect();
            items.sort_by(|a, b| b.views.cmp(&a.views).then(a.id.cmp(&b.id)));
            items.truncate(FEED_LEN);
            feeds.push(Feed {
                segment: Segment { audience, locale }.to_string(),
                computed_at: now,
                items,
            });
        }
    }
    feeds
}

#[cfg(test)]
mod tests {
    use super::*;

    fn course(id: i64, locale: &str, plan: Plan, views: i64) -> CourseSummary {
        CourseSummary {
            id,
            slug: format!("c{id}"),
            title: String::new(),
            summary: String::new(),
            locale: Locale::parse(locale).unwrap(),
            level: Level::Beginner,
            tags: vec![],
            plan,
            cover_image: None,
            cover_size: None,
            views,
            updated_at: String::new(),
        }
    }

    #[test]
    fn every_audience_gets_a_feed_per_locale_ranked_by_views() {
        let courses = [
            course(1, "en", Plan::Free, 10),
            course(2, "en", Plan::Pro, 50),
            course(3, "en", Plan::Free, 30),
            course(4, "de", Plan::Free, 5),
        ];
        let feeds = compute_feeds(&courses, 99);
        assert_eq!(feeds.len(), 6);
        let ids = |seg: &str| -> Vec<i64> {
            feeds
                .iter()
                .find(|f| f.segment == seg)
                .unwrap()
                .items
                .iter()
                .map(|c| c.id)
                .collect()
        };
        assert_eq!(ids("anon-en"), [3, 1]);
        assert_eq!(ids("free-en"), [3, 1]);
        assert_eq!(ids("pro-en"), [2, 3, 1]);
        assert_eq!(ids("pro-de"), [4]);
        assert!(feeds.iter().all(|f| f.computed_at == 99));
    }

    #[test]
    fn the_committed_demo_file_parses() {
        let bytes = include_bytes!("../../demo/catalog.json");
        let demo = DemoData::from_json(bytes).unwrap();
        assert!(demo.courses.len() >= 40, "pagination needs several pages");
        assert!(!demo.users.is_empty() && !demo.videos.is_empty());
    }
}
