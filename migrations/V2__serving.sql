-- Serving from PostgreSQL (SPEC §12): the pruning cursor, and the checks
-- every group's transaction makes in SQL, so that a whole group can be sent
-- in one pipelined round trip and still abort before anything of it commits.

-- Where the pruning of idempotency records stopped (SPEC §9.2): one row.
CREATE TABLE prune_cursor (
    id        BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    last_seq  BIGINT NOT NULL CHECK (last_seq >= 0)
);

-- The first statement of every group: the lease must still be at the
-- committing node's epoch. The lease row stays locked FOR SHARE until the
-- transaction ends, so a takeover waits for a group in flight, and a group
-- of an old epoch aborts with SQLSTATE CRFEN ("fenced").
CREATE FUNCTION creditd_fence(ours BIGINT) RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
    current BIGINT;
BEGIN
    SELECT epoch INTO current FROM lease FOR SHARE;
    IF current IS DISTINCT FROM ours THEN
        RAISE EXCEPTION 'fenced: this node''s epoch % is not the lease''s %', ours, current
            USING ERRCODE = 'CRFEN';
    END IF;
END
$$;

-- Aborts the transaction when a precondition of a group does not hold
-- (SQLSTATE CRPRE): a wallet not at the version its write expects.
CREATE FUNCTION creditd_require(holds BOOLEAN, what TEXT) RETURNS VOID LANGUAGE plpgsql AS $$
BEGIN
    IF NOT holds THEN
        RAISE EXCEPTION 'precondition: %', what USING ERRCODE = 'CRPRE';
    END IF;
END
$$;
