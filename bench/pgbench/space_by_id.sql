-- mirrors: GET /api/spaces/spaces/{id} — SPACE_WITH_OWNER of scripts/routes/spaces.lua (the route's only statement)
-- Run by tools/bench.sh: pgbench -M prepared -n -c 32 -j 2 -T 10 -D space_min=1 -D space_max=1000 ...
\set id random(:space_min, :space_max)
SELECT
  s.id, s.owner_id, s.title, s.description, s.location, s.capacity, s.amenities,
  s.price_per_hour_minor, s.price_per_day_minor, s.currency, s.timezone, s.is_available,
  s.main_image_url, s.instant_book, s.created_at, s.updated_at, u.name AS owner_name
  FROM spaces s JOIN users u ON u.id = s.owner_id
  WHERE s.id = :id AND s.deleted_at IS NULL;
