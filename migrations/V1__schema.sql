-- creditd's store of record in cluster mode (SPEC §12): typed columns, so
-- that finance can query it (docs/postgres.md). Every amount is a BIGINT
-- (creditd bounds every quantity by 2^53 - 1); times are TIMESTAMPTZ.

-- Facts fixed by `creditd init --store`: one row.
CREATE TABLE meta (
    id          BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    ratio       BIGINT NOT NULL CHECK (ratio >= 1),
    currency    CHAR(3) NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

-- The inventory after the last committed group: one row.
CREATE TABLE inventory (
    id                  BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    provider_balance    BIGINT NOT NULL CHECK (provider_balance >= 0),
    reserved            BIGINT NOT NULL CHECK (reserved >= 0),
    wallets_total       BIGINT NOT NULL CHECK (wallets_total >= 0),
    holds_total         BIGINT NOT NULL CHECK (holds_total >= 0),
    next_seq            BIGINT NOT NULL CHECK (next_seq >= 1),
    last_sync_at        TIMESTAMPTZ,
    last_sync_real      BIGINT,
    last_sync_drift     BIGINT,
    purchases_enabled   BOOLEAN NOT NULL,
    disabled_reason     TEXT,
    revenue_minor_units BIGINT NOT NULL CHECK (revenue_minor_units >= 0),
    consumed_total      BIGINT NOT NULL CHECK (consumed_total >= 0)
);

-- Every change (SPEC §4.6), gap-free from 1. `kind` is the ledger export's
-- name; the columns a kind does not use are NULL.
CREATE TABLE ledger (
    seq                     BIGINT PRIMARY KEY CHECK (seq >= 1),
    at                      TIMESTAMPTZ NOT NULL,
    kind                    TEXT NOT NULL,
    user_id                 TEXT,
    idempotency_key         TEXT,
    caller                  TEXT,
    package_id              TEXT,
    credits                 BIGINT,
    price_minor_units       BIGINT,
    purchase_id             TEXT,
    hold_id                 TEXT,
    spend_id                TEXT,
    expires_at              TIMESTAMPTZ,
    reason                  TEXT,
    enabled                 BOOLEAN,
    real_balance            BIGINT,
    previous_balance        BIGINT,
    consumed_in_flight      BIGINT,
    drift                   BIGINT,
    key_id                  TEXT,
    key_name                TEXT,
    scopes                  TEXT[],
    key_hash                BYTEA,
    provider_balance_after  BIGINT NOT NULL,
    reserved_after          BIGINT NOT NULL,
    wallet_after            BIGINT
);
CREATE INDEX ledger_by_user ON ledger (user_id, seq) WHERE user_id IS NOT NULL;
CREATE INDEX ledger_by_time ON ledger (at);

CREATE TABLE wallets (
    user_id  TEXT PRIMARY KEY,
    balance  BIGINT NOT NULL CHECK (balance >= 0),
    version  BIGINT NOT NULL,
    -- The sequence numbers of the last 20 entries that moved the wallet.
    recent   BIGINT[] NOT NULL
);

CREATE TABLE holds (
    hold_id            TEXT PRIMARY KEY,
    user_id            TEXT NOT NULL,
    package_id         TEXT NOT NULL,
    credits            BIGINT NOT NULL CHECK (credits >= 1),
    price_minor_units  BIGINT NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL,
    expires_at         TIMESTAMPTZ NOT NULL,
    state              TEXT NOT NULL CHECK (state IN ('open', 'captured', 'released', 'expired')),
    -- The wallet right after the capture, for a second capture's answer.
    captured_balance   BIGINT
);
CREATE INDEX holds_open ON holds (expires_at) WHERE state = 'open';

CREATE TABLE spends (
    spend_id          TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL,
    credits           BIGINT NOT NULL CHECK (credits >= 1),
    seq               BIGINT NOT NULL REFERENCES ledger (seq),
    -- The wallet right after the refund, once refunded.
    refunded_balance  BIGINT
);

-- A used Idempotency-Key, scoped to its caller (SPEC §9.1); the answer is
-- rebuilt from the ledger entry `seq`. Pruned after the retention (SPEC §9.2).
CREATE TABLE idempotency (
    operation    CHAR(1) NOT NULL,
    caller       TEXT NOT NULL,
    key          TEXT NOT NULL,
    fingerprint  BYTEA NOT NULL,
    seq          BIGINT NOT NULL REFERENCES ledger (seq),
    at           TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (operation, caller, key)
);
CREATE INDEX idempotency_by_time ON idempotency (at);

-- API keys (SPEC §9.1): the SHA-256 of each key, never the key.
CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    scopes        TEXT[] NOT NULL,
    key_hash      BYTEA NOT NULL UNIQUE,
    created_at    TIMESTAMPTZ NOT NULL,
    last_used_at  TIMESTAMPTZ,
    revoked_at    TIMESTAMPTZ
);

CREATE TABLE package_overrides (
    package_id         TEXT PRIMARY KEY,
    enabled            BOOLEAN NOT NULL,
    credits            BIGINT NOT NULL CHECK (credits >= 1),
    price_minor_units  BIGINT NOT NULL,
    currency           CHAR(3) NOT NULL
);

CREATE TABLE alert_events (
    id        BIGINT PRIMARY KEY,
    kind      TEXT NOT NULL,
    firing    BOOLEAN NOT NULL,
    severity  TEXT NOT NULL,
    message   TEXT NOT NULL,
    at        TIMESTAMPTZ NOT NULL
);

-- The leader lease (SPEC §12): one row; `epoch` fences every commit.
CREATE TABLE lease (
    id             BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    epoch          BIGINT NOT NULL,
    holder         TEXT,
    advertise_url  TEXT,
    expires_at     TIMESTAMPTZ NOT NULL
);
