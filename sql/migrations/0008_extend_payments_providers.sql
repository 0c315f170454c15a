-- 0008: what the payment providers need beyond 0004. A provider's checkout reference (the
-- M-Pesa CheckoutRequestID, known before the receipt number) is unique per provider like
-- provider_ref; the per-payment callback token of unsigned callbacks; what was refunded;
-- every provider event kept once (deduplicated by the provider's event id, redacted of
-- secrets) for support and reconciliation; and the seller and buyer as they were when an
-- invoice was issued.
ALTER TABLE payments
  ADD COLUMN provider_request_ref text,
  ADD COLUMN callback_token       text,
  ADD COLUMN phone                text,
  ADD COLUMN refund_minor         bigint,
  ADD COLUMN refunded_at          timestamptz,
  ADD CONSTRAINT payments_provider_request_ref_key UNIQUE (provider, provider_request_ref),
  ADD CONSTRAINT payments_callback_token_key UNIQUE (callback_token),
  ADD CONSTRAINT payments_refund_check CHECK (refund_minor IS NULL
                                              OR refund_minor BETWEEN 0 AND amount_minor);

CREATE TABLE payment_events (
  id          bigserial   PRIMARY KEY,
  provider    text        NOT NULL,
  event_id    text        NOT NULL,
  payment_id  bigint      REFERENCES payments (id) ON DELETE RESTRICT,
  kind        text        NOT NULL,
  payload     jsonb       NOT NULL DEFAULT '{}',
  received_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT payment_events_provider_event_key UNIQUE (provider, event_id)
);

CREATE INDEX payment_events_payment_idx ON payment_events (payment_id, received_at);

ALTER TABLE invoices
  ADD COLUMN seller jsonb NOT NULL DEFAULT '{}',
  ADD COLUMN buyer  jsonb NOT NULL DEFAULT '{}',
  ADD COLUMN space  jsonb NOT NULL DEFAULT '{}',
  ADD COLUMN paid_at timestamptz,
  ADD COLUMN tax_rate_percent numeric;
