-- mirrors: POST /api/payments/payments (manual, no Idempotency-Key) — USER_BY_ID of scripts/lib/auth.lua, then BOOKING_TO_PAY, the transaction LOCK_BOOKING + OPEN_PAYMENT + INSERT_PAYMENT, and RECORD_CREATE of scripts/payment_flow.lua
-- As the route runs them, but the transaction ends in ROLLBACK and RECORD_CREATE updates
-- nothing (id 0): every run may then use any booking of the pay pool without colliding with
-- the payments already made (a booking has one pending payment at most). With the bench
-- database's fsync off, a COMMIT costs little more than a ROLLBACK.
-- Run by tools/bench.sh: pgbench -M prepared -n -c 32 -j 2 -T 10 -D client_pay=103 -D pay_min=... -D pay_max=...
\set b random(:pay_min, :pay_max)
SELECT id, role::text AS role FROM users WHERE id = :client_pay;
SELECT b.id, b.client_id, b.status::text AS status, b.total_minor, b.currency, s.title AS space_title FROM bookings b JOIN spaces s ON s.id = b.space_id WHERE b.id = :b;
BEGIN;
SELECT id, client_id, status::text AS status, total_minor, currency FROM bookings WHERE id = :b FOR UPDATE;
SELECT id, payment_status::text AS payment_status FROM payments WHERE booking_id = :b AND payment_status IN ('completed', 'pending') ORDER BY payment_status = 'completed' DESC LIMIT 1;
INSERT INTO payments AS p (booking_id, client_id, amount_minor, currency, payment_method, provider, phone, callback_token, expires_at) VALUES (:b, :client_pay, 34800, 'KES', 'manual', 'manual', NULL, md5(random()::text), CASE WHEN 0 > 0 THEN now() + make_interval(secs => 0) END) RETURNING p.id, p.booking_id, p.client_id, p.amount_minor, p.currency, p.payment_method, p.provider, p.payment_status::text AS payment_status, p.provider_ref, p.provider_request_ref, p.next_action, p.failure_reason, p.phone, p.refund_minor, p.expires_at, p.completed_at, p.refunded_at, p.created_at, p.updated_at;
ROLLBACK;
UPDATE payments p SET provider_ref = COALESCE(NULL, p.provider_ref), provider_request_ref = COALESCE(NULL, p.provider_request_ref), next_action = '{"type":"manual","instructions":"Pay the space''s owner in cash or by bank transfer; the owner confirms the payment when the money arrives.","reference":"PAY-0"}'::jsonb WHERE p.id = 0 AND p.payment_status = 'pending' RETURNING p.id, p.booking_id, p.client_id, p.amount_minor, p.currency, p.payment_method, p.provider, p.payment_status::text AS payment_status, p.provider_ref, p.provider_request_ref, p.next_action, p.failure_reason, p.phone, p.refund_minor, p.expires_at, p.completed_at, p.refunded_at, p.created_at, p.updated_at;
