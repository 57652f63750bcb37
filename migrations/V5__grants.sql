-- Credit grants (SPEC §13): every credit in a wallet belongs to a grant.
--
-- wallets.grants: the wallet's grants as JSON (id, kind, credits,
-- remaining, price, created, expiry, closed); NULL for a wallet written
-- before grants, which reads as one never-expiring paid grant of its
-- balance. spends.draws: the grants a spend drew from (NULL: before
-- grants). holds.expires_after_days: the package's setting when the hold
-- was made. ledger: grant_id, grant_kind and breakage for grantCreated,
-- grantExpired and grantVoided; grants, what a purchase, capture, spend or
-- refund did to the user's grants (JSON); expires_after_days for
-- packageExpiryChanged. grant_deadlines: the grants not
-- closed that will expire, read at start.
ALTER TABLE wallets ADD COLUMN grants JSONB;
ALTER TABLE spends ADD COLUMN draws JSONB;
ALTER TABLE holds ADD COLUMN expires_after_days INTEGER;
ALTER TABLE package_overrides ADD COLUMN expires_after_days INTEGER;
ALTER TABLE ledger
    ADD COLUMN grant_id BIGINT,
    ADD COLUMN grant_kind TEXT,
    ADD COLUMN grants JSONB,
    ADD COLUMN breakage_minor_units BIGINT,
    ADD COLUMN expires_after_days INTEGER;
ALTER TABLE inventory
    ADD COLUMN expired_credits BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN voided_credits BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN breakage_minor_units BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN promotional_outstanding BIGINT NOT NULL DEFAULT 0;
CREATE TABLE grant_deadlines (
    grant_seq BIGINT PRIMARY KEY,
    expires_at TIMESTAMPTZ NOT NULL,
    user_id TEXT NOT NULL
);
CREATE INDEX grant_deadlines_by_expiry ON grant_deadlines (expires_at);
-- The user credits expired on each UTC day, and the revenue they had earned
-- (the report's expiredByDay).
CREATE TABLE expired_by_day (
    day DATE PRIMARY KEY,
    credits BIGINT NOT NULL,
    breakage_minor_units BIGINT NOT NULL
);
