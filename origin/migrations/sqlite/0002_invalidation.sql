-- Invalidation: a revision per editable row (compare-and-swap for If-Match) and the
-- outbox of purges, written in the same transaction as the change they describe.
ALTER TABLE courses ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;
ALTER TABLE videos ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    change          TEXT    NOT NULL,              -- JSON: tags, urls, prefixes, mode
    actor           TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,              -- unix milliseconds
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,              -- unix milliseconds
    acked           TEXT    NOT NULL DEFAULT '',   -- comma-separated targets that acknowledged
    leased_until    INTEGER NOT NULL DEFAULT 0,    -- a deliverer's claim, unix milliseconds
    delivered_at    INTEGER,                       -- NULL until every target acknowledged
    last_error      TEXT
);
CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE delivered_at IS NULL;
