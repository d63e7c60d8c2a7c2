-- Exact ops counters (docs/ops.md "Counters"): how many event outcomes the worker committed, per
-- queue, status and reason. Each transaction that decides events adds its counts here, in that
-- transaction: a crash rolls them back with the outcomes they count, so the totals equal what
-- was committed — after any number of SIGKILLs, Redis losses or restarts. (The per-10 s rates
-- the dashboard draws stay in Redis, where losing a second of them on a crash is harmless.)
--
-- `shard`: the writing backend's pid modulo 1024. Every decision transaction of every worker
-- process updates these rows, and a row stays locked until its transaction commits: one row per
-- (queue, status, reason) would line all the connections' commits up behind each other. With a
-- row per backend (almost always) they never wait for one another. Readers sum (at most
-- 1024 rows per kind).
CREATE TABLE worker.outcome_count (
    queue  TEXT NOT NULL,      -- usage, billing, users, storage
    status TEXT NOT NULL,      -- applied, duplicate, rejected, waiting
    reason TEXT NOT NULL,      -- why (rejected, waiting), or a note ('' for none)
    shard  SMALLINT NOT NULL,
    n      BIGINT NOT NULL,
    PRIMARY KEY (queue, status, reason, shard)
);
