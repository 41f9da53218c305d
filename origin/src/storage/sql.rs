//! [`SqlStore`]: the [`Store`] over sqlx's `Any` driver, so one set of queries serves
//! SQLite and PostgreSQL. `$N` placeholders work on both. Where the engines differ
//! (connection pragmas, migrations, full-text search) the code matches on [`Engine`].

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use protocol::purge::Change;
use protocol::{Locale, Plan, Segment};
use sqlx::AnyConnection;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

use super::demo::{DemoData, compute_feeds};
use super::{EditRules, Edited, OutboxRow, Store, StoreError};
use crate::domain::{
    CatalogPage, CatalogQuery, CourseDetail, CourseEdit, CourseSummary, Credentials, Feed,
    Instructor, Lesson, Level, SearchQuery, SearchResults, Session, Size, Slug, User, Video,
    VideoEdit, VideoId,
};

/// How many times an edit is retried when the engine reports a write conflict (SQLite's
/// busy snapshot, PostgreSQL's serialization failure); the retry re-reads, so a lost
/// update becomes a 412, never a 5xx.
const EDIT_ATTEMPTS: usize = 5;

/// Runs `attempt` again (a fresh transaction) while the engine reports a conflict.
async fn retry_conflicts<T, F, Fut>(mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Err(e) if tries < EDIT_ATTEMPTS && is_conflict(&e) => {
                tokio::time::sleep(Duration::from_millis(5 * tries as u64)).await;
            }
            done => return done,
        }
    }
}

fn is_conflict(e: &StoreError) -> bool {
    match e {
        StoreError::Database(sqlx::Error::Database(db)) => matches!(
            db.code().as_deref(),
            Some("5" | "6" | "517" | "40001" | "40P01")
        ),
        _ => false,
    }
}

async fn course_in(
    conn: &mut AnyConnection,
    slug: &str,
) -> Result<Option<CourseDetail>, StoreError> {
    let sql = format!("SELECT {COURSE_COLUMNS} FROM courses c WHERE c.slug = $1");
    let Some(row) = sqlx::query(&sql)
        .bind(slug)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let course = course_from_row(&row)?;
    let lessons = sqlx::query(
        "SELECT position, title, video_id FROM lessons WHERE course_id = $1 ORDER BY position",
    )
    .bind(course.id)
    .fetch_all(&mut *conn)
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
    let instructor = sqlx::query(
        "SELECT c.instructor_name, c.instructor_photo_key, \
         (SELECT m.width FROM media m WHERE m.key = c.instructor_photo_key) AS photo_width, \
         (SELECT m.height FROM media m WHERE m.key = c.instructor_photo_key) AS photo_height \
         FROM courses c WHERE c.id = $1",
    )
    .bind(course.id)
    .fetch_optional(&mut *conn)
    .await?;
    let instructor = match instructor {
        Some(row) => {
            let name: Option<String> = row.try_get("instructor_name")?;
            match name {
                Some(name) => Some(Instructor {
                    name,
                    photo: row.try_get("instructor_photo_key")?,
                    photo_size: size_from_row(&row, "photo_width", "photo_height")?,
                }),
                None => None,
            }
        }
        None => None,
    };
    Ok(Some(CourseDetail {
        course,
        lessons,
        instructor,
    }))
}

async fn video_in(conn: &mut AnyConnection, id: i64) -> Result<Option<Video>, StoreError> {
    let row = sqlx::query(
        "SELECT id, title, duration_secs, hls_playlist_key, renditions, progressive_key, updated_at FROM videos WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
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
        progressive: row.try_get("progressive_key")?,
        updated_at: row.try_get("updated_at")?,
    }))
}

/// A row's revision, read **before** its representation: under READ COMMITTED each
/// statement sees the latest commit, so reading the revision first means an old
/// representation always comes with an old revision, and the compare-and-set catches it.
async fn rev_of(
    conn: &mut AnyConnection,
    table: &str,
    column: &str,
    value: &str,
) -> Result<Option<i64>, StoreError> {
    let sql = format!("SELECT rev FROM {table} WHERE {column} = $1");
    let query = sqlx::query(&sql);
    let query = match value.parse::<i64>() {
        Ok(n) if column == "id" => query.bind(n),
        _ => query.bind(value),
    };
    Ok(query
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| row.try_get("rev"))
        .transpose()?)
}

