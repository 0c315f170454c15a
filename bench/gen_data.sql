-- bench/gen_data.sql: the data set of `make bench`, made in the database with generate_series.
--
--   psql -v hash='<bcrypt hash>' -v users=1000 -v spaces=1000 -v bookings=100000 -f bench/gen_data.sql
--
-- Runs once on a freshly migrated, empty database (tools/bench.sh makes a throw-away one):
-- ids are given explicitly (1..N) and the sequences moved past them.
--
-- users     user1..user<users>@bench.spacer.test, all with the same real bcrypt hash (cost
--           12, made once with `spacer hash-password`) so that logging in costs what it costs
--           in production; the first tenth are owners, the others clients.
-- spaces    owned round-robin by the owners; all available, none instant_book (so a booking
--           request is created pending); capacity 5..200, KES 100..590 an hour, a day rate
--           of 8 hours; ten locations; created over the last 400 days.
-- bookings  <bookings> / <spaces> per space, spread over a year (300 days ago .. 65 days
--           ahead), one per day at most per space (the k-th booking of a space on day
--           floor(k * 365 / per_space)), 1 to 4 hours between 08:00 and 20:00 UTC, so no two
--           bookings of a space overlap: the exclusion constraint on confirmed bookings
--           holds whatever the status. Statuses: 60% confirmed, 20% pending, 10% cancelled,
--           10% declined; clients spread over all clients; priced as scripts/pricing.lua
--           prices hours (hours × price_per_hour, 16% VAT rounded half up).
\set ON_ERROR_STOP on
\set owners (:users / 10)

BEGIN;

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM spaces) OR EXISTS (SELECT 1 FROM bookings) THEN
    RAISE EXCEPTION 'bench/gen_data.sql needs an empty database (it gives ids 1..N)';
  END IF;
END $$;

INSERT INTO users (id, name, email, password_hash, role, is_verified, created_at, updated_at)
SELECT i,
       'Bench User ' || i,
       'user' || i || '@bench.spacer.test',
       :'hash',
       (CASE WHEN i <= :owners THEN 'owner' ELSE 'client' END)::user_role,
       true,
       now() - interval '500 days' + i * interval '10 minutes',
       now() - interval '500 days' + i * interval '10 minutes'
FROM generate_series(1, :users) AS i;

INSERT INTO spaces (id, owner_id, title, description, location, capacity, amenities,
                    price_per_hour_minor, price_per_day_minor, currency, timezone,
                    is_available, instant_book, main_image_url, created_at, updated_at)
SELECT i,
       (i - 1) % :owners + 1,
       'Bench Space ' || i,
       'A bench event space number ' || i || ': a bright room with chairs, tables and a view.',
       (ARRAY['Westlands, Nairobi', 'Kilimani, Nairobi', 'Karen, Nairobi', 'CBD, Nairobi',
              'Lavington, Nairobi', 'Upper Hill, Nairobi', 'Gigiri, Nairobi', 'Parklands, Nairobi',
              'Runda, Nairobi', 'Langata, Nairobi'])[i % 10 + 1],
       5 + (i * 37) % 196,
       string_to_array((ARRAY['wifi,projector', 'wifi,parking', 'garden,catering',
                              'wifi,sound system'])[i % 4 + 1], ','),
       (10 + i % 50) * 1000,
       (10 + i % 50) * 8000,
       'KES',
       'Africa/Nairobi',
       true,
       false,
       'https://images.example.com/bench/' || i || '.jpg',
       now() - interval '400 days' + i * interval '5 hours',
       now() - interval '400 days' + i * interval '5 hours'
FROM generate_series(1, :spaces) AS i;

-- One row per (space s, k-th booking of it).
INSERT INTO bookings (client_id, space_id, start_at, end_at, guests, notes, status, currency,
                      subtotal_minor, tax_minor, total_minor, price_breakdown, decline_reason,
                      cancelled_at, created_at, updated_at)
SELECT b.client_id, b.space_id, b.start_at, b.start_at + b.hours * interval '1 hour',
       b.guests, NULL, b.status, 'KES',
       b.subtotal, (b.subtotal * 16 + 50) / 100, b.subtotal + (b.subtotal * 16 + 50) / 100,
       jsonb_build_object(
         'currency', 'KES', 'hours', b.hours,
         'lines', jsonb_build_array(jsonb_build_object(
           'code', 'hours', 'description', b.hours || ' hours',
           'quantity', b.hours, 'unit_amount', b.price, 'amount', b.subtotal)),
         'subtotal', b.subtotal, 'tax', (b.subtotal * 16 + 50) / 100,
         'total', b.subtotal + (b.subtotal * 16 + 50) / 100, 'tax_rate_percent', '16'),
       CASE WHEN b.status = 'declined' THEN 'bench: declined' END,
       CASE WHEN b.status = 'cancelled' THEN least(b.start_at, now()) - interval '1 day' END,
       least(b.start_at, now()) - interval '7 days' - (b.n % 97) * interval '1 hour',
       least(b.start_at, now()) - interval '7 days' - (b.n % 97) * interval '1 hour'
FROM (
  SELECT n,
         s.id AS space_id,
         :owners + 1 + (n * 7919) % (:users - :owners) AS client_id,
         date_trunc('day', now() - interval '300 days')
           + (k * 365 / per_space) * interval '1 day'
           + (8 + (n * 13) % 9) * interval '1 hour' AS start_at,
         1 + (n * 7) % 4 AS hours,
         1 + n % 50 AS guests,
         (CASE WHEN n % 10 < 6 THEN 'confirmed' WHEN n % 10 < 8 THEN 'pending'
               WHEN n % 10 = 8 THEN 'cancelled' ELSE 'declined' END)::booking_status AS status,
         s.price_per_hour_minor AS price,
         (1 + (n * 7) % 4) * s.price_per_hour_minor AS subtotal
  FROM (SELECT :bookings / :spaces AS per_space) p,
       generate_series(0, :bookings - 1) AS n,
       LATERAL (SELECT n / (:bookings / :spaces) + 1 AS sid, n % (:bookings / :spaces) AS k) ix,
       spaces s
  WHERE s.id = ix.sid
) b;

SELECT setval('users_id_seq', (SELECT max(id) FROM users));
SELECT setval('spaces_id_seq', (SELECT max(id) FROM spaces));

COMMIT;

VACUUM ANALYZE users;
VACUUM ANALYZE spaces;
VACUUM ANALYZE bookings;

SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM spaces) AS spaces,
       (SELECT count(*) FROM bookings) AS bookings,
       (SELECT count(*) FROM bookings WHERE status = 'confirmed') AS confirmed;
