//! Response models, serialized as the API's JSON.

use protocol::{Locale, Plan};
use serde::{Deserialize, Serialize};

use super::input::Level;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CourseSummary {
    pub id: i64,
    pub slug: String,
    pub title: String,
    pub summary: String,
    pub locale: Locale,
    pub level: Level,
    pub tags: Vec<String>,
    pub plan: Plan,
    /// R2 key of the cover image (serve it through `/img/<options>/<key>` at the edge).
    pub cover_image: Option<String>,
    /// The cover's intrinsic size, when known (from the `media` table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cover_size: Option<Size>,
    pub views: i64,
    pub updated_at: String,
}

/// An image's intrinsic size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

/// Who teaches a course.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instructor {
    pub name: String,
    /// R2 key of their photo.
    pub photo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub photo_size: Option<Size>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogPage {
    pub items: Vec<CourseSummary>,
    pub page: u32,
    pub per_page: u32,
    pub total: i64,
    pub has_more: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lesson {
    pub position: i64,
    pub title: String,
    pub video_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CourseDetail {
    #[serde(flatten)]
    pub course: CourseSummary,
    pub lessons: Vec<Lesson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructor: Option<Instructor>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rendition {
    pub height: u32,
    pub bandwidth: u64,
    pub playlist: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Video {
    pub id: i64,
    pub title: String,
    pub duration_secs: i64,
    /// R2 key of the HLS master playlist.
    pub hls_playlist: String,
    pub renditions: Vec<Rendition>,
    /// R2 key of a progressive file (WebM or MP4, served with ranges) for players
    /// without HLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progressive: Option<String>,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResults {
    pub query: String,
    pub items: Vec<CourseSummary>,
}

/// A precomputed feed, stored as JSON per segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feed {
    pub segment: String,
    pub computed_at: i64,
    pub items: Vec<CourseSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: i64,
    pub display_name: String,
    pub plan: Plan,
    pub locale: Locale,
}

/// A session row joined with its user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub user: User,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A user as stored, with the password hash (never serialized to clients).
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: User,
    pub password_hash: String,
}
