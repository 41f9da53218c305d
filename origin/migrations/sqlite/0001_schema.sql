-- course-edge origin schema (SQLite). Kept in step with migrations/postgres.
CREATE TABLE courses (
    id              INTEGER PRIMARY KEY,
    slug            TEXT    NOT NULL UNIQUE,
    title           TEXT    NOT NULL,
    summary         TEXT    NOT NULL,
    locale          TEXT    NOT NULL,
    level           TEXT    NOT NULL,
    tags            TEXT    NOT NULL DEFAULT '',   -- space-separated
    plan            TEXT    NOT NULL,              -- free | pro
    cover_image_key TEXT,
    views           INTEGER NOT NULL DEFAULT 0,
    updated_at      TEXT    NOT NULL
);
CREATE INDEX courses_listing ON courses (locale, level, id);
CREATE INDEX courses_views ON courses (views DESC);

CREATE TABLE videos (
    id               INTEGER PRIMARY KEY,
    title            TEXT    NOT NULL,
    duration_secs    INTEGER NOT NULL,
    hls_playlist_key TEXT    NOT NULL,
    renditions       TEXT    NOT NULL,             -- JSON array
    updated_at       TEXT    NOT NULL
);

CREATE TABLE lessons (
    id        INTEGER PRIMARY KEY,
    course_id INTEGER NOT NULL REFERENCES courses (id) ON DELETE CASCADE,
    position  INTEGER NOT NULL,
    title     TEXT    NOT NULL,
    video_id  INTEGER REFERENCES videos (id),
    UNIQUE (course_id, position)
);

CREATE TABLE users (
    id           INTEGER PRIMARY KEY,
    email        TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,                -- argon2id PHC string
    plan         TEXT NOT NULL,
    locale       TEXT NOT NULL
);

CREATE TABLE sessions (
    id         TEXT    PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,                   -- unix seconds
    expires_at INTEGER NOT NULL
);

CREATE TABLE feeds (
    segment     TEXT    PRIMARY KEY,
    body        TEXT    NOT NULL,                  -- precomputed JSON
    computed_at INTEGER NOT NULL
);

CREATE VIRTUAL TABLE courses_fts USING fts5 (
    title, summary, tags, content = 'courses', content_rowid = 'id', tokenize = 'unicode61'
);
CREATE TRIGGER courses_fts_insert AFTER INSERT ON courses BEGIN
    INSERT INTO courses_fts (rowid, title, summary, tags) VALUES (new.id, new.title, new.summary, new.tags);
END;
CREATE TRIGGER courses_fts_delete AFTER DELETE ON courses BEGIN
    INSERT INTO courses_fts (courses_fts, rowid, title, summary, tags) VALUES ('delete', old.id, old.title, old.summary, old.tags);
END;
CREATE TRIGGER courses_fts_update AFTER UPDATE ON courses BEGIN
    INSERT INTO courses_fts (courses_fts, rowid, title, summary, tags) VALUES ('delete', old.id, old.title, old.summary, old.tags);
    INSERT INTO courses_fts (rowid, title, summary, tags) VALUES (new.id, new.title, new.summary, new.tags);
END;
