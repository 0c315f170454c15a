-- 0004: payments and invoices. A booking has at most one completed payment and at most one
-- pending one; a provider's reference is recorded once (duplicated webhooks change nothing).
-- Invoice numbers are gapless per year, assigned in the issuing transaction from
-- invoice_counters (a row lock, not a sequence: sequences leave gaps on rollback).
CREATE TYPE payment_status AS ENUM ('pending', 'completed', 'failed', 'refunded');
CREATE TYPE invoice_status AS ENUM ('issued', 'paid', 'void');

CREATE TABLE payments (
  id              bigserial PRIMARY KEY,
  booking_id      bigint         NOT NULL REFERENCES bookings (id) ON DELETE RESTRICT,
  client_id       bigint         NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
  amount_minor    bigint         NOT NULL,
  currency        char(3)        NOT NULL,
  payment_method  text           NOT NULL,
  provider        text           NOT NULL,
  payment_status  payment_status NOT NULL DEFAULT 'pending',
  provider_ref    text,
  next_action     jsonb,
  failure_reason  text,
  expires_at      timestamptz,
  completed_at    timestamptz,
  created_at      timestamptz    NOT NULL DEFAULT now(),
  updated_at      timestamptz    NOT NULL DEFAULT now(),
  CONSTRAINT payments_amount_check CHECK (amount_minor >= 0),
  CONSTRAINT payments_provider_ref_key UNIQUE (provider, provider_ref)
);

CREATE UNIQUE INDEX payments_one_completed_idx ON payments (booking_id)
  WHERE payment_status = 'completed';
CREATE UNIQUE INDEX payments_one_pending_idx ON payments (booking_id)
  WHERE payment_status = 'pending';
CREATE INDEX payments_client_idx ON payments (client_id, created_at DESC);
CREATE INDEX payments_booking_idx ON payments (booking_id);
CREATE INDEX payments_expiring_idx ON payments (expires_at) WHERE payment_status = 'pending';

CREATE TRIGGER payments_updated_at BEFORE UPDATE ON payments
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE invoice_counters (
  year        integer PRIMARY KEY,
  last_number integer NOT NULL DEFAULT 0,
  CONSTRAINT invoice_counters_last_number_check CHECK (last_number >= 0)
);

CREATE TABLE invoices (
  id              bigserial PRIMARY KEY,
  number          text           NOT NULL,
  status          invoice_status NOT NULL DEFAULT 'issued',
  booking_id      bigint         NOT NULL REFERENCES bookings (id) ON DELETE RESTRICT,
  payment_id      bigint         REFERENCES payments (id) ON DELETE RESTRICT,
  client_id       bigint         NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
  issued_at       timestamptz    NOT NULL DEFAULT now(),
  currency        char(3)        NOT NULL,
  lines           jsonb          NOT NULL DEFAULT '[]',
  subtotal_minor  bigint         NOT NULL,
  tax_minor       bigint         NOT NULL,
  total_minor     bigint         NOT NULL,
  created_at      timestamptz    NOT NULL DEFAULT now(),
  updated_at      timestamptz    NOT NULL DEFAULT now(),
  CONSTRAINT invoices_number_key UNIQUE (number),
  CONSTRAINT invoices_booking_key UNIQUE (booking_id),
  CONSTRAINT invoices_number_check CHECK (number ~ '^INV-[0-9]{4}-[0-9]{6}$')
);

CREATE INDEX invoices_client_idx ON invoices (client_id, issued_at DESC);

CREATE TRIGGER invoices_updated_at BEFORE UPDATE ON invoices
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();