async fn all_courses_in(conn: &mut AnyConnection) -> Result<Vec<CourseSummary>, StoreError> {
    let sql = format!("SELECT {COURSE_COLUMNS} FROM courses c ORDER BY c.id");
    let rows = sqlx::query(&sql).fetch_all(&mut *conn).await?;
    rows.iter().map(course_from_row).collect()
}

/// Recomputes and writes every feed; returns the segments.
async fn write_feeds(conn: &mut AnyConnection, now_secs: i64) -> Result<Vec<String>, StoreError> {
    let feeds = compute_feeds(&all_courses_in(conn).await?, now_secs);
    let mut segments = Vec::with_capacity(feeds.len());
    for feed in feeds {
        let body = serde_json::to_string(&feed).unwrap_or_default();
        sqlx::query(
            "INSERT INTO feeds (segment, body, computed_at) VALUES ($1, $2, $3) \
             ON CONFLICT (segment) DO UPDATE SET body = excluded.body, computed_at = excluded.computed_at",
        )
        .bind(&feed.segment)
        .bind(body)
        .bind(now_secs)
        .execute(&mut *conn)
        .await?;
        segments.push(feed.segment);
    }
    Ok(segments)
}

async fn insert_purge(
    conn: &mut AnyConnection,
    change: &Change,
    actor: &str,
    now_ms: i64,
) -> Result<i64, StoreError> {
    let json = serde_json::to_string(change).unwrap_or_default();
    Ok(sqlx::query(
        "INSERT INTO outbox (change, actor, created_at, next_attempt_at) VALUES ($1, $2, $3, $3) RETURNING id",
    )
    .bind(json)
    .bind(actor)
    .bind(now_ms)
    .fetch_one(&mut *conn)
    .await?
    .try_get("id")?)
}

fn outbox_from_row(row: &AnyRow) -> Result<OutboxRow, StoreError> {
    let change: String = row.try_get("change")?;
    let acked: String = row.try_get("acked")?;
    Ok(OutboxRow {
        id: row.try_get("id")?,
        change: serde_json::from_str(&change).map_err(|_| corrupt("outbox change", &change))?,
        actor: row.try_get("actor")?,
        created_at_ms: row.try_get("created_at")?,
        attempts: row.try_get("attempts")?,
        acked: acked
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect(),
        delivered_at_ms: row.try_get("delivered_at")?,
        last_error: row.try_get("last_error")?,
        lease: row.try_get("leased_until")?,
    })
}

const OUTBOX_COLUMNS: &str =
    "id, change, actor, created_at, attempts, acked, delivered_at, last_error, leased_until";

/// RFC 3339 UTC with milliseconds, from unix milliseconds (the `updated_at` spelling).
fn rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

pub struct SqlStore {
    pool: AnyPool,
    engine: Engine,
}

const COURSE_COLUMNS: &str = "c.id, c.slug, c.title, c.summary, c.locale, c.level, c.tags, c.plan, c.cover_image_key, \
     (SELECT m.width FROM media m WHERE m.key = c.cover_image_key) AS cover_width, \
     (SELECT m.height FROM media m WHERE m.key = c.cover_image_key) AS cover_height, \
     c.views, c.updated_at";

