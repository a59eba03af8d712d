-- leaks_by_call_site.sql: where in the program was leaked memory allocated?
--
-- A block is leaked when it was still allocated when the trace ended (see
-- leaks.sql). This query groups leaked blocks by their call site: the first
-- frame of the allocation's call stack outside the allocator, the standard
-- library and memscope, with its source file and line. Blocks without a
-- stack (stacks off, or recorded before the stack could be walked) are
-- grouped as '(no stack)'.
--
-- Columns:
--   call_site        the function that allocated (demangled), or
--                    module+0xoffset when it could not be symbolized
--   file             source file of the allocating call; NULL without
--                    debug information
--   line             source line of the allocating call; NULL likewise
--   type_name        type of the blocks (tag, else generic frame), or
--                    '(unknown)'
--   leaked_count     number of leaked blocks (estimated when sampled:
--                    SUM(weight))
--   leaked_bytes     their total requested size, in bytes (estimated when
--                    sampled: SUM(size * weight))
--   largest_bytes    size of the largest of them, in bytes
--   first_alloc_ns   when the earliest of them was allocated, in ns since
--                    the trace origin (init())
SELECT
    COALESCE(call_site, '(no stack)')          AS call_site,
    call_site_file                             AS file,
    call_site_line                             AS line,
    COALESCE(type_name, '(unknown)')           AS type_name,
    CAST(ROUND(SUM(weight)) AS BIGINT)         AS leaked_count,
    CAST(ROUND(SUM(size * weight)) AS BIGINT)  AS leaked_bytes,
    MAX(size)                                  AS largest_bytes,
    MIN(alloc_ts_ns)                           AS first_alloc_ns
FROM allocations
WHERE free_ts_ns IS NULL
GROUP BY COALESCE(call_site, '(no stack)'), call_site_file, call_site_line,
         COALESCE(type_name, '(unknown)')
ORDER BY leaked_bytes DESC, leaked_count DESC, call_site, line;
