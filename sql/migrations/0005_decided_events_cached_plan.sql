-- worker.decided_events again, now with one cached plan that cannot be a sequential scan.
--
-- 0004 planned every call (EXECUTE) to escape a generic plan chosen on stale statistics. That
-- was measured to cost 40-70 µs of planning per call, and a per-call plan is no guarantee
-- either: on a table whose statistics lag behind its size (a bulk import before autovacuum's
-- ANALYZE) PostgreSQL estimates an equality on an unknown column at 0.5 % of the rows, so a
-- lookup of 500 ids "matches the whole table" and is planned as a sequential scan (measured:
-- 4.5 ms instead of 0.6 ms at 100,000 rows). The lookup is always a few ids against a primary
-- key, so the function says so: sequential scans off and a generic plan, planned once per
-- session and cached (static SQL in plpgsql), whatever the statistics say.
CREATE OR REPLACE FUNCTION worker.decided_events(ids text[])
RETURNS TABLE (event_id text, payload_hash text, raw_hash text)
LANGUAGE plpgsql STABLE
SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN QUERY
        SELECT e.event_id, e.payload_hash, e.raw_hash FROM worker.event_log e WHERE e.event_id = ANY(ids);
END
$$;
