-- lifetime_histogram.sql: how long do allocations live?
--
-- Freed allocations in log2 buckets of lifetime (time from the start of an
-- allocation to its deallocation or reallocation): bucket b holds lifetimes
-- in [2^b, 2^(b+1)) ns, and bucket 0 also holds lifetimes of 0 ns. Leaked
-- allocations, which have no lifetime, are counted apart in a last row with
-- status 'leaked'.
--
-- Columns:
--   status        'freed', or 'leaked' for the row of leaked allocations
--   bucket        log2 bucket of lifetime_ns; NULL for the leaked row
--   lower_ns      smallest lifetime in the bucket, in ns (inclusive)
--   upper_ns      end of the bucket, in ns (exclusive)
--   allocations   number of allocations in the bucket (estimated when the
--                 trace is sampled: SUM(weight))
--   bytes         their total requested size, in bytes (estimated when
--                 sampled: SUM(size * weight))
WITH buckets AS (
    SELECT CASE WHEN lifetime_ns < 2 THEN 0
                ELSE CAST(floor(log2(CAST(lifetime_ns AS DOUBLE))) AS BIGINT) END AS bucket,
           weight,
           size * weight AS weighted_size
    FROM allocations
    WHERE free_ts_ns IS NOT NULL
)
SELECT status, bucket, lower_ns, upper_ns, allocations, bytes FROM (
    SELECT 'freed' AS status,
           bucket,
           CASE WHEN bucket = 0 THEN 0 ELSE CAST(power(2, bucket) AS BIGINT) END AS lower_ns,
           CAST(power(2, bucket + 1) AS BIGINT) AS upper_ns,
           CAST(ROUND(SUM(weight)) AS BIGINT) AS allocations,
           CAST(ROUND(SUM(weighted_size)) AS BIGINT) AS bytes,
           0 AS sort_key
    FROM buckets
    GROUP BY bucket
    UNION ALL
    SELECT 'leaked', NULL, NULL, NULL,
           CAST(ROUND(COALESCE(SUM(weight), 0)) AS BIGINT),
           CAST(ROUND(COALESCE(SUM(size * weight), 0)) AS BIGINT),
           1
    FROM allocations
    WHERE free_ts_ns IS NULL
) h
ORDER BY sort_key, bucket;
