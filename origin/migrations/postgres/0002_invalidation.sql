-- Invalidation: a revision per editable row (compare-and-swap for If-Match) and the
-- outbox of purges, written in the same transaction as the change they describe.
ALTER TABLE courses ADD COLUMN rev BIGINT NOT NULL DEFAULT 0;
ALTER TABLE videos ADD COLUMN rev BIGINT NOT NULL DEFAULT 0;

CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    change          TEXT   NOT NULL,
    actor           TEXT   NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    acked           TEXT   NOT NULL DEFAULT '',
    leased_until    BIGINT NOT NULL DEFAULT 0,
    delivered_at    BIGINT,
    last_error      TEXT
);
CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE delivered_at IS NULL;
