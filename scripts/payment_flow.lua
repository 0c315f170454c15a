-- payment_flow.lua: the life of a payment and of an invoice, following DESIGN.md "Money
-- paths". The routes (routes/payments.lua) only speak HTTP; the providers
-- (plugins/payments/*.lua, through lib/payments.lua) only speak to their provider.
--
-- States: pending -> completed | failed;  completed -> refunded.
--
-- Creating (flow.create): the booking is locked, checked (its client pays, it is confirmed,
-- it has no completed and no pending payment) and the pending row inserted — committed
-- before the provider is called, so a callback that comes at once finds its row. Then the
-- plugin's create() runs; what it answers (its reference, next_action) is recorded with a
-- guarded UPDATE. A provider that fails or times out leaves the payment pending: a later
-- callback or the expiry job settles it.
--
-- Settling (flow.settle): the one way a payment leaves pending — owner confirmation,
-- webhook, callback, expiry — is one UPDATE ... WHERE payment_status = 'pending'. Whoever
-- loses a race changes nothing. A completion issues the booking's invoice if needed and marks
-- it paid, in the same transaction; the provider event that caused it is stored in that
-- transaction too (deduplicated by the provider's event id).
--
-- Invoices (flow.issue_invoice): numbers INV-YYYY-NNNNNN from invoice_counters, whose row of
-- the year is incremented in the issuing transaction (a row lock: unique and gapless under
-- concurrency, unlike a sequence). The booking's row is locked first, so one booking gets one
-- invoice and no number is taken for nothing.
local money = require("lib.money")
local payments = require("lib.payments")
local invoice = require("invoice")

local _M = {}

local db = spacer.db
local json = spacer.json
local log = spacer.log
local NULL = json.null
local format = string.format

local SETTINGS = spacer.config.declare("invoices", { year_timezone = "Africa/Nairobi" })
if not spacer.time.valid_zone(SETTINGS.year_timezone) then
  error("spacer.conf [invoices] year_timezone is not a known time zone", 0)
end

-- SQL ----------------------------------------------------------------------------------------

_M.PAYMENT_COLUMNS = [[
  p.id, p.booking_id, p.client_id, p.amount_minor, p.currency, p.payment_method, p.provider,
  p.payment_status::text AS payment_status, p.provider_ref, p.provider_request_ref,
  p.next_action, p.failure_reason, p.phone, p.refund_minor, p.expires_at, p.completed_at,
  p.refunded_at, p.created_at, p.updated_at]]

local COLS = _M.PAYMENT_COLUMNS

-- With the space's owner, to decide who may see it.
_M.PAYMENT_BY_ID = "SELECT " .. COLS .. [[, s.owner_id AS space_owner_id
  FROM payments p JOIN bookings b ON b.id = p.booking_id JOIN spaces s ON s.id = b.space_id
  WHERE p.id = $1]]

local PAYMENT_ONLY = "SELECT " .. COLS .. ", p.callback_token FROM payments p WHERE p.id = $1"

local BOOKING_TO_PAY = [[
  SELECT b.id, b.client_id, b.status::text AS status, b.total_minor, b.currency,
         s.title AS space_title
  FROM bookings b JOIN spaces s ON s.id = b.space_id
  WHERE b.id = $1]]

local LOCK_BOOKING = [[
  SELECT id, client_id, status::text AS status, total_minor, currency
  FROM bookings WHERE id = $1 FOR UPDATE]]

local OPEN_PAYMENT = [[
  SELECT id, payment_status::text AS payment_status FROM payments
  WHERE booking_id = $1 AND payment_status IN ('completed', 'pending')
  ORDER BY payment_status = 'completed' DESC LIMIT 1]]

-- $1 booking, $2 client, $3 amount, $4 currency, $5 method, $6 provider, $7 phone,
-- $8 callback token, $9 seconds until it expires (0: never)
local INSERT_PAYMENT = [[
  INSERT INTO payments AS p (booking_id, client_id, amount_minor, currency, payment_method,
                             provider, phone, callback_token, expires_at)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8,
          CASE WHEN $9::int > 0 THEN now() + make_interval(secs => $9::int) END)
  RETURNING ]] .. COLS

local RECORD_CREATE = [[
  UPDATE payments p SET provider_ref = COALESCE($2, p.provider_ref),
                        provider_request_ref = COALESCE($3, p.provider_request_ref),
                        next_action = $4::jsonb
  WHERE p.id = $1 AND p.payment_status = 'pending'
  RETURNING ]] .. COLS

-- The one way out of pending. $2 the new status, $3 provider_ref (kept when NULL),
-- $4 failure reason, $5 provider_request_ref (kept when NULL).
local SETTLE = [[
  UPDATE payments p SET payment_status = $2::payment_status,
                        provider_ref = COALESCE($3, p.provider_ref),
                        provider_request_ref = COALESCE($5, p.provider_request_ref),
                        failure_reason = $4,
                        completed_at = CASE WHEN $2 = 'completed' THEN now() END,
                        expires_at = NULL
  WHERE p.id = $1 AND p.payment_status = 'pending'
  RETURNING ]] .. COLS

local REFUNDED = [[
  UPDATE payments p SET payment_status = 'refunded', refund_minor = $2, refunded_at = now()
  WHERE p.id = $1 AND p.payment_status = 'completed'
  RETURNING ]] .. COLS

local PENDING_OF_BOOKING = [[
  SELECT id FROM payments WHERE booking_id = $1 AND payment_status = 'pending']]

local COMPLETED_OF_BOOKING = "SELECT " .. COLS .. [[
  FROM payments p WHERE p.booking_id = $1 AND p.payment_status = 'completed']]

local INSERT_EVENT = [[
  INSERT INTO payment_events (provider, event_id, payment_id, kind, payload)
  VALUES ($1, $2, $3, $4, $5::jsonb)
  ON CONFLICT (provider, event_id) DO NOTHING
  RETURNING id]]

_M.INVOICE_COLUMNS = [[
  i.id, i.number, i.status::text AS status, i.booking_id, i.payment_id, i.client_id,
  i.issued_at, i.paid_at, i.currency, i.lines, i.subtotal_minor, i.tax_minor, i.total_minor,
  i.tax_rate_percent::float8 AS tax_rate_percent, i.seller, i.buyer, i.space, i.created_at]]

local ICOLS = _M.INVOICE_COLUMNS

_M.INVOICE_BY_ID = "SELECT " .. ICOLS .. [[, s.owner_id AS space_owner_id
  FROM invoices i JOIN bookings b ON b.id = i.booking_id JOIN spaces s ON s.id = b.space_id
  WHERE i.id = $1]]

local INVOICE_OF_BOOKING = "SELECT " .. ICOLS .. " FROM invoices i WHERE i.booking_id = $1"

-- What an invoice snapshots: the booking, its space, the space's owner and the client. The
-- booking's row is locked: one issuer per booking at a time.
local BOOKING_FOR_INVOICE = [[
  SELECT b.id, b.client_id, b.status::text AS status, b.currency, b.subtotal_minor,
         b.tax_minor, b.total_minor, b.price_breakdown,
         s.id AS space_id, s.title AS space_title, s.location AS space_location,
         o.id AS owner_id, o.name AS owner_name, o.email AS owner_email,
         c.name AS client_name, c.email AS client_email
  FROM bookings b JOIN spaces s ON s.id = b.space_id
       JOIN users o ON o.id = s.owner_id JOIN users c ON c.id = b.client_id
  WHERE b.id = $1
  FOR UPDATE OF b]]

local NEXT_NUMBER = [[
  INSERT INTO invoice_counters AS c (year, last_number)
  VALUES (extract(year FROM now() AT TIME ZONE $1)::int, 1)
  ON CONFLICT (year) DO UPDATE SET last_number = c.last_number + 1
  RETURNING year, last_number]]

-- $1 number, $2 status, $3 booking, $4 payment, $5 client, $6 currency, $7 lines,
-- $8 subtotal, $9 tax, $10 total, $11 tax rate, $12 seller, $13 buyer, $14 space
local INSERT_INVOICE = [[
  INSERT INTO invoices AS i (number, status, booking_id, payment_id, client_id, currency, lines,
                             subtotal_minor, tax_minor, total_minor, tax_rate_percent, seller,
                             buyer, space, paid_at)
  VALUES ($1, $2::invoice_status, $3, $4, $5, $6, $7::jsonb, $8, $9, $10, $11::numeric,
          $12::jsonb, $13::jsonb, $14::jsonb, CASE WHEN $2 = 'paid' THEN now() END)
  RETURNING ]] .. ICOLS

local MARK_PAID = [[
  UPDATE invoices i SET status = 'paid', payment_id = $2, paid_at = now()
  WHERE i.id = $1 AND i.status = 'issued'
  RETURNING ]] .. ICOLS

local VOID_UNPAID = [[
  UPDATE invoices SET status = 'void' WHERE booking_id = $1 AND status = 'issued']]

-- Shapes -------------------------------------------------------------------------------------

local function null_if_nil(v)
  if v == nil then
    return NULL
  end
  return v
end

-- A payment as the API shows it.
function _M.payment(row)
  local currency = row.currency
  local refund = NULL
  if row.refund_minor ~= nil and row.refund_minor ~= NULL then
    refund = money.to_major(row.refund_minor, currency)
  end
  local date = row.completed_at
  if date == nil or date == NULL then
    date = row.created_at
  end
  return {
    id = row.id,
    booking_id = row.booking_id,
    client_id = row.client_id,
    amount = money.to_major(row.amount_minor, currency),
    currency = currency,
    payment_method = row.payment_method,
    provider = row.provider,
    payment_status = row.payment_status,
    provider_ref = null_if_nil(row.provider_ref),
    next_action = null_if_nil(row.next_action),
    failure_reason = null_if_nil(row.failure_reason),
    refund_amount = refund,
    payment_date = date,
    completed_at = null_if_nil(row.completed_at),
    refunded_at = null_if_nil(row.refunded_at),
    expires_at = null_if_nil(row.expires_at),
    created_at = row.created_at,
    updated_at = row.updated_at,
  }
end

-- What a plugin gets: the payment, nothing of the application around it.
local function for_plugin(row, provider, extra)
  local p = {
    id = row.id,
    booking_id = row.booking_id,
    amount = row.amount_minor,
    currency = row.currency,
    method = row.payment_method,
    phone = row.phone ~= NULL and row.phone or nil,
    provider_ref = row.provider_ref ~= NULL and row.provider_ref or nil,
    provider_request_ref = row.provider_request_ref ~= NULL and row.provider_request_ref or nil,
    idempotency_key = "spacer-payment-" .. row.id,
    created_at = row.created_at,
    callback_url = payments.webhook_url(provider.name),
  }
  if row.callback_token and row.callback_token ~= NULL then
    p.callback_url = payments.webhook_url(provider.name, "token=" .. row.callback_token)
  end
  for k, v in pairs(extra or {}) do
    p[k] = v
  end
  return p
end

-- Errors -------------------------------------------------------------------------------------

local function conflict(message, code, extra)
  spacer.error(409, message, { code = code, extra = extra })
end

local function unprocessable(message, code, fields, extra)
  spacer.error(422, message, { code = code, fields = fields, extra = extra })
end

-- Calls a plugin function; a raised error is the provider's failure, not a crash.
local function call(provider, fn, ...)
  local ok, res, err = pcall(provider.plugin[fn], provider.ctx, ...)
  if not ok then
    log.error(format("%s: %s() raised: %s", provider.where, fn, tostring(res)))
    return nil, "plugin error: " .. tostring(res)
  end
  if res == nil and err == nil then
    err = fn .. "() returned nothing"
  end
  return res, err
end
_M.call = call

local function is_timeout(err)
  return type(err) == "string" and err:sub(1, 7) == "timeout"
end

-- Invoices -----------------------------------------------------------------------------------

-- flow.issue_invoice(booking_id[, payment_id]) -> invoice row, created (boolean)
-- Must run inside db.tx. With payment_id the invoice is (or becomes) paid by that payment.
-- nil when the booking does not exist.
function _M.issue_invoice(booking_id, payment_id)
  local b = db.one(BOOKING_FOR_INVOICE, booking_id)
  if not b then
    return nil
  end
  local existing = db.one(INVOICE_OF_BOOKING, booking_id)
  if existing then
    if payment_id and existing.status == "issued" then
      existing = db.one(MARK_PAID, existing.id, payment_id) or existing
    end
    return existing, false
  end
  if not payment_id then
    local paid = db.one(COMPLETED_OF_BOOKING, booking_id)
    payment_id = paid and paid.id or nil
  end
  local n = db.one(NEXT_NUMBER, SETTINGS.year_timezone)
  local parts = invoice.from_breakdown(b.price_breakdown)
  -- The stored totals are the booking's; the breakdown only explains them.
  local row = db.one(INSERT_INVOICE, invoice.number(n.year, n.last_number),
    payment_id and "paid" or "issued", b.id, payment_id, b.client_id, b.currency, parts.lines,
    b.subtotal_minor, b.tax_minor, b.total_minor, parts.tax_rate_percent,
    { id = b.owner_id, name = b.owner_name, email = b.owner_email },
    { id = b.client_id, name = b.client_name, email = b.client_email },
    { id = b.space_id, title = b.space_title, location = b.space_location })
  return row, true
end

-- Settling -----------------------------------------------------------------------------------

-- flow.settle(payment_id, status, opts) -> row | nil, why
--   status   "completed" | "failed"
--   opts     { provider_ref, provider_request_ref, reason, event = { provider, event_id, kind,
--              payload } }
-- nil, "duplicate": the event was seen before; nil, "not_pending": someone settled it first
-- (nothing changed either way).
function _M.settle(payment_id, status, opts)
  opts = opts or {}
  return db.tx(function()
    local ev = opts.event
    if ev then
      local stored = db.one(INSERT_EVENT, ev.provider, ev.event_id, payment_id, ev.kind,
        ev.payload or {})
      if not stored then
        return nil, "duplicate"
      end
    end
    local row = db.one(SETTLE, payment_id, status, opts.provider_ref, opts.reason,
      opts.provider_request_ref)
    if not row then
      return nil, "not_pending"
    end
    if status == "completed" then
      _M.issue_invoice(row.booking_id, row.id)
    end
    return row
  end)
end

-- Creating -----------------------------------------------------------------------------------

-- flow.create(user, body, now) -> 201 body | raises
--   body: { booking_id, payment_method, amount (as sent, or nil), phone }
function _M.create(user, body)
  local provider = payments.resolve(body.payment_method)
  if not provider then
    local available = table.concat(payments.methods(), ", ")
    unprocessable(format("unknown payment method \"%s\"; available: %s",
      tostring(body.payment_method), available), "unknown_payment_method",
      { payment_method = "must be one of: " .. available },
      { available_methods = json.array(payments.methods()) })
  end
  local booking = db.one(BOOKING_TO_PAY, body.booking_id)
  if not booking or booking.client_id ~= user.id then
    spacer.error(404, "booking not found", "not_found")
  end
  if booking.status ~= "confirmed" then
    conflict(format("a %s booking cannot be paid; the owner must approve it first",
      booking.status), "booking_not_confirmed", { booking_status = booking.status })
  end
  local due = booking.total_minor
  local currency = booking.currency
  if body.amount ~= nil and body.amount ~= NULL and body.amount ~= "" then
    local sent, err = money.parse(body.amount, currency)
    if not sent then
      unprocessable("amount " .. err, "validation_failed", { amount = err })
    end
    if sent ~= due then
      local message = format("amount %s does not match the amount due, %s",
        money.format(sent, currency), money.format(due, currency))
      unprocessable(message, "amount_mismatch", { amount = message },
        { amount_due = money.to_major(due, currency), currency = currency })
    end
  end
  local phone = body.phone
  if phone == "" or phone == NULL then
    phone = nil
  end
  local draft = {
    amount = due,
    currency = currency,
    method = body.payment_method,
    phone = phone,
    booking_id = booking.id,
    description = booking.space_title,
  }
  if provider.plugin.validate then
    local ok, fields = call(provider, "validate", draft)
    if not ok then
      local message = "this payment cannot be made with " .. body.payment_method
      if type(fields) == "table" then
        local _, first = next(fields)
        message = tostring(first)
      elseif type(fields) == "string" then
        message = fields
        fields = { payment_method = fields }
      end
      unprocessable(message, "payment_refused", fields)
    end
    if type(ok) == "table" and ok.phone then
      phone = ok.phone -- normalised by the plugin
    end
  end
  -- Row first: the pending payment is committed before the provider hears of it.
  local token = spacer.crypto.random_hex(24)
  local ok, row = pcall(db.tx, function()
    local locked = db.one(LOCK_BOOKING, booking.id)
    if locked.status ~= "confirmed" then
      conflict(format("a %s booking cannot be paid", locked.status), "booking_not_confirmed",
        { booking_status = locked.status })
    end
    local open = db.one(OPEN_PAYMENT, booking.id)
    if open and open.payment_status == "completed" then
      conflict("this booking is already paid", "already_paid", { payment_id = open.id })
    elseif open then
      conflict("a payment of this booking is pending; wait for it to complete or fail",
        "payment_pending", { payment_id = open.id })
    end
    return db.one(INSERT_PAYMENT, booking.id, user.id, due, currency,
      body.payment_method:lower(), provider.name, phone, token, provider.pending_timeout)
  end)
  if not ok then
    if db.is_error(row) and row.sqlstate == "23505" then
      if row.constraint == "payments_one_completed_idx" then
        conflict("this booking is already paid", "already_paid")
      end
      conflict("a payment of this booking is pending; wait for it to complete or fail",
        "payment_pending")
    end
    error(row, 0)
  end
  row.callback_token = token
  -- Provider second.
  local answer, err = call(provider, "create", for_plugin(row, provider, {
    description = booking.space_title,
  }))
  if not answer then
    log.warn(format("payment %d: %s create failed: %s", row.id, provider.name, tostring(err)))
    local status, code, message = 502, "provider_error",
      "the payment provider refused or failed the request: " .. tostring(err)
    if is_timeout(err) then
      status, code, message = 504, "provider_timeout",
        "the payment provider did not answer in time; the payment stays pending and is "
          .. "settled when the provider confirms it"
    end
    spacer.error(status, message, { code = code, extra = {
      payment = _M.payment(db.one(PAYMENT_ONLY, row.id)),
    } })
  end
  local next_action = answer.next_action
  if next_action == nil then
    next_action = NULL
  end
  local recorded = db.one(RECORD_CREATE, row.id, answer.provider_ref, answer.provider_request_ref,
    next_action)
  if answer.status == "completed" or answer.status == "failed" then
    _M.settle(row.id, answer.status, { provider_ref = answer.provider_ref,
      reason = answer.failure_reason })
    recorded = nil
  end
  -- Not recorded: a callback settled it meanwhile, or create() did; read what it is now.
  row = recorded or db.one(PAYMENT_ONLY, row.id)
  if row.payment_status == "failed" then
    spacer.error(422, "the payment provider refused the payment: "
      .. tostring(row.failure_reason ~= NULL and row.failure_reason or "no reason given"), {
        code = "payment_refused", extra = { payment = _M.payment(row) } })
  end
  local message = "Payment created"
  if row.payment_status == "completed" then
    message = "Payment completed"
  elseif provider.plugin.confirmable then
    message = "Payment recorded; the space's owner confirms it when the money arrives"
  end
  return { message = message, payment = _M.payment(row) }
end

-- Confirming (manual) ------------------------------------------------------------------------

-- flow.confirm(row) -> the completed payment row. row: a PAYMENT_BY_ID row the caller may
-- confirm.
function _M.confirm(row)
  local provider = payments.provider(row.provider)
  local confirmable = provider and provider.plugin.confirmable
  if not confirmable then
    conflict(format("a %s payment is settled by its provider, not confirmed by hand",
      row.provider), "not_confirmable")
  end
  if row.payment_status ~= "pending" then
    conflict(format("this payment is %s; only a pending payment can be confirmed",
      row.payment_status), "invalid_status", { payment_status = row.payment_status })
  end
  local settled = _M.settle(row.id, "completed", {})
  if not settled then
    local now = db.one(PAYMENT_ONLY, row.id)
    conflict(format("this payment is %s; only a pending payment can be confirmed",
      now.payment_status), "invalid_status", { payment_status = now.payment_status })
  end
  return settled
end

-- Webhooks -----------------------------------------------------------------------------------

local FIND_BY_REQUEST_REF = "SELECT " .. COLS .. [[, p.callback_token
  FROM payments p WHERE p.provider = $1 AND p.provider_request_ref = $2]]
local FIND_BY_REF = "SELECT " .. COLS .. [[, p.callback_token
  FROM payments p WHERE p.provider = $1 AND p.provider_ref = $2]]
local FIND_BY_TOKEN = "SELECT " .. COLS .. [[, p.callback_token
  FROM payments p WHERE p.provider = $1 AND p.callback_token = $2]]
local FIND_BY_ID = "SELECT " .. COLS .. [[, p.callback_token
  FROM payments p WHERE p.provider = $1 AND p.id = $2]]
local STORE_UNMATCHED = [[
  INSERT INTO payment_events (provider, event_id, payment_id, kind, payload)
  VALUES ($1, $2, NULL, $3, $4::jsonb) ON CONFLICT (provider, event_id) DO NOTHING]]

local function bad_webhook(message)
  spacer.error(400, message, "invalid_webhook")
end

-- The payment an event speaks of: every reference the event gives must agree with the row.
local function match(provider, ev)
  local row
  if ev.payment_id then
    row = db.one(FIND_BY_ID, provider.name, math.tointeger(tonumber(ev.payment_id)) or 0)
  end
  if not row and ev.provider_request_ref then
    row = db.one(FIND_BY_REQUEST_REF, provider.name, ev.provider_request_ref)
  end
  if not row and ev.provider_ref then
    row = db.one(FIND_BY_REF, provider.name, ev.provider_ref)
  end
  if not row and ev.token then
    row = db.one(FIND_BY_TOKEN, provider.name, ev.token)
  end
  if not row then
    return nil, "no payment matches this event"
  end
  if ev.token and not spacer.crypto.equal(ev.token, tostring(row.callback_token)) then
    return nil, "callback token does not match the payment"
  end
  if ev.require_token and not ev.token then
    return nil, "callback token missing"
  end
  if ev.provider_request_ref and row.provider_request_ref ~= NULL
      and row.provider_request_ref ~= ev.provider_request_ref then
    return nil, "checkout reference does not match the payment"
  end
  if ev.payment_id and ev.provider_ref and row.provider_ref ~= NULL
      and row.provider_ref ~= ev.provider_ref then
    return nil, "provider reference does not match the payment"
  end
  if ev.amount ~= nil and ev.amount ~= row.amount_minor then
    return nil, format("amount %s does not match the payment's %s", tostring(ev.amount),
      tostring(row.amount_minor))
  end
  if ev.currency ~= nil and ev.currency:upper() ~= row.currency then
    return nil, "currency does not match the payment"
  end
  if ev.phone ~= nil and row.phone ~= NULL and row.phone ~= nil
      and tostring(ev.phone) ~= row.phone then
    return nil, "phone number does not match the payment"
  end
  return row
end

-- flow.webhook(provider, request) -> status, body, headers
-- request: { headers, raw_body, query }. The plugin verifies and reads the event; the event
-- then settles its payment once.
function _M.webhook(provider, request)
  local ev, err = call(provider, "webhook", request)
  if not ev then
    log.warn(format("%s webhook refused: %s", provider.name, tostring(err)))
    bad_webhook(tostring(err))
  end
  local reply = ev.response or { received = true }
  if ev.kind ~= "completed" and ev.kind ~= "failed" then
    if ev.event_id then
      db.exec(STORE_UNMATCHED, provider.name, ev.event_id, tostring(ev.kind or "ignored"),
        ev.payload or {})
    end
    return 200, reply
  end
  local row, why = match(provider, ev)
  if not row then
    log.warn(format("%s webhook %s refused: %s", provider.name, tostring(ev.event_id), why))
    bad_webhook(why)
  end
  local settled, outcome = _M.settle(row.id, ev.kind, {
    provider_ref = ev.provider_ref,
    provider_request_ref = ev.provider_request_ref,
    reason = ev.kind == "failed" and (ev.reason or "the provider reports a failure") or nil,
    event = {
      provider = provider.name,
      event_id = ev.event_id or (ev.kind .. ":" .. row.id),
      kind = ev.kind,
      payload = ev.payload or {},
    },
  })
  if not settled and outcome == "not_pending" then
    local now = db.one(PAYMENT_ONLY, row.id)
    if ev.kind == "completed" and now.payment_status == "failed" then
      -- Money arrived for an attempt already failed: someone must look at it.
      log.error(format("payment %d: %s reports it paid (%s) after it failed; refund or settle "
        .. "by hand", row.id, provider.name, tostring(ev.provider_ref)))
    end
  end
  return 200, reply
end

-- Refunds ------------------------------------------------------------------------------------

-- flow.refund_booking(booking_row) -> { status, amount, payment_id } | nil
-- After a booking is cancelled: its completed payment is refunded by the cancellation
-- policy's amount (booking_row.refund_minor) through the provider's refund(); a pending
-- payment fails; an unpaid invoice is voided.
function _M.refund_booking(b)
  db.exec(VOID_UNPAID, b.id)
  -- An attempt still pending pays for nothing now: it fails (an owner cannot confirm it).
  local open = db.one(PENDING_OF_BOOKING, b.id)
  if open then
    _M.settle(open.id, "failed", { reason = "the booking was cancelled" })
  end
  local paid = db.one(COMPLETED_OF_BOOKING, b.id)
  if not paid then
    return nil
  end
  local amount = b.refund_minor
  if amount == nil or amount == NULL or amount <= 0 then
    return { status = "none", amount = 0, payment_id = paid.id }
  end
  amount = math.min(amount, paid.amount_minor)
  local provider = payments.provider(paid.provider)
  if not provider or not provider.plugin.refund then
    log.warn(format("payment %d: %s has no refund; %d to pay back by hand", paid.id,
      paid.provider, amount))
    return { status = "manual", amount = amount, payment_id = paid.id }
  end
  local answer, err = call(provider, "refund", for_plugin(paid, provider), amount)
  if not answer then
    log.error(format("payment %d: refund of %d failed: %s", paid.id, amount, tostring(err)))
    return { status = "failed", amount = amount, payment_id = paid.id, error = tostring(err) }
  end
  db.one(REFUNDED, paid.id, amount)
  return { status = "refunded", amount = amount, payment_id = paid.id }
end

-- Background jobs ----------------------------------------------------------------------------

-- Pending payments past their deadline, each claimed by one runner: the claim moves the
-- deadline a lease ahead under FOR UPDATE SKIP LOCKED, so other runners (workers, instances)
-- skip them.
local CLAIM_EXPIRED = "WITH due AS (" .. [[
    SELECT id FROM payments
    WHERE payment_status = 'pending' AND expires_at IS NOT NULL AND expires_at <= now()
      AND provider IN (SELECT jsonb_array_elements_text($3::jsonb))
    ORDER BY expires_at LIMIT $1
    FOR UPDATE SKIP LOCKED
  )
  UPDATE payments p SET expires_at = now() + make_interval(secs => $2::int)
  FROM due WHERE p.id = due.id
  RETURNING ]] .. COLS .. ", p.callback_token"

local DELETE_OLD_KEYS = [[
  DELETE FROM idempotency_keys WHERE ctid = ANY (ARRAY(
    SELECT ctid FROM idempotency_keys WHERE created_at < now() - interval '24 hours'
    LIMIT $1 FOR UPDATE SKIP LOCKED))]]

local LEASE_SECONDS = 300

-- flow.expire_pending([limit]) -> how many were settled
-- Asks the provider first (plugin status()): paid -> completed; anything else -> failed.
-- Only the providers this instance has enabled: another instance may know one it does not.
function _M.expire_pending(limit)
  local enabled = {}
  for name in pairs(payments.providers) do
    enabled[#enabled + 1] = name
  end
  if #enabled == 0 then
    return 0
  end
  -- A row is claimed only when its provider can be asked about it in this run: each status
  -- call spends outbound calls (M-Pesa: a token, then the query), the budget is per run.
  limit = limit or 50
  local budget = spacer.http.calls_left()
  if budget > 0 then
    limit = math.min(limit, budget)
  end
  local rows = db.query(CLAIM_EXPIRED, limit, LEASE_SECONDS, json.array(enabled))
  local n = 0
  for _, row in ipairs(rows) do
    local provider = payments.provider(row.provider)
    if provider and provider.plugin.status and budget > 0 and spacer.http.calls_left() == 0 then
      break -- out of calls: the rest keep their lease and come back in a later run
    end
    local status, detail = "failed", "expired: no answer from the provider in time"
    if provider and provider.plugin.status then
      local answer, err = call(provider, "status", for_plugin(row, provider))
      if answer and answer.status == "completed" then
        status, detail = "completed", nil
      elseif answer and answer.status == "pending" then
        detail = "expired: the provider still reports it unpaid"
      elseif answer then
        detail = "expired: " .. tostring(answer.reason or answer.status)
      elseif tostring(err):find("too many requests", 1, true) then
        break -- not an answer about this payment: leave it for a later run
      else
        detail = "expired: status unknown (" .. tostring(err) .. ")"
      end
      if answer then
        row.provider_ref = answer.provider_ref
      end
    end
    local ok, settled = pcall(_M.settle, row.id, status, {
      provider_ref = status == "completed" and row.provider_ref ~= NULL and row.provider_ref
        or nil,
      reason = detail,
      event = { provider = row.provider, event_id = "expiry:" .. row.id, kind = status,
        payload = { reason = detail or "paid" } },
    })
    if ok and settled then
      n = n + 1
    elseif not ok then
      log.error(format("payment %d: expiry failed: %s", row.id, tostring(settled)))
    end
  end
  return n
end

function _M.delete_old_keys(limit)
  return db.exec(DELETE_OLD_KEYS, limit or 1000)
end

return _M
