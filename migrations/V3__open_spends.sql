-- Open spends (SPEC §5, §6): a spend is open until the enhancement service
-- completes or refunds it, or until `spend_complete_after_secs` runs out;
-- a sync holds back the provider credits of the spends the provider may
-- still consume.

-- Σ open spends (user credits), and what the last sync held back that no
-- refund has given back since (provider credits).
ALTER TABLE inventory
    ADD COLUMN open_spends          BIGINT NOT NULL DEFAULT 0 CHECK (open_spends >= 0),
    ADD COLUMN held_back            BIGINT NOT NULL DEFAULT 0 CHECK (held_back >= 0),
    ADD COLUMN last_sync_seq        BIGINT,
    ADD COLUMN last_sync_held_back  BIGINT;

-- A providerSync entry's balance is `real_balance - held_back`; before open
-- spends the same column held the consumption in flight, with the same rule.
ALTER TABLE ledger RENAME COLUMN consumed_in_flight TO held_back;
-- spendCompleted: who completed it.
ALTER TABLE ledger ADD COLUMN completed_by TEXT CHECK (completed_by IN ('service', 'time'));

-- A spend's state. Spends made before open spends were final when made:
-- those not refunded read as completed.
ALTER TABLE spends
    ADD COLUMN created_at    TIMESTAMPTZ NOT NULL DEFAULT to_timestamp(0),
    ADD COLUMN state         TEXT NOT NULL DEFAULT 'completed'
                             CHECK (state IN ('open', 'completed', 'refunded')),
    ADD COLUMN completed_by  TEXT CHECK (completed_by IN ('service', 'time')),
    ADD COLUMN completed_at  TIMESTAMPTZ;
UPDATE spends SET state = 'refunded' WHERE refunded_balance IS NOT NULL;
UPDATE spends SET completed_by = 'time', completed_at = to_timestamp(0) WHERE state = 'completed';
CREATE INDEX spends_open ON spends (created_at) WHERE state = 'open';
