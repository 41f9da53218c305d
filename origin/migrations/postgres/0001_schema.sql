-- course-edge origin schema (PostgreSQL). Kept in step with migrations/sqlite.
CREATE TABLE courses (
    id              BIGSERIAL PRIMARY KEY,
    slug            TEXT   NOT NULL UNIQUE,
    title           TEXT   NOT NULL,
    summary         TEXT   NOT NULL,
    locale          TEXT   NOT NULL,
    level           TEXT   NOT NULL,
    tags            TEXT   NOT NULL DEFAULT '',
    plan            TEXT   NOT NULL,
    cover_image_key TEXT,
    views           BIGINT NOT NULL DEFAULT 0,
    updated_at      TEXT   NOT NULL,
    search          TSVECTOR GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', title), 'A') ||
        setweight(to_tsvector('simple', tags), 'B') ||
        setweight(to_tsvector('simple', summary), 'C')
    ) STORED
);
CREATE INDEX courses_listing ON courses (locale, level, id);
CREATE INDEX courses_views ON courses (views DESC);
CREATE INDEX courses_search ON courses USING GIN (search);

CREATE TABLE videos (
    id               BIGSERIAL PRIMARY KEY,
    title            TEXT   NOT NULL,
    duration_secs    BIGINT NOT NULL,
    hls_playlist_key TEXT   NOT NULL,
    renditions       TEXT   NOT NULL,
    updated_at       TEXT   NOT NULL
);

CREATE TABLE lessons (
    id        BIGSERIAL PRIMARY KEY,
    course_id BIGINT NOT NULL REFERENCES courses (id) ON DELETE CASCADE,
    position  BIGINT NOT NULL,
    title     TEXT   NOT NULL,
    video_id  BIGINT REFERENCES videos (id),
    UNIQUE (course_id, position)
);

CREATE TABLE users (
    id           BIGSERIAL PRIMARY KEY,
    email        TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,                -- argon2id PHC string
    plan         TEXT NOT NULL,
    locale       TEXT NOT NULL
);

CREATE TABLE sessions (
    id         TEXT   PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE feeds (
    segment     TEXT   PRIMARY KEY,
    body        TEXT   NOT NULL,
    computed_at BIGINT NOT NULL
);
