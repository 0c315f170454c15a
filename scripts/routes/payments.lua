-- routes/payments.lua: payments, provider webhooks and invoices, on the canonical
-- /api/payments/... paths and the old web app's /api/payments, /api/owner/payments and
-- /api/invoices. The rules live in scripts/payment_flow.lua, the look of an invoice in
-- scripts/invoice.lua, the providers in plugins/payments/ (lib/payments.lua loads them).
--
-- Who sees what: a client their own payments and invoices, an owner those of their spaces'
-- bookings, an admin all; anything else is a 404, as if it did not exist.
--
-- Idempotency-Key (POST of a payment or an invoice): the key, a hash of the request (method,
-- route and body) and the response are kept for 24 hours per user. The same key and body
-- answer the first response again; the same key with another body is a 422; while the first
-- request is still running, a 409. Only successful answers are kept: a request that failed
-- may be retried with its key.
local api = require("lib.api")
local auth = require("lib.auth")
local payments = require("lib.payments")
local flow = require("payment_flow")
local invoice = require("invoice")
local money = require("lib.money")
local openapi = require("lib.openapi")
local spaces = require("routes.spaces")

local _M = {}

local db = spacer.db
local json = spacer.json
local crypto = spacer.crypto
local NULL = json.null

local is_admin = auth.is_admin

-- SQL ----------------------------------------------------------------------------------------

local function list_sql(select, from, where, n, count_from)
  return spaces.paged_sql({
    select = select,
    from = from,
    count_from = count_from,
    where = where,
    order = "created_at_ DESC, id_ DESC",
    outer_order = "page.created_at_ DESC, page.id_ DESC",
    n = n,
  })
end

local PCOLS = flow.PAYMENT_COLUMNS .. ", p.created_at AS created_at_, p.id AS id_"
local PFROM = "payments p JOIN bookings b ON b.id = p.booking_id JOIN spaces s ON s.id = b.space_id"
local STATUS_P = "($%d::payment_status IS NULL OR p.payment_status = $%d::payment_status)"

local PAYMENTS_OF_CLIENT = list_sql(PCOLS, "payments p",
  "WHERE p.client_id = $1 AND " .. STATUS_P:format(2, 2), 2)
local PAYMENTS_OF_OWNER = list_sql(PCOLS, PFROM,
  "WHERE s.owner_id = $1 AND " .. STATUS_P:format(2, 2), 2)
local PAYMENTS_ALL = list_sql(PCOLS, "payments p", "WHERE " .. STATUS_P:format(1, 1), 1)

