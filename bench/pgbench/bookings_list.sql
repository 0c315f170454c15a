-- mirrors: GET /api/bookings/bookings (a client's token) — USER_BY_ID of scripts/lib/auth.lua (every authenticated request), then LIST_OF_CLIENT of scripts/routes/bookings.lua (first page of 20; the total comes with the rows)
-- The route binds $2 (status) as NULL; pgbench -M prepared cannot bind a NULL, so it is
-- NULLIF(:nul, 'NULL') with nul = 'NULL'. Two statements, each on its own (autocommit), as the route runs them.
-- Run by tools/bench.sh: pgbench -M prepared -n -c 32 -j 2 -T 10 -D nul=NULL -D client_list=101 ...
SELECT id, role::text AS role FROM users WHERE id = :client_list;
SELECT
  b.id, b.client_id, b.space_id,
  extract(epoch FROM b.start_at)::bigint AS start_s,
  extract(epoch FROM b.end_at)::bigint AS end_s,
  b.guests, b.notes, b.total_minor, b.currency, b.price_breakdown, b.status::text AS status,
  b.decline_reason, b.refund_minor, b.created_at, b.updated_at,
  s.owner_id AS space_owner_id, s.title AS space_title, s.location AS space_location,
  s.main_image_url AS space_main_image_url, s.timezone AS space_timezone,
  count(*) OVER () AS total FROM bookings b JOIN spaces s ON s.id = b.space_id
  WHERE b.client_id = :client_list AND (NULLIF(:nul, 'NULL')::booking_status IS NULL OR b.status = NULLIF(:nul, 'NULL')::booking_status)
 ORDER BY b.created_at DESC, b.id DESC LIMIT 20 OFFSET 0;
