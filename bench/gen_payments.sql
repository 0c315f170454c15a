-- bench/gen_payments.sql: what the payment scenarios of `make bench` need, on top of
-- bench/gen_data.sql (tools/bench.sh runs it only when payment_create, invoices_list or the
-- instructions step runs).
--
--   psql -v client_pay=103 -v per_space=200 -f bench/gen_payments.sql
--
-- pay pool   per_space confirmed one-hour bookings of every space for client :client_pay,
--            400 days ahead and later (after every generated booking, one a day per space,
--            so the exclusion constraint holds); each is paid once by payment_create.
-- invoices   one invoice per confirmed booking of gen_data.sql (not of the pool), issued
--            a day after the booking was made; numbered INV-<year>-NNNNNN in that order, the
--            year's counter row set to the last number (as the issuing transaction would).
\set ON_ERROR_STOP on

BEGIN;

INSERT INTO bookings (client_id, space_id, start_at, end_at, guests, notes, status, currency,
                      subtotal_minor, tax_minor, total_minor, price_breakdown, created_at,
                      updated_at)
SELECT :client_pay, s.id,
       date_trunc('day', now()) + (400 + k) * interval '1 day' + interval '10 hours',
       date_trunc('day', now()) + (400 + k) * interval '1 day' + interval '11 hours',
       2, 'bench pay pool', 'confirmed', 'KES',
       s.price_per_hour_minor, (s.price_per_hour_minor * 16 + 50) / 100,
       s.price_per_hour_minor + (s.price_per_hour_minor * 16 + 50) / 100,
       jsonb_build_object(
         'currency', 'KES', 'hours', 1,
         'lines', jsonb_build_array(jsonb_build_object(
           'code', 'hours', 'description', '1 hour', 'quantity', 1,
           'unit_amount', s.price_per_hour_minor, 'amount', s.price_per_hour_minor)),
         'subtotal', s.price_per_hour_minor, 'tax', (s.price_per_hour_minor * 16 + 50) / 100,
         'total', s.price_per_hour_minor + (s.price_per_hour_minor * 16 + 50) / 100,
         'tax_rate_percent', '16'),
       now(), now()
FROM spaces s, generate_series(0, :per_space - 1) AS k;

INSERT INTO invoices (number, status, booking_id, client_id, issued_at, currency, lines,
                      subtotal_minor, tax_minor, total_minor, tax_rate_percent, seller, buyer,
                      space)
SELECT 'INV-' || to_char(now(), 'YYYY') || '-' || lpad((row_number() OVER (ORDER BY b.created_at, b.id))::text, 6, '0'),
       'issued', b.id, b.client_id, b.created_at + interval '1 day', b.currency,
       b.price_breakdown -> 'lines', b.subtotal_minor, b.tax_minor, b.total_minor, 16,
       jsonb_build_object('id', o.id, 'name', o.name, 'email', o.email),
       jsonb_build_object('id', c.id, 'name', c.name, 'email', c.email),
       jsonb_build_object('id', s.id, 'title', s.title, 'location', s.location)
FROM bookings b JOIN spaces s ON s.id = b.space_id JOIN users o ON o.id = s.owner_id
     JOIN users c ON c.id = b.client_id
WHERE b.status = 'confirmed' AND b.client_id <> :client_pay;

INSERT INTO invoice_counters (year, last_number)
SELECT extract(year FROM now())::int, count(*) FROM invoices;

COMMIT;

VACUUM ANALYZE bookings;
VACUUM ANALYZE invoices;

SELECT (SELECT min(id) FROM bookings WHERE client_id = :client_pay AND notes = 'bench pay pool') AS pay_min,
       (SELECT max(id) FROM bookings WHERE client_id = :client_pay AND notes = 'bench pay pool') AS pay_max,
       (SELECT count(*) FROM invoices) AS invoices;
