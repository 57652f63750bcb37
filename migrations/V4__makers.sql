-- The API key that made each hold and spend (SPEC §9.1): only that key, or
-- an admin key, may capture or release the hold, or complete or refund the
-- spend. NULL for those made before makers were recorded: an admin key or
-- time finishes them.
ALTER TABLE holds ADD COLUMN owner TEXT;
ALTER TABLE spends ADD COLUMN owner TEXT;
