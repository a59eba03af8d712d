-- call_site_hotspots.sql: which places in the program allocate most, and
-- which hold the most memory at once?
--
-- One row per call site (the first frame of the allocation's call stack
-- outside the allocator, the standard library and memscope) and source
-- line, by bytes allocated; allocations without a stack together as
-- '(no stack)'. A reallocation counts as one allocation of its new size,
-- at the place that reallocated. When the trace is sampled
-- (trace.sample_rate_bytes > 0), counts and bytes are estimates: each
-- recorded allocation stands for `weight` allocations.
--
-- Columns:
--   call_site         the allocating function, or module+0xoffset
--   file              source file of the allocating call; NULL without
--                     debug information
--   line              source line of the allocating call; NULL likewise
--   allocations       number of allocations made there
--   allocated_bytes   total requested bytes, in bytes
--   avg_size_bytes    allocated_bytes / allocations, in bytes
--   peak_live_bytes   the most bytes allocated there live at one time, in
--                     bytes (at equal timestamps, deallocations count first)
--   leaked_bytes      bytes allocated there still live when the trace ended
--   median_lifetime_ns  median lifetime of its freed allocations, in ns;
--                     NULL when none was freed
WITH sited AS (
    SELECT COALESCE(call_site, '(no stack)') AS call_site,
           COALESCE(call_site_file, '') AS file, COALESCE(call_site_line, 0) AS line,
           alloc_ts_ns, free_ts_ns, lifetime_ns, weight, size * weight AS weighted_size
    FROM allocations
),
deltas AS (
    SELECT call_site, file, line, alloc_ts_ns AS ts_ns, 1 AS ord, weighted_size AS delta FROM sited
    UNION ALL
    SELECT call_site, file, line, free_ts_ns AS ts_ns, 0 AS ord, -weighted_size AS delta
    FROM sited WHERE free_ts_ns IS NOT NULL
),
running AS (
    SELECT call_site, file, line,
           SUM(delta) OVER (PARTITION BY call_site, file, line ORDER BY ts_ns, ord
                            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS live_bytes
    FROM deltas
),
peaks AS (
    SELECT call_site, file, line, MAX(live_bytes) AS peak_live_bytes
    FROM running GROUP BY call_site, file, line
),
totals AS (
    SELECT call_site, file, line,
           CAST(ROUND(SUM(weight)) AS BIGINT) AS allocations,
           CAST(ROUND(SUM(weighted_size)) AS BIGINT) AS allocated_bytes,
           CAST(ROUND(SUM(CASE WHEN free_ts_ns IS NULL THEN weighted_size ELSE 0 END)) AS BIGINT) AS leaked_bytes,
           CAST(median(lifetime_ns) AS BIGINT) AS median_lifetime_ns
    FROM sited
    GROUP BY call_site, file, line
)
SELECT t.call_site,
       NULLIF(t.file, '') AS file,
       NULLIF(t.line, 0) AS line,
       t.allocations,
       t.allocated_bytes,
       CAST(t.allocated_bytes / GREATEST(t.allocations, 1) AS BIGINT) AS avg_size_bytes,
       CAST(ROUND(p.peak_live_bytes) AS BIGINT) AS peak_live_bytes,
       t.leaked_bytes,
       t.median_lifetime_ns
FROM totals t
JOIN peaks p ON p.call_site = t.call_site AND p.file = t.file AND p.line = t.line
ORDER BY t.allocated_bytes DESC, t.call_site, line;
