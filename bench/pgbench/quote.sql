-- mirrors: GET /api/spaces/spaces/{id}/quote — SPACE_BRIEF of scripts/routes/spaces.lua (the route's only statement; the rest is scripts/pricing.lua)
-- Run by tools/bench.sh: pgbench -M prepared -n -c 32 -j 2 -T 10 -D space_min=1 -D space_max=1000 ...
\set id random(:space_min, :space_max)
SELECT id, timezone, price_per_hour_minor, price_per_day_minor, currency
  FROM spaces WHERE id = :id AND deleted_at IS NULL;
