-- mirrors: POST /api/bookings/bookings (a pending request) — USER_BY_ID of scripts/lib/auth.lua, SPACE_FOR_BOOKING and INSERT_PENDING of scripts/booking_flow.lua
-- Three statements, each on its own (autocommit), as the route runs them; the price is what
-- scripts/pricing.lua makes of one hour. Slots: a random space and hour after slot_epoch
-- (pending requests do not collide: the exclusion constraint is on confirmed ones).
-- Run by tools/bench.sh: pgbench -M prepared -n -c 32 -j 2 -T 10 -D client_book=102 -D slot_epoch=... ...
\set id random(:space_min, :space_max)
\set start :slot_epoch + 3600 * random(0, 24 * 365)
\set stop :start + 3600
SELECT id, role::text AS role FROM users WHERE id = :client_book;
SELECT id, owner_id, capacity, price_per_hour_minor, price_per_day_minor, currency,
         timezone, is_available, instant_book, deleted_at IS NOT NULL AS deleted
  FROM spaces WHERE id = :id;
WITH s AS (
    SELECT id, owner_id, title, location, main_image_url, timezone FROM spaces
    WHERE id = :id AND deleted_at IS NULL AND is_available AND NOT instant_book
    FOR KEY SHARE
  ), b AS (
    INSERT INTO bookings AS b (space_id, client_id, start_at, end_at, guests, notes, status,
                               currency, subtotal_minor, tax_minor, total_minor, price_breakdown)
    SELECT s.id, :client_book, to_timestamp(:start), to_timestamp(:stop), 2, 'bench', 'pending',
           'KES', 30000, 4800, 34800, '{"currency":"KES","hours":1,"lines":[{"code":"hours","description":"1 hour × KES 300.00","quantity":1,"unit_amount":30000,"amount":30000}],"subtotal":30000,"tax":4800,"tax_rate_percent":"16","total":34800}'::jsonb
    FROM s
    RETURNING
  b.id, b.client_id, b.space_id,
  extract(epoch FROM b.start_at)::bigint AS start_s,
  extract(epoch FROM b.end_at)::bigint AS end_s,
  b.guests, b.notes, b.total_minor, b.currency, b.price_breakdown, b.status::text AS status,
  b.decline_reason, b.refund_minor, b.created_at, b.updated_at
  )
  SELECT b.*,
  s.owner_id AS space_owner_id, s.title AS space_title, s.location AS space_location,
  s.main_image_url AS space_main_image_url, s.timezone AS space_timezone FROM b, s;
