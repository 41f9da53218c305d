//! [`SqlStore`]: the [`Store`] over sqlx's `Any` driver, so one set of queries serves
//! SQLite and PostgreSQL. `$N` placeholders work on both. Where the engines differ
//! (connection pragmas, migrations, full-text search) the code matches on [`Engine`].

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use protocol::{Locale, Plan, Segment};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

use super::demo::{DemoData, compute_feeds};
use super::{Store, StoreError};
use crate::domain::{
    CatalogPage, CatalogQuery, CourseDetail, CourseSummary, Credentials, Feed, Lesson, Level,
    SearchQuery, SearchResults, Session, Slug, User, Video, VideoId,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

pub struct SqlStore {
    pool: AnyPool,
    engine: Engine,
}

const COURSE_COLUMNS: &str = "c.id, c.slug, c.title, c.summary, c.locale, c.level, c.tags, c.plan, c.cover_image_key, c.views, c.updated_at";

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} {value:?}"))
}

fn course_from_row(row: &AnyRow) -> Result<CourseSummary, StoreError> {
    let locale: String = row.try_get("locale")?;
    let level: String = row.try_get("level")?;
    let plan: String = row.try_get("plan")?;
    let tags: String = row.try_get("tags")?;
    Ok(CourseSummary {
        id: row.try_get("id")?,
        slug: row.try_get("slug")?,
        title: row.try_get("title")?,
        summary: row.try_get("summary")?,
        locale: Locale::parse(&locale).ok_or_else(|| corrupt("locale", &locale))?,
        level: Level::parse(&level).map_err(|_| corrupt("level", &level))?,
        tags: tags.split_whitespace().map(str::to_owned).collect(),
        plan: Plan::parse(&plan).ok_or_else(|| corrupt("plan", &plan))?,
        cover_image: row.try_get("cover_image_key")?,
        views: row.try_get("views")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn user_from_row(row: &AnyRow) -> Result<User, StoreError> {
    let plan: String = row.try_get("plan")?;
    let locale: String = row.try_get("locale")?;
    Ok(User {
        id: row.try_get("user_id")?,
        display_name: row.try_get("display_name")?,
        plan: Plan::parse(&plan).ok_or_else(|| corrupt("plan", &plan))?,
        locale: Locale::parse(&locale).ok_or_else(|| corrupt("locale", &locale))?,
    })
}

impl SqlStore {
    /// Opens (creating if needed) `<dir>/origin.db` in WAL mode and migrates it.
    pub async fn open_sqlite(dir: &Path) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
            path: dir.display().to_string(),
            source,
        })?;
        let url = format!("sqlite://{}?mode=rwc", dir.join("origin.db").display());
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = NORMAL",
                        "PRAGMA foreign_keys = ON",
                        "PRAGMA busy_timeout = 5000",
                    ] {
                        conn.execute(pragma).await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self {
            pool,
            engine: Engine::Sqlite,
        })
    }

    /// Connects to PostgreSQL and migrates.
    pub async fn open_postgres(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self {
            pool,
            engine: Engine::Postgres,
        })
    }

    async fn all_courses(&self) -> Result<Vec<CourseSummary>, StoreError> {
        let sql = format!("SELECT {COURSE_COLUMNS} FROM courses c ORDER BY c.id");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(course_from_row).collect()
    }
}

/// Builds a WHERE clause with numbered placeholders from optional filters.
struct Filters {
    clauses: Vec<String>,
    binds: Vec<String>,
}

impl Filters {
    fn from(query: &CatalogQuery) -> Self {
        let mut f = Self {
            clauses: Vec::new(),
            binds: Vec::new(),
        };
        if let Some(locale) = query.locale {
            f.push("c.locale = $", locale.as_str().to_owned());
        }
        if let Some(level) = query.level {
            f.push("c.level = $", level.as_str().to_owned());
        }
        if let Some(tag) = &query.tag {
            f.push(
                "(' ' || c.tags || ' ') LIKE $",
                format!("% {} %", tag.as_str()),
            );
        }
        f
    }

    fn push(&mut self, clause: &str, value: String) {
        self.binds.push(value);
        self.clauses.push(format!("{clause}{}", self.binds.len()));
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }
}

