-- 0005: login throttling (shared by every worker and instance) and idempotency keys
-- (a retried request returns the first response).
CREATE TABLE login_attempts (
  id         bigserial PRIMARY KEY,
  email      citext      NOT NULL,
  ip         inet,
  succeeded  boolean     NOT NULL DEFAULT false,
  at         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX login_attempts_email_idx ON login_attempts (email, at DESC) WHERE NOT succeeded;
CREATE INDEX login_attempts_ip_idx ON login_attempts (ip, at DESC) WHERE NOT succeeded;

CREATE TABLE idempotency_keys (
  client_id       bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  key             text        NOT NULL,
  method          text        NOT NULL,
  path            text        NOT NULL,
  request_hash    text        NOT NULL,
  response_status integer,
  response_body   jsonb,
  created_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (client_id, key),
  CONSTRAINT idempotency_keys_key_check CHECK (length(key) BETWEEN 1 AND 255)
);

CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