-- An invoice as the API shows it, as a select list over invoices i for spacer.db.json_with
-- (a list's rows go straight to JSON, never through Lua tables): the shape of invoice.json,
-- which shows one invoice (change both together; tests/api/test_payments.py compares a listed
-- invoice with the one shown alone). Amounts divide by the currency's factor as
-- money.to_major does; the tax rate prints as rate_of does (16, 7.5: the same text for any
-- rate of at most 15 significant digits and not below 0.0001); the lines (the factor of the
-- currency and the stored lines' text) and the jsonb snapshots go through INVOICE_SHAPERS.
local IFACTOR = money.sql_factor("i.currency") -- upper case: the booking's, as spaces check
local INVOICE_JSON = [[
  i.id, i.number, i.status::text AS status, i.booking_id, i.payment_id, i.client_id,
  i.issued_at, i.paid_at, i.currency,
  ]] .. IFACTOR .. [[ || ' ' || i.lines::text AS lines,
  i.subtotal_minor::float8 / ]] .. IFACTOR .. [[ AS subtotal,
  i.tax_minor::float8 / ]] .. IFACTOR .. [[ AS tax,
  trim_scale(i.tax_rate_percent) AS tax_rate_percent,
  i.total_minor::float8 / ]] .. IFACTOR .. [[ AS total,
  i.seller, i.buyer, i.space,
  '/api/payments/invoices/' || i.id || '/html' AS invoice_url,
  i.issued_at AS _created_at, i.id AS _id]]

-- Each shaper gets a column's value and answers what the JSON shows; all three run in C,
-- without a Lua call per row: "100 [...]" -> the stored lines with invoice.LINE_AMOUNTS in
-- major units (what invoice.lines shows); a jsonb snapshot -> the object, or {}.
local INVOICE_SHAPERS = {
  lines = json.scaler(invoice.LINE_AMOUNTS),
  seller = invoice.object,
  buyer = invoice.object,
  space = invoice.object,
}

-- One statement per page, as spaces.paged_sql answers (the page's rows and _total; past the
-- last page a row of NULLs), but the page is cut from whole invoices rows first and only its
-- rows are shaped (shaping before the LIMIT would shape every matching row for the sort).
local function invoice_list_sql(from, where, n)
  return string.format([[
    WITH page AS (SELECT i.* FROM %s %s ORDER BY i.issued_at DESC, i.id DESC
                  LIMIT $%d OFFSET $%d),
         counted AS (SELECT count(*) AS total FROM %s %s)
    SELECT shaped.*, counted.total AS _total
    FROM counted LEFT JOIN (SELECT %s FROM page i) shaped ON true
    ORDER BY shaped._created_at DESC, shaped._id DESC]],
    from, where, n + 1, n + 2, from, where, INVOICE_JSON)
end

local IFROM = "invoices i JOIN bookings b ON b.id = i.booking_id JOIN spaces s ON s.id = b.space_id"
local STATUS_I = "($%d::invoice_status IS NULL OR i.status = $%d::invoice_status)"

local INVOICES_OF_CLIENT = invoice_list_sql("invoices i",
  "WHERE i.client_id = $1 AND " .. STATUS_I:format(2, 2), 2)
local INVOICES_OF_OWNER = invoice_list_sql(IFROM,
  "WHERE s.owner_id = $1 AND " .. STATUS_I:format(2, 2), 2)
local INVOICES_ALL = invoice_list_sql("invoices i", "WHERE " .. STATUS_I:format(1, 1), 1)

local BOOKING_FOR_INVOICE_CHECK = [[
  SELECT b.id, b.client_id, b.status::text AS status, s.owner_id
  FROM bookings b JOIN spaces s ON s.id = b.space_id WHERE b.id = $1]]

local CLAIM_KEY = [[
  INSERT INTO idempotency_keys AS k (client_id, key, method, path, request_hash)
  VALUES ($1, $2, $3, $4, $5)
  ON CONFLICT (client_id, key) DO UPDATE
    SET method = EXCLUDED.method, path = EXCLUDED.path, request_hash = EXCLUDED.request_hash,
        response_status = NULL, response_body = NULL, created_at = now()
    WHERE k.created_at < now() - interval '24 hours'
  RETURNING true AS claimed]]

local READ_KEY = [[
  SELECT request_hash, response_status, response_body FROM idempotency_keys
  WHERE client_id = $1 AND key = $2]]

local STORE_KEY = [[
  UPDATE idempotency_keys SET response_status = $3, response_body = $4::jsonb
  WHERE client_id = $1 AND key = $2]]

local FORGET_KEY = [[
  DELETE FROM idempotency_keys WHERE client_id = $1 AND key = $2 AND response_status IS NULL]]

-- Validation ---------------------------------------------------------------------------------

local READONLY = { readonly = true }

local PAY_BODY = {
  booking_id = { type = "integer", required = true, min = 1 },
  payment_method = { type = "string", required = true, max_length = 64 },
  amount = {}, -- checked against the booking's currency by payment_flow
  phone = { type = "string", nullable = true, max_length = 32 },
  id = READONLY,
  client_id = READONLY,
  payment_status = READONLY,
  provider_ref = READONLY,
  payment_date = READONLY,
}

local INVOICE_BODY = {
  booking_id = { type = "integer", required = true, min = 1 },
  id = READONLY,
  number = READONLY,
  status = READONLY,
  payment_id = READONLY,
}

local PAYMENT_FILTERS = {
  status = { type = "string", lower = true, enum = { "pending", "completed", "failed",
    "refunded" } },
}

local INVOICE_FILTERS = {
  status = { type = "string", lower = true, enum = { "issued", "paid", "void" } },
}

-- Idempotency --------------------------------------------------------------------------------

-- The request's body as text with its keys in order: the same body hashes the same, however
-- its keys were ordered on the wire.
local function canonical(v)
  if type(v) ~= "table" or v == NULL then
    return json.encode(v)
  end
  if json.is_array(v) then
    local parts = {}
    for i, item in ipairs(v) do
      parts[i] = canonical(item)
    end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  local keys = {}
  for k in pairs(v) do
    keys[#keys + 1] = tostring(k)
  end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do
    parts[i] = json.encode(k) .. ":" .. canonical(v[k])
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- Runs fn(req) -> status, body once per Idempotency-Key (see the top of this file).
local function idempotent(req, op, fn)
  local key = req.headers["idempotency-key"]
  if key == nil then
    return fn(req)
  end
  if #key < 1 or #key > 255 or key:find("[%c]") then
    api.fail({ ["Idempotency-Key"] = "must be 1 to 255 printable characters" })
  end
  local user = req.user.id
  local route = op
  local hash = crypto.sha256(req.method .. " " .. route .. "\n" .. canonical(req.body or {}))
  if not db.one(CLAIM_KEY, user, key, req.method, route, hash) then
    local seen = db.one(READ_KEY, user, key)
    if seen and seen.request_hash ~= hash then
      spacer.error(422, "this Idempotency-Key was used with another request; use a new key",
        { code = "idempotency_key_reused", fields = {
          ["Idempotency-Key"] = "was used with another request" } })
    end
    if not seen or seen.response_status == NULL then
      spacer.error(409, "a request with this Idempotency-Key is still being processed",
        "idempotency_in_progress")
    end
    return seen.response_status, seen.response_body, { ["Idempotent-Replayed"] = "true" }
  end
  local ok, status, body, headers = pcall(fn, req)
  if not ok then
    pcall(db.exec, FORGET_KEY, user, key)
    error(status, 0)
  end
  db.exec(STORE_KEY, user, key, status, body)
  return status, body, headers
end

-- Helpers ------------------------------------------------------------------------------------

-- A payment as this user sees it: next_action (a Stripe client_secret, say) is the payer's
-- alone.
local function shape_for(user)
  return function(row)
    local p = flow.payment(row)
    if row.client_id ~= user.id then
      p.next_action = NULL
    end
    return p
  end
end

local function is_host(user, row)
  return is_admin(user) or row.space_owner_id == user.id
end

local function visible_payment(req)
  local row = db.one(flow.PAYMENT_BY_ID, req.params.id)
  local user = req.user
  if not row or not (row.client_id == user.id or is_host(user, row)) then
    api.not_found("payment")
  end
  return row
end

local function visible_invoice(req)
  local row = db.one(flow.INVOICE_BY_ID, req.params.id)
  local user = req.user
  if not row or not (row.client_id == user.id or is_host(user, row)) then
    api.not_found("invoice")
  end
  return row
end

local function wants_html(req)
  local accept = req.headers["accept"] or ""
  return accept:find("text/html", 1, true) ~= nil
    and not accept:find("application/json", 1, true)
end

local HTML = { ["Content-Type"] = "text/html; charset=utf-8" }

-- Handlers -----------------------------------------------------------------------------------

function _M.create(req)
  return idempotent(req, "payments.create", function()
    return 201, flow.create(req.user, req.body)
  end)
end

function _M.list(req)
  local f, pager = api.list_params(req, PAYMENT_FILTERS)
  local user = req.user
  if is_admin(user) then
    return spaces.page_of(req, pager, PAYMENTS_ALL, { f.status }, 1, shape_for(user))
  end
  if user.role == "owner" then
    return spaces.page_of(req, pager, PAYMENTS_OF_OWNER, { user.id, f.status }, 2, shape_for(user))
  end
  return spaces.page_of(req, pager, PAYMENTS_OF_CLIENT, { user.id, f.status }, 2, shape_for(user))
end

function _M.show(req)
  return 200, shape_for(req.user)(visible_payment(req))
end

function _M.confirm(req)
  local row = visible_payment(req)
  if not is_host(req.user, row) then
    api.not_found("payment")
  end
  local settled = flow.confirm(row)
  return 200, { message = "Payment confirmed", payment = shape_for(req.user)(settled) }
end

function _M.webhook(req)
  local provider = payments.provider(req.params.provider)
  if not provider then
    api.not_found("payment provider")
  end
  return flow.webhook(provider, {
    headers = req.headers,
    raw_body = req.raw_body or "",
    query = req.query or {},
    path = req.path,
  })
end

function _M.issue_invoice(req)
  return idempotent(req, "invoices.issue", function()
    local user = req.user
    local b = db.one(BOOKING_FOR_INVOICE_CHECK, req.body.booking_id)
    if not b or not (b.client_id == user.id or b.owner_id == user.id or is_admin(user)) then
      api.not_found("booking")
    end
    if b.status ~= "confirmed" then
      spacer.error(409, string.format("a %s booking has no invoice; only a confirmed one",
        b.status), { code = "booking_not_confirmed", extra = { booking_status = b.status } })
    end
    local row, created = db.tx(function()
      return flow.issue_invoice(b.id)
    end)
    if not created then
      spacer.error(409, "this booking's invoice is already issued: " .. row.number, {
        code = "invoice_exists", extra = { invoice = invoice.json(row) } })
    end
    return 201, { message = "Invoice issued", invoice = invoice.json(row) }
  end)
end

function _M.list_invoices(req)
  local f, pager = api.list_params(req, INVOICE_FILTERS)
  local user = req.user
  if is_admin(user) then
    return spaces.page_json(req, pager, INVOICES_ALL, { f.status }, 1, INVOICE_SHAPERS)
  end
  if user.role == "owner" then
    return spaces.page_json(req, pager, INVOICES_OF_OWNER, { user.id, f.status }, 2,
      INVOICE_SHAPERS)
  end
  return spaces.page_json(req, pager, INVOICES_OF_CLIENT, { user.id, f.status }, 2,
    INVOICE_SHAPERS)
end

function _M.show_invoice(req)
  local row = visible_invoice(req)
  if wants_html(req) then
    return 200, invoice.html(row), HTML
  end
  return 200, invoice.json(row)
end

function _M.invoice_html(req)
  return 200, invoice.html(visible_invoice(req)), HTML
end

-- Routes -------------------------------------------------------------------------------------

local compat = api.compat_path

local TAGS = { "payments" }
local ITAGS = { "invoices" }
local HOSTS = { "owner", "admin" }

-- The shapes of the answers, for the OpenAPI document (payment_flow.payment, invoice.json).
local NULLABLE_TIME = openapi.nullable(openapi.DATETIME)
local PAYMENT = openapi.component("Payment", openapi.object({
  id = openapi.ID,
  booking_id = openapi.ID,
  client_id = openapi.ID,
  amount = openapi.AMOUNT,
  currency = openapi.CURRENCY,
  payment_method = { type = "string", description = "as the client named it (an alias or a plugin)" },
  provider = { type = "string", description = "the payment plugin", example = "manual" },
  payment_status = { type = "string", enum = json.array({ table.unpack(PAYMENT_FILTERS.status.enum) }) },
  provider_ref = openapi.TEXT_OR_NULL,
  next_action = {
    type = "object",
    nullable = true,
    additionalProperties = true,
    description = "what the payer does next (the provider's instructions, a client secret, "
      .. "a phone prompt)",
  },
  failure_reason = openapi.TEXT_OR_NULL,
  refund_amount = openapi.nullable(openapi.AMOUNT),
  payment_date = openapi.DATETIME,
  completed_at = NULLABLE_TIME,
  refunded_at = NULLABLE_TIME,
  expires_at = NULLABLE_TIME,
  created_at = openapi.DATETIME,
  updated_at = openapi.DATETIME,
}, { "id", "booking_id", "client_id", "amount", "currency", "payment_method",
  "payment_status", "payment_date" }))
local PARTY = openapi.object({
  id = openapi.ID,
  name = openapi.STRING,
  email = openapi.TEXT_OR_NULL,
})
local INVOICE = openapi.component("Invoice", openapi.object({
  id = openapi.ID,
  number = { type = "string", example = "INV-2026-000001" },
  status = { type = "string", enum = json.array({ table.unpack(INVOICE_FILTERS.status.enum) }) },
  booking_id = openapi.ID,
  payment_id = openapi.nullable(openapi.ID),
  client_id = openapi.ID,
  issued_at = openapi.DATETIME,
  paid_at = NULLABLE_TIME,
  currency = openapi.CURRENCY,
  lines = openapi.array(openapi.ref("PriceLine")),
  subtotal = openapi.AMOUNT,
  tax = openapi.AMOUNT,
  tax_rate_percent = { type = "number", nullable = true },
  total = openapi.AMOUNT,
  seller = PARTY,
  buyer = PARTY,
  space = { type = "object", additionalProperties = true },
  invoice_url = { type = "string", description = "the printable page" },
}, { "id", "number", "status", "booking_id", "client_id", "issued_at", "currency", "lines",
  "subtotal", "tax", "total", "invoice_url" }))
local MESSAGE_PAYMENT = openapi.object({ message = openapi.MESSAGE, payment = PAYMENT },
  { "message", "payment" })
local MESSAGE_INVOICE = openapi.object({ message = openapi.MESSAGE, invoice = INVOICE },
  { "message", "invoice" })
local IDEMPOTENCY = {
  ["Idempotency-Key"] = {
    type = "string",
    min_length = 1,
    max_length = 255,
    description = "the same key and body answer the first response again (24 hours); "
      .. "another body is a 422",
  },
}
local HTML_PAGE = { ["text/html"] = { schema = { type = "string" } } }

spacer.post({ "/api/payments/payments", compat("/api/payments") }, {
  roles = { "client" },
  body = PAY_BODY,
  headers = IDEMPOTENCY,
  summary = "Pay a confirmed booking (its client): booking_id, payment_method, amount?, phone?; "
    .. "header Idempotency-Key",
  description = "The amount due comes from the booking: a different amount is a 422, and so "
    .. "is an unknown payment_method (fields lists the available ones).",
  status = 201,
  result = MESSAGE_PAYMENT,
  responses = { [404] = "no such booking of the caller",
    [409] = "the booking is not confirmed, already paid, or has a payment pending; or the "
      .. "same Idempotency-Key is still being processed" },
  tags = TAGS,
}, _M.create)

spacer.get({ "/api/payments/payments", compat("/api/payments") }, {
  auth = true,
  summary = "A client's payments, an owner's spaces' payments, every payment for an admin; "
    .. "filter status; page, per_page",
  query = PAYMENT_FILTERS,
  paged = true,
  result = PAYMENT,
  tags = TAGS,
}, _M.list)

spacer.get(compat("/api/owner/payments"), {
  roles = HOSTS,
  summary = "The payments of the caller's spaces (every payment for an admin)",
  query = PAYMENT_FILTERS,
  paged = true,
  result = PAYMENT,
  tags = TAGS,
}, _M.list)

spacer.get({ "/api/payments/payments/{id}", compat("/api/payments/{id}") }, {
  auth = true,
  summary = "One payment (its payer, the space's owner, admin)",
  result = PAYMENT,
  responses = { [404] = "no such payment, or not yours to see" },
  tags = TAGS,
}, _M.show)

spacer.patch({ "/api/payments/payments/{id}/confirm", compat("/api/payments/{id}/confirm") }, {
  roles = HOSTS,
  summary = "The money of a manual payment arrived: it becomes completed (the space's owner, "
    .. "admin)",
  result = MESSAGE_PAYMENT,
  responses = { [404] = "no such payment among the caller's spaces",
    [409] = "not a pending manual payment" },
  tags = TAGS,
}, _M.confirm)

spacer.post("/api/payments/webhooks/{provider:str}", {
  raw_body = true,
  summary = "A payment provider's callback, verified by its plugin; idempotent",
  description = "Called by the provider, not by clients: the plugin verifies the signature "
    .. "(Stripe) or the per-payment token and references (M-Pesa). A repeated event changes "
    .. "nothing and is acknowledged.",
  result = { type = "object", additionalProperties = true },
  responses = { [400] = "a body or signature the provider's plugin refuses",
    [401] = "a signature or token that does not verify",
    [404] = "no such payment provider" },
  tags = TAGS,
}, _M.webhook)

spacer.post({ "/api/payments/invoices", compat("/api/invoices") }, {
  auth = true,
  body = INVOICE_BODY,
  headers = IDEMPOTENCY,
  summary = "Issue the invoice of a confirmed booking (its client, the space's owner, admin); "
    .. "409 with the existing invoice",
  status = 201,
  result = MESSAGE_INVOICE,
  responses = { [404] = "no such booking, or not yours to see",
    [409] = "the booking is not confirmed, or its invoice exists (then the body has it as "
      .. "invoice)" },
  tags = ITAGS,
}, _M.issue_invoice)

spacer.get({ "/api/payments/invoices", compat("/api/invoices") }, {
  auth = true,
  summary = "A client's invoices, an owner's spaces' invoices, every invoice for an admin; "
    .. "filter status; page, per_page",
  query = INVOICE_FILTERS,
  paged = true,
  result = INVOICE,
  tags = ITAGS,
}, _M.list_invoices)

spacer.get({ "/api/payments/invoices/{id}", compat("/api/invoices/{id}") }, {
  auth = true,
  summary = "One invoice with lines and totals; Accept: text/html gives the printable page",
  content = {
    ["application/json"] = { schema = INVOICE },
    ["text/html"] = HTML_PAGE["text/html"],
  },
  responses = { [200] = "the invoice; with Accept: text/html, the printable page", [404] = "no such invoice, or not yours to see" },
  tags = ITAGS,
}, _M.show_invoice)

spacer.get("/api/payments/invoices/{id}/html", {
  auth = true,
  summary = "The printable invoice page",
  content = HTML_PAGE,
  responses = { [404] = "no such invoice, or not yours to see" },
  tags = ITAGS,
}, _M.invoice_html)

-- Background jobs: every worker runs them; the rows each run claims are its own (FOR UPDATE
-- SKIP LOCKED), so any number of workers and instances do each job once.
local timer = rawget(spacer, "timer")
if timer then
  timer.every("payments.expire_pending", payments.SETTINGS.job_interval, function()
    flow.expire_pending()
  end)
  timer.every("payments.idempotency_cleanup", payments.SETTINGS.job_interval, function()
    flow.delete_old_keys()
  end)
end

return _M
