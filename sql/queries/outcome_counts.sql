-- count_outcomes --
-- Add a transaction's event outcomes to the exact totals (in that transaction). $1 queue text, $2 statuses text[], $3 reasons text[], $4 counts bigint[]
INSERT INTO worker.outcome_count AS c (queue, status, reason, shard, n)
SELECT $1, o.status, o.reason, pg_backend_pid() % 1024, o.n
FROM unnest($2::text[], $3::text[], $4::bigint[]) AS o(status, reason, n)
ON CONFLICT (queue, status, reason, shard) DO UPDATE SET n = c.n + EXCLUDED.n

-- outcome_totals --
-- The exact totals, per queue, status and reason (a few dozen rows).
SELECT queue, status, reason, sum(n)::bigint AS n
FROM worker.outcome_count
GROUP BY queue, status, reason
ORDER BY queue, status, reason
