-- Which of these event ids were decided already, and with which hashes.
--
-- A function, not a plain prepared statement: `event_id = ANY($1)` as a prepared statement gets
-- a generic plan after a few runs, chosen with the statistics of the moment. On a young or
-- fast-growing table (a new deployment, a bulk import: statistics still say "empty") that plan
-- is a sequential scan, and every lookup then reads the whole table; measured: 0.15 ms -> 58 ms
-- for 500 ids once the table held 50k rows. EXECUTE plans each call with the actual ids, which
-- is always the primary-key index.
CREATE FUNCTION worker.decided_events(ids text[])
RETURNS TABLE (event_id text, payload_hash text, raw_hash text)
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    RETURN QUERY EXECUTE
        'SELECT e.event_id, e.payload_hash, e.raw_hash FROM worker.event_log e WHERE e.event_id = ANY($1)'
        USING ids;
END
$$;
