-- mirrors: GET /api/spaces/spaces?per_page=20&min_capacity=10&page=1..5 — LIST_PUBLIC of scripts/routes/spaces.lua
-- The public list: one statement per page (the total comes with the rows). The route binds
-- $1 q, $2 location, $4 max_price_per_hour, $5..$8 the availability window as NULL and
-- $3 = min_capacity; pgbench -M prepared cannot bind a NULL, so each of those is
-- NULLIF(:nul, 'NULL') with nul = 'NULL' (still a parameter: the plan cache behaves as the route's).
-- Run by tools/bench.sh: pgbench -M prepared -n -c 32 -j 2 -T 10 -D nul=NULL -D min_capacity=10 ...
\set page random(1, :list_pages)
\set off (:page - 1) * 20
SELECT
  s.id, s.owner_id, s.title, s.description, s.location, s.capacity, s.amenities,
  s.price_per_hour_minor, s.price_per_day_minor, s.currency, s.timezone, s.is_available,
  s.main_image_url, s.instant_book, s.created_at, s.updated_at, count(*) OVER () AS total
FROM spaces s
  WHERE s.is_available AND s.deleted_at IS NULL
    AND (NULLIF(:nul, 'NULL')::text IS NULL OR s.search @@ websearch_to_tsquery('simple', NULLIF(:nul, 'NULL')::text))
    AND (NULLIF(:nul, 'NULL')::text IS NULL OR s.location ILIKE NULLIF(:nul, 'NULL')::text)
    AND (:min_capacity::int IS NULL OR s.capacity >= :min_capacity::int)
    AND (NULLIF(:nul, 'NULL')::numeric IS NULL OR s.price_per_hour_minor <= NULLIF(:nul, 'NULL')::numeric * (CASE WHEN s.currency IN ('UGX', 'RWF', 'BIF', 'DJF', 'XAF', 'XOF', 'JPY', 'KRW', 'CLP', 'VND', 'ISK') THEN 1 WHEN s.currency IN ('BHD', 'KWD', 'OMR', 'JOD', 'TND', 'LYD', 'IQD') THEN 1000 ELSE 100 END))
    AND ((NULLIF(:nul, 'NULL')::float8 IS NULL AND NULLIF(:nul, 'NULL')::text IS NULL) OR NOT EXISTS (
      SELECT 1 FROM bookings b
      WHERE b.space_id = s.id AND b.status = 'confirmed'
        AND b.start_at < COALESCE(to_timestamp(NULLIF(:nul, 'NULL')::float8), NULLIF(:nul, 'NULL')::timestamp AT TIME ZONE s.timezone)
        AND b.end_at > COALESCE(to_timestamp(NULLIF(:nul, 'NULL')::float8), NULLIF(:nul, 'NULL')::timestamp AT TIME ZONE s.timezone)))
 ORDER BY s.created_at DESC, s.id DESC LIMIT 20 OFFSET :off;
