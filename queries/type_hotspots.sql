-- type_hotspots.sql: which types allocate most, and which hold the most
-- memory at once?
--
-- One row per type (from track_var!, a tag being kept across
-- reallocations; else from the generic frames of the allocation's call
-- stack, see allocations.type_source), with allocations of unknown type
-- together as '(unknown)', by bytes allocated.
-- A reallocation counts as one allocation of its new size. When the trace
-- is sampled (trace.sample_rate_bytes > 0), counts and bytes are estimates:
-- each recorded allocation stands for `weight` allocations.
--
-- Columns:
--   type_name         type, or '(unknown)'
--   allocations       number of allocations of the type
--   allocated_bytes   total requested bytes, in bytes
--   avg_size_bytes    allocated_bytes / allocations, in bytes
--   peak_live_bytes   the most bytes of the type live at one time, in bytes
--                     (at equal timestamps, deallocations count first)
--   leaked_bytes      bytes of the type still live when the trace ended
WITH typed AS (
    SELECT COALESCE(type_name, '(unknown)') AS type_name, alloc_ts_ns, free_ts_ns, weight,
           size * weight AS weighted_size
    FROM allocations
),
deltas AS (
    SELECT type_name, alloc_ts_ns AS ts_ns, 1 AS ord, weighted_size AS delta FROM typed
    UNION ALL
    SELECT type_name, free_ts_ns AS ts_ns, 0 AS ord, -weighted_size AS delta
    FROM typed WHERE free_ts_ns IS NOT NULL
),
running AS (
    SELECT type_name,
           SUM(delta) OVER (PARTITION BY type_name ORDER BY ts_ns, ord
                            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS live_bytes
    FROM deltas
),
peaks AS (
    SELECT type_name, MAX(live_bytes) AS peak_live_bytes FROM running GROUP BY type_name
),
totals AS (
    SELECT type_name,
           CAST(ROUND(SUM(weight)) AS BIGINT) AS allocations,
           CAST(ROUND(SUM(weighted_size)) AS BIGINT) AS allocated_bytes,
           CAST(ROUND(SUM(CASE WHEN free_ts_ns IS NULL THEN weighted_size ELSE 0 END)) AS BIGINT) AS leaked_bytes
    FROM typed
    GROUP BY type_name
)
SELECT t.type_name,
       t.allocations,
       t.allocated_bytes,
       CAST(t.allocated_bytes / GREATEST(t.allocations, 1) AS BIGINT) AS avg_size_bytes,
       CAST(ROUND(p.peak_live_bytes) AS BIGINT) AS peak_live_bytes,
       t.leaked_bytes
FROM totals t JOIN peaks p ON p.type_name = t.type_name
ORDER BY t.allocated_bytes DESC, t.type_name;
