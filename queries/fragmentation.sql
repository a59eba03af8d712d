-- fragmentation.sql: how fragmented is the heap at its peak and at the end?
--
-- Definition. At a moment T, take the blocks live at T (allocated at or
-- before T, not yet deallocated or reallocated) in address order. A gap is
-- the free space between one live block's end (address + size) and the
-- next live block's start. Gaps of 64 MiB or more are not free space but
-- the distance between separate regions (the brk heap, mmap'd chunks,
-- per-thread arenas), and are ignored. Then
--
--     fragmentation = 1 - largest_gap_bytes / free_bytes
--
-- 0 means all free space between live blocks is one hole (a request of
-- that size could be served); near 1 means it is scattered in many small
-- holes. NULL when there is no free space between live blocks. Sizes are
-- requested sizes, so allocator headers and rounding count as free space.
--
-- The moments: 'peak', the first time live bytes (all blocks) were
-- highest, deallocations counted first at equal timestamps; and 'end', the
-- end of the trace (the blocks live then are the leaked ones).
--
-- Beside the heap, the resident set size (RSS) the recorder sampled at or
-- before each moment: RSS - live_bytes is what the process holds beyond
-- live heap blocks (allocator overhead and free memory it keeps, stacks,
-- code, the trace's own pages).
--
-- A sampled trace (trace.sample_rate_bytes > 0) lacks most small blocks, so
-- its gaps overstate free space: do not read fragmentation from it.
--
-- Columns:
--   at                 'peak' or 'end'
--   at_ns              the moment, in ns since the trace origin
--   live_blocks        blocks live at that moment
--   live_bytes         their total requested size, in bytes
--   free_bytes         total size of the gaps below 64 MiB, in bytes
--   largest_gap_bytes  the largest such gap, in bytes
--   fragmentation      1 - largest_gap_bytes / free_bytes, from 0 to 1
--   rss_bytes          the RSS sample at or before the moment (the latest; the
--                      largest of those at that time), in bytes; NULL when
--                      there is none
WITH deltas AS (
    SELECT alloc_ts_ns AS ts_ns, 1 AS ord, CAST(size AS BIGINT) AS delta FROM allocations
    UNION ALL
    SELECT free_ts_ns AS ts_ns, 0 AS ord, -CAST(size AS BIGINT) AS delta
    FROM allocations WHERE free_ts_ns IS NOT NULL
),
running AS (
    SELECT ts_ns, ord,
           SUM(delta) OVER (ORDER BY ts_ns, ord ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS live_bytes
    FROM deltas
),
points AS (
    SELECT 'peak' AS at, 0 AS sort_key, ts_ns AS at_ns
    FROM (SELECT ts_ns FROM running ORDER BY live_bytes DESC, ts_ns LIMIT 1) p
    UNION ALL
    SELECT 'end' AS at, 1 AS sort_key, duration_ns AS at_ns FROM trace
),
live AS (
    SELECT p.at, p.sort_key, p.at_ns, CAST(a.address AS BIGINT) AS address, CAST(a.size AS BIGINT) AS size
    FROM points p
    LEFT JOIN allocations a
      ON a.alloc_ts_ns <= p.at_ns
     AND (a.free_ts_ns IS NULL OR a.free_ts_ns > p.at_ns)
),
gaps AS (
    SELECT at, sort_key, at_ns, address, size,
           LEAD(address) OVER (PARTITION BY at ORDER BY address) - (address + size) AS gap
    FROM live
),
summary AS (
    SELECT at, sort_key, at_ns,
           COUNT(address) AS live_blocks,
           COALESCE(SUM(size), 0) AS live_bytes,
           COALESCE(SUM(CASE WHEN gap > 0 AND gap < 67108864 THEN gap ELSE 0 END), 0) AS free_bytes,
           COALESCE(MAX(CASE WHEN gap > 0 AND gap < 67108864 THEN gap ELSE 0 END), 0) AS largest_gap_bytes
    FROM gaps
    GROUP BY at, sort_key, at_ns
),
-- The RSS sample at or before each moment (one summary row per `at` and
-- `at_ns`; a dataset of several runs has an 'end' per run). Read from
-- `summary`, so that the peak above is found once: a second reading of
-- `points` would sort every event again.
with_rss AS (
    SELECT s.*, r.ts_ns AS rss_ts_ns, r.rss_bytes,
           ROW_NUMBER() OVER (PARTITION BY s.at, s.at_ns
                              ORDER BY r.ts_ns DESC NULLS LAST, r.rss_bytes DESC NULLS LAST) AS n
    FROM summary s
    LEFT JOIN rss r ON r.ts_ns <= s.at_ns
)
SELECT at, at_ns, live_blocks, live_bytes, free_bytes, largest_gap_bytes,
       CASE WHEN free_bytes = 0 THEN NULL
            ELSE 1.0 - CAST(largest_gap_bytes AS DOUBLE) / CAST(free_bytes AS DOUBLE) END AS fragmentation,
       rss_bytes
FROM with_rss
WHERE n = 1
ORDER BY sort_key;