#[async_trait]
impl Store for SqlStore {
    fn engine(&self) -> &'static str {
        match self.engine {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn catalog(&self, query: &CatalogQuery) -> Result<CatalogPage, StoreError> {
        let filters = Filters::from(query);
        let where_sql = filters.sql();
        let count_sql = format!("SELECT COUNT(*) AS n FROM courses c {where_sql}");
        let mut count = sqlx::query(&count_sql);
        for bind in &filters.binds {
            count = count.bind(bind);
        }
        let total: i64 = count.fetch_one(&self.pool).await?.try_get("n")?;

        let n = filters.binds.len();
        let page_sql = format!(
            "SELECT {COURSE_COLUMNS} FROM courses c {where_sql} ORDER BY c.views DESC, c.id ASC LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        let mut page = sqlx::query(&page_sql);
        for bind in &filters.binds {
            page = page.bind(bind);
        }
        let offset = i64::try_from(query.offset()).unwrap_or(i64::MAX);
        let rows = page
            .bind(i64::from(query.per_page))
            .bind(offset)
            .fetch_all(&self.pool)
            .await?;
        let items = rows
            .iter()
            .map(course_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let has_more = offset + (items.len() as i64) < total;
        Ok(CatalogPage {
            items,
            page: query.page,
            per_page: query.per_page,
            total,
            has_more,
        })
    }

    async fn course(&self, slug: &Slug) -> Result<Option<CourseDetail>, StoreError> {
        let sql = format!("SELECT {COURSE_COLUMNS} FROM courses c WHERE c.slug = $1");
        let Some(row) = sqlx::query(&sql)
            .bind(slug.as_str())
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let course = course_from_row(&row)?;
        let lessons = sqlx::query(
            "SELECT position, title, video_id FROM lessons WHERE course_id = $1 ORDER BY position",
        )
        .bind(course.id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(Lesson {
                position: r.try_get("position")?,
                title: r.try_get("title")?,
                video_id: r.try_get("video_id")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Some(CourseDetail { course, lessons }))
    }

    async fn search(&self, query: &SearchQuery) -> Result<SearchResults, StoreError> {
        // Tokens are letters and digits only (SearchQuery guarantees it), so they cannot
        // carry FTS syntax; they are still bound, never spliced.
        let rows = match self.engine {
            Engine::Sqlite => {
                let expr = query
                    .tokens()
                    .iter()
                    .map(|t| format!("\"{t}\"*"))
                    .collect::<Vec<_>>()
                    .join(" ");
                // bm25 weights per FTS column (title, summary, tags): lower is better.
                let sql = format!(
                    "SELECT {COURSE_COLUMNS} FROM courses_fts f JOIN courses c ON c.id = f.rowid \
                     WHERE courses_fts MATCH $1 \
                     ORDER BY bm25(courses_fts, 10.0, 1.0, 4.0), c.views DESC LIMIT $2"
                );
                sqlx::query(&sql)
                    .bind(expr)
                    .bind(i64::from(query.limit))
                    .fetch_all(&self.pool)
                    .await?
            }
            Engine::Postgres => {
                let expr = query
                    .tokens()
                    .iter()
                    .map(|t| format!("{t}:*"))
                    .collect::<Vec<_>>()
                    .join(" & ");
                let sql = format!(
                    "SELECT {COURSE_COLUMNS} FROM courses c \
                     WHERE c.search @@ to_tsquery('simple', $1) \
                     ORDER BY ts_rank(c.search, to_tsquery('simple', $1)) DESC, c.views DESC LIMIT $2"
                );
                sqlx::query(&sql)
                    .bind(expr)
                    .bind(i64::from(query.limit))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        Ok(SearchResults {
            query: query.normalized(),
            items: rows.iter().map(course_from_row).collect::<Result<_, _>>()?,
        })
    }

    async fn video(&self, id: VideoId) -> Result<Option<Video>, StoreError> {
        let row = sqlx::query(
            "SELECT id, title, duration_secs, hls_playlist_key, renditions, updated_at FROM videos WHERE id = $1",
        )
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let renditions: String = row.try_get("renditions")?;
        Ok(Some(Video {
            id: row.try_get("id")?,
            title: row.try_get("title")?,
            duration_secs: row.try_get("duration_secs")?,
            hls_playlist: row.try_get("hls_playlist_key")?,
            renditions: serde_json::from_str(&renditions)
                .map_err(|_| corrupt("renditions", &renditions))?,
            updated_at: row.try_get("updated_at")?,
        }))
    }

    async fn feed(&self, segment: &Segment) -> Result<Option<Feed>, StoreError> {
        let row = sqlx::query("SELECT body FROM feeds WHERE segment = $1")
            .bind(segment.to_string())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let body: String = row.try_get("body")?;
        serde_json::from_str(&body)
            .map(Some)
            .map_err(|_| corrupt("feed", &segment.to_string()))
    }

    async fn most_viewed(&self, n: u32) -> Result<Vec<Slug>, StoreError> {
        let rows = sqlx::query("SELECT slug FROM courses ORDER BY views DESC, id ASC LIMIT $1")
            .bind(i64::from(n))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let slug: String = r.try_get("slug")?;
                Slug::parse(&slug).map_err(|_| corrupt("slug", &slug))
            })
            .collect()
    }

    async fn feed_segments(&self) -> Result<Vec<Segment>, StoreError> {
        let rows = sqlx::query("SELECT segment FROM feeds ORDER BY segment")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let s: String = r.try_get("segment")?;
                Segment::parse(&s).ok_or_else(|| corrupt("segment", &s))
            })
            .collect()
    }

    async fn credentials(&self, email: &str) -> Result<Option<Credentials>, StoreError> {
        let row = sqlx::query(
            "SELECT id AS user_id, display_name, plan, locale, password_hash FROM users WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Credentials {
            user: user_from_row(&row)?,
            password_hash: row.try_get("password_hash")?,
        }))
    }

    async fn insert_session(
        &self,
        id: &str,
        user_id: i64,
        created_at: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(user_id)
        .bind(created_at)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let row = sqlx::query(
            "SELECT s.id, s.created_at, s.expires_at, u.id AS user_id, u.display_name, u.plan, u.locale \
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Session {
            id: row.try_get("id")?,
            user: user_from_row(&row)?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
        }))
    }

    async fn delete_session(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn load_demo(&self, demo: &DemoData, now: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for user in &demo.users {
            let hash = crate::sessions::hash_password(&user.password)
                .map_err(|e| StoreError::Corrupt(format!("hashing a demo password: {e}")))?;
            sqlx::query(
                "INSERT INTO users (email, display_name, password_hash, plan, locale) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (email) DO UPDATE SET display_name = excluded.display_name, \
                 password_hash = excluded.password_hash, plan = excluded.plan, locale = excluded.locale",
            )
            .bind(&user.email)
            .bind(&user.display_name)
            .bind(hash)
            .bind(user.plan.as_str())
            .bind(user.locale.as_str())
            .execute(&mut *tx)
            .await?;
        }
        for video in &demo.videos {
            let renditions = serde_json::to_string(&video.renditions).unwrap_or_default();
            sqlx::query(
                "INSERT INTO videos (id, title, duration_secs, hls_playlist_key, renditions, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET title = excluded.title, \
                 duration_secs = excluded.duration_secs, hls_playlist_key = excluded.hls_playlist_key, \
                 renditions = excluded.renditions, updated_at = excluded.updated_at",
            )
            .bind(video.id)
            .bind(&video.title)
            .bind(video.duration_secs)
            .bind(&video.hls_playlist)
            .bind(renditions)
            .bind("2026-11-01T00:00:00Z")
            .execute(&mut *tx)
            .await?;
        }
        for course in &demo.courses {
            let id: i64 = sqlx::query(
                "INSERT INTO courses (slug, title, summary, locale, level, tags, plan, cover_image_key, views, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (slug) DO UPDATE SET \
                 title = excluded.title, summary = excluded.summary, locale = excluded.locale, \
                 level = excluded.level, tags = excluded.tags, plan = excluded.plan, \
                 cover_image_key = excluded.cover_image_key, views = excluded.views, \
                 updated_at = excluded.updated_at RETURNING id",
            )
            .bind(&course.slug)
            .bind(&course.title)
            .bind(&course.summary)
            .bind(course.locale.as_str())
            .bind(course.level.as_str())
            .bind(course.tags.join(" "))
            .bind(course.plan.as_str())
            .bind(course.cover_image.clone())
            .bind(course.views)
            .bind(&course.updated_at)
            .fetch_one(&mut *tx)
            .await?
            .try_get("id")?;
            sqlx::query("DELETE FROM lessons WHERE course_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            for (i, lesson) in course.lessons.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO lessons (course_id, position, title, video_id) VALUES ($1, $2, $3, $4)",
                )
                .bind(id)
                .bind(i as i64 + 1)
                .bind(&lesson.title)
                .bind(lesson.video_id)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;

        let feeds = compute_feeds(&self.all_courses().await?, now);
        let mut tx = self.pool.begin().await?;
        for feed in feeds {
            let body = serde_json::to_string(&feed).unwrap_or_default();
            sqlx::query(
                "INSERT INTO feeds (segment, body, computed_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (segment) DO UPDATE SET body = excluded.body, computed_at = excluded.computed_at",
            )
            .bind(&feed.segment)
            .bind(body)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
