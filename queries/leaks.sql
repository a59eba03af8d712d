-- leaks.sql: what leaked?
--
-- A block is leaked when it was still allocated when the trace ended: it
-- was never deallocated, and no reallocation moved it on. (Values still
-- alive in `main` when finish() runs count too; let normal exit finish the
-- trace to leave them out.) This query groups leaked blocks by type and by
-- the thread that allocated them, largest first; leaks_by_call_site.sql
-- groups them by the function that allocated them.
--
-- Columns:
--   type_name        type of the block: from track_var! (kept across
--                    reallocations), else from the generic frames of its
--                    call stack (allocations.type_source), or '(unknown)'
--   thread_id        recorder id of the allocating thread (threads.thread_id)
--   thread_name      that thread's name; NULL when unnamed
--   leaked_count     number of leaked blocks (estimated from the recorded
--                    ones when the trace is sampled: SUM(weight))
--   leaked_bytes     their total requested size, in bytes (estimated when
--                    sampled: SUM(size * weight))
--   largest_bytes    size of the largest of them, in bytes
--   first_alloc_ns   when the earliest of them was allocated, in ns since
--                    the trace origin (init())
SELECT
    COALESCE(a.type_name, '(unknown)') AS type_name,
    a.alloc_thread_id                   AS thread_id,
    t.name                              AS thread_name,
    CAST(ROUND(SUM(a.weight)) AS BIGINT)          AS leaked_count,
    CAST(ROUND(SUM(a.size * a.weight)) AS BIGINT) AS leaked_bytes,
    MAX(a.size)                         AS largest_bytes,
    MIN(a.alloc_ts_ns)                  AS first_alloc_ns
FROM allocations a
LEFT JOIN threads t ON t.thread_id = a.alloc_thread_id
WHERE a.free_ts_ns IS NULL
GROUP BY COALESCE(a.type_name, '(unknown)'), a.alloc_thread_id, t.name
ORDER BY leaked_bytes DESC, leaked_count DESC, type_name, thread_id;