/// A size from two nullable integer columns (both present and positive, else unknown).
fn size_from_row(row: &AnyRow, width: &str, height: &str) -> Result<Option<Size>, StoreError> {
    let width: Option<i64> = row.try_get(width)?;
    let height: Option<i64> = row.try_get(height)?;
    Ok(width.zip(height).and_then(|(w, h)| {
        Some(Size {
            width: u32::try_from(w).ok().filter(|w| *w > 0)?,
            height: u32::try_from(h).ok().filter(|h| *h > 0)?,
        })
    }))
}

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
        cover_size: size_from_row(row, "cover_width", "cover_height")?,
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

    async fn try_edit_course(
        &self,
        slug: &Slug,
        if_match: &str,
        edit: &CourseEdit,
        rules: &EditRules<'_, CourseDetail>,
    ) -> Result<Edited<CourseDetail>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let Some(rev) = rev_of(&mut tx, "courses", "slug", slug.as_str()).await? else {
            return Ok(Edited::Missing);
        };
        let Some(current) = course_in(&mut tx, slug.as_str()).await? else {
            return Ok(Edited::Missing);
        };
        let current_etag = (rules.etag)(&current);
        if current_etag != if_match {
            return Ok(Edited::Stale { current_etag });
        }
        let tags: Vec<&str> = edit.tags.iter().map(|t| t.as_str()).collect();
        // Compare-and-set on the revision read above: a concurrent edit that committed
        // in between makes this touch no row, and the edit answers 412.
        let updated = sqlx::query(
            "UPDATE courses SET title = $1, summary = $2, locale = $3, level = $4, tags = $5, \
             plan = $6, cover_image_key = $7, updated_at = $8, rev = rev + 1 \
             WHERE id = $9 AND rev = $10",
        )
        .bind(&edit.title)
        .bind(&edit.summary)
        .bind(edit.locale.as_str())
        .bind(edit.level.as_str())
        .bind(tags.join(" "))
        .bind(edit.plan.as_str())
        .bind(edit.cover_image.clone())
        .bind(rfc3339_ms(rules.now_ms))
        .bind(current.course.id)
        .bind(rev)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            drop(tx);
            let current_etag = match self.course(slug).await? {
                Some(now) => (rules.etag)(&now),
                None => return Ok(Edited::Missing),
            };
            return Ok(Edited::Stale { current_etag });
        }
        let segments = write_feeds(&mut tx, rules.now_ms / 1000).await?;
        let value = course_in(&mut tx, slug.as_str())
            .await?
            .ok_or_else(|| corrupt("course vanished mid-edit", slug.as_str()))?;
        let outbox_id = insert_purge(
            &mut tx,
            &(rules.change)(&value, &segments),
            rules.actor,
            rules.now_ms,
        )
        .await?;
        tx.commit().await?;
        Ok(Edited::Updated { value, outbox_id })
    }

    async fn try_edit_video(
        &self,
        id: VideoId,
        if_match: &str,
        edit: &VideoEdit,
        rules: &EditRules<'_, Video>,
    ) -> Result<Edited<Video>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let Some(rev) = rev_of(&mut tx, "videos", "id", &id.0.to_string()).await? else {
            return Ok(Edited::Missing);
        };
        let Some(current) = video_in(&mut tx, id.0).await? else {
            return Ok(Edited::Missing);
        };
        let current_etag = (rules.etag)(&current);
        if current_etag != if_match {
            return Ok(Edited::Stale { current_etag });
        }
        let renditions = serde_json::to_string(&edit.renditions).unwrap_or_default();
        let updated = sqlx::query(
            "UPDATE videos SET title = $1, duration_secs = $2, hls_playlist_key = $3, \
             renditions = $4, updated_at = $5, rev = rev + 1 WHERE id = $6 AND rev = $7",
        )
        .bind(&edit.title)
        .bind(edit.duration_secs)
        .bind(&edit.hls_playlist)
        .bind(renditions)
        .bind(rfc3339_ms(rules.now_ms))
        .bind(id.0)
        .bind(rev)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            drop(tx);
            let current_etag = match self.video(id).await? {
                Some(now) => (rules.etag)(&now),
                None => return Ok(Edited::Missing),
            };
            return Ok(Edited::Stale { current_etag });
        }
        let value = video_in(&mut tx, id.0)
            .await?
            .ok_or_else(|| corrupt("video vanished mid-edit", &id.0.to_string()))?;
        let outbox_id = insert_purge(
            &mut tx,
            &(rules.change)(&value, &[]),
            rules.actor,
            rules.now_ms,
        )
        .await?;
        tx.commit().await?;
        Ok(Edited::Updated { value, outbox_id })
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
        let mut conn = self.pool.acquire().await?;
        course_in(&mut conn, slug.as_str()).await
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
        let mut conn = self.pool.acquire().await?;
        video_in(&mut conn, id.0).await
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

    async fn edit_course(
        &self,
        slug: &Slug,
        if_match: &str,
        edit: &CourseEdit,
        rules: EditRules<'_, CourseDetail>,
    ) -> Result<Edited<CourseDetail>, StoreError> {
        retry_conflicts(|| self.try_edit_course(slug, if_match, edit, &rules)).await
    }

    async fn edit_video(
        &self,
        id: VideoId,
        if_match: &str,
        edit: &VideoEdit,
        rules: EditRules<'_, Video>,
    ) -> Result<Edited<Video>, StoreError> {
        retry_conflicts(|| self.try_edit_video(id, if_match, edit, &rules)).await
    }

    async fn rebuild_feeds(
        &self,
        change: &(dyn for<'s> Fn(&'s [String]) -> Change + Sync),
        actor: &str,
        now_ms: i64,
    ) -> Result<(Vec<String>, i64), StoreError> {
        let mut tx = self.pool.begin().await?;
        let segments = write_feeds(&mut tx, now_ms / 1000).await?;
        let id = insert_purge(&mut tx, &change(&segments), actor, now_ms).await?;
        tx.commit().await?;
        Ok((segments, id))
    }

    async fn record_purge(
        &self,
        change: &Change,
        actor: &str,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_purge(&mut conn, change, actor, now_ms).await
    }

    async fn claim_purges(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let candidates = sqlx::query(
            "SELECT id FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= $1 \
             AND leased_until < $1 ORDER BY id LIMIT $2",
        )
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = Vec::new();
        for row in candidates {
            let id: i64 = row.try_get("id")?;
            // Compare-and-set on the lease: of two instances, one wins each row.
            let sql = format!(
                "UPDATE outbox SET leased_until = $1, attempts = attempts + 1 \
                 WHERE id = $2 AND delivered_at IS NULL AND leased_until < $3 RETURNING {OUTBOX_COLUMNS}"
            );
            if let Some(row) = sqlx::query(&sql)
                .bind(now_ms + lease_ms)
                .bind(id)
                .bind(now_ms)
                .fetch_optional(&self.pool)
                .await?
            {
                claimed.push(outbox_from_row(&row)?);
            }
        }
        Ok(claimed)
    }

    async fn purge_attempted(
        &self,
        id: i64,
        lease: i64,
        acked: &[String],
        next_at_ms: Option<i64>,
        error: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let acked = acked.join(",");
        let done = match next_at_ms {
            None => {
                sqlx::query(
                    "UPDATE outbox SET delivered_at = $1, acked = $2, leased_until = 0, last_error = NULL \
                     WHERE id = $3 AND leased_until = $4",
                )
                .bind(now_ms)
                .bind(acked)
                .bind(id)
                .bind(lease)
                .execute(&self.pool)
                .await?
            }
            Some(next) => {
                let error: String = error.unwrap_or("").chars().take(500).collect();
                sqlx::query(
                    "UPDATE outbox SET next_attempt_at = $1, acked = $2, leased_until = 0, last_error = $5 \
                     WHERE id = $3 AND leased_until = $4",
                )
                .bind(next)
                .bind(acked)
                .bind(id)
                .bind(lease)
                .bind(error)
                .execute(&self.pool)
                .await?
            }
        };
        Ok(done.rows_affected() == 1)
    }

    async fn prune_purges(&self, before_ms: i64) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < $1")
                .bind(before_ms)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    async fn pending_purges(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE delivered_at IS NULL")
                .fetch_one(&self.pool)
                .await?
                .try_get("n")?,
        )
    }

    async fn purge_row(&self, id: i64) -> Result<Option<OutboxRow>, StoreError> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = $1");
        sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(outbox_from_row)
            .transpose()
    }

    async fn media_size(&self, key: &str) -> Result<Option<Size>, StoreError> {
        let row = sqlx::query("SELECT width, height FROM media WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => size_from_row(&row, "width", "height"),
            None => Ok(None),
        }
    }

    async fn put_media_size(&self, key: &str, size: Size) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO media (key, width, height) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET width = excluded.width, height = excluded.height",
        )
        .bind(key)
        .bind(i64::from(size.width))
        .bind(i64::from(size.height))
        .execute(&self.pool)
        .await?;
        Ok(())
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
        for media in &demo.media {
            sqlx::query(
                "INSERT INTO media (key, width, height) VALUES ($1, $2, $3) \
                 ON CONFLICT (key) DO UPDATE SET width = excluded.width, height = excluded.height",
            )
            .bind(&media.key)
            .bind(i64::from(media.width))
            .bind(i64::from(media.height))
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
            sqlx::query("UPDATE videos SET progressive_key = $1 WHERE id = $2")
                .bind(video.progressive.clone())
                .bind(video.id)
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
            let (name, photo) = course
                .instructor
                .as_ref()
                .map(|i| (Some(i.name.clone()), i.photo.clone()))
                .unwrap_or_default();
            sqlx::query(
                "UPDATE courses SET instructor_name = $1, instructor_photo_key = $2 WHERE id = $3",
            )
            .bind(name)
            .bind(photo)
            .bind(id)
            .execute(&mut *tx)
            .await?;
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

        let mut tx = self.pool.begin().await?;
        write_feeds(&mut tx, now).await?;
        tx.commit().await?;
        Ok(())
    }
}
