-- plugins/payments/stripe.lua: card payments through Stripe PaymentIntents.
--
-- create: a form-encoded POST /v1/payment_intents (amount in minor units, currency,
-- metadata[payment_id]) with the secret key as bearer token and an Idempotency-Key derived
-- from the payment id, so a retried create never makes a second intent. The intent's
-- client_secret goes to the app in next_action; the app confirms the card with Stripe.js.
-- webhook: Stripe-Signature "t=<unix>,v1=<hex>[,v1=<hex>...]" is an HMAC-SHA256 with the
-- endpoint secret over t .. "." .. raw body; any v1 may match (secrets being rolled), in
-- constant time, within `tolerance` seconds. payment_intent.succeeded completes the payment,
-- payment_intent.payment_failed fails it; other events are acknowledged and ignored.
-- status: the expiry job asks before failing: a succeeded intent completes the payment; any
-- other is cancelled at Stripe first (so it can no longer take money), then the payment fails.
-- refund: POST /v1/refunds for the policy's amount.
local _M = {
  name = "stripe",
  version = "1.0.0",
  methods = { "stripe", "card" },
  config = {
    secret_key = { type = "string", required = true, secret = true,
      description = "the secret API key, sk_live_... or sk_test_..." },
    webhook_secret = { type = "string", required = true, secret = true,
      description = "the webhook endpoint's signing secret, whsec_..." },
    publishable_key = { type = "string",
      description = "pk_... handed to the app with the client_secret (optional)" },
    base_url = { type = "string", default = "https://api.stripe.com",
      check = function(v)
        if not v:match("^https?://[^/]+") then
          return "must be an http:// or https:// URL"
        end
      end },
    timeout = { type = "number", default = 10, description = "seconds per call to Stripe" },
    tolerance = { type = "integer", default = 300,
      description = "seconds a webhook's signature time may differ from now" },
  },
  -- A card payment not confirmed within the hour is asked about, then failed.
  pending_timeout = 3600,
}

local function urlencode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c)
    return string.format("%%%02X", c:byte())
  end))
end

-- form({ { "amount", 100 }, ... }) -> "amount=100&..."; ordered pairs keep it stable.
local function form(fields)
  local parts = {}
  for i, kv in ipairs(fields) do
    parts[i] = urlencode(kv[1]) .. "=" .. urlencode(kv[2])
  end
  return table.concat(parts, "&")
end

-- One call to Stripe -> decoded JSON | nil, err
local function call(ctx, method, path, body, idempotency_key)
  if not ctx.http then
    return nil, "outbound HTTP is not available"
  end
  local headers = {
    ["Authorization"] = "Bearer " .. ctx.config.secret_key,
    ["Stripe-Version"] = "2024-06-20",
  }
  if body then
    headers["Content-Type"] = "application/x-www-form-urlencoded"
  end
  if idempotency_key then
    headers["Idempotency-Key"] = idempotency_key
  end
  local res, err = ctx.http.request({
    method = method,
    url = ctx.config.base_url:gsub("/+$", "") .. path,
    headers = headers,
    body = body,
    timeout = ctx.config.timeout,
  })
  if not res then
    return nil, err
  end
  local data = ctx.json.decode(res.body or "")
  if res.status >= 400 or type(data) ~= "table" then
    local message = type(data) == "table" and type(data.error) == "table" and data.error.message
    return nil, string.format("stripe answered %d: %s", res.status,
      tostring(message or "unreadable body"))
  end
  return data
end

local function create_intent(ctx, payment)
  return call(ctx, "POST", "/v1/payment_intents", form({
    { "amount", payment.amount },
    { "currency", payment.currency:lower() },
    { "metadata[payment_id]", payment.id },
    { "metadata[booking_id]", payment.booking_id },
    { "description", payment.description or ("Booking " .. payment.booking_id) },
  }), payment.idempotency_key)
end

function _M.create(ctx, payment)
  local pi, err = create_intent(ctx, payment)
  if not pi then
    return nil, err
  end
  if type(pi.id) ~= "string" or type(pi.client_secret) ~= "string" then
    return nil, "stripe answered without an intent id or client_secret"
  end
  local next_action = {
    type = "stripe_confirm_card",
    payment_intent = pi.id,
    client_secret = pi.client_secret,
  }
  if ctx.config.publishable_key ~= "" then
    next_action.publishable_key = ctx.config.publishable_key
  end
  return { status = "pending", provider_ref = pi.id, next_action = next_action }
end

-- Signatures ---------------------------------------------------------------------------------

-- _M.parse_signature("t=1,v1=a,v1=b") -> 1, { "a", "b" } | nil
function _M.parse_signature(header)
  if type(header) ~= "string" then
    return nil
  end
  local t, sigs = nil, {}
  for item in header:gmatch("[^,]+") do
    local k, v = item:match("^%s*([^=%s]+)=(%S*)%s*$")
    if k == "t" then
      t = math.tointeger(tonumber(v))
    elseif k == "v1" and v ~= "" then
      sigs[#sigs + 1] = v
    end
  end
  if not t or #sigs == 0 then
    return nil
  end
  return t, sigs
end

-- _M.verify(crypto, secret, header, raw_body, now, tolerance) -> true | nil, reason
function _M.verify(crypto, secret, header, raw_body, now, tolerance)
  if header == nil or header == "" then
    return nil, "missing Stripe-Signature header"
  end
  local t, sigs = _M.parse_signature(header)
  if not t then
    return nil, "malformed Stripe-Signature header"
  end
  if math.abs(now - t) > tolerance then
    return nil, "Stripe-Signature timestamp outside the tolerance"
  end
  local expected = crypto.hmac_sha256(secret, t .. "." .. raw_body)
  local ok = false
  for _, sig in ipairs(sigs) do
    -- every candidate is compared, so the time taken says nothing about which matched
    if crypto.equal(expected, sig:lower()) then
      ok = true
    end
  end
  if not ok then
    return nil, "no Stripe-Signature matches"
  end
  return true
end

local KINDS = {
  ["payment_intent.succeeded"] = "completed",
  ["payment_intent.payment_failed"] = "failed",
}

-- The event as kept with the payment: no client_secret.
local function redacted(event)
  local obj = event.data and event.data.object
  if type(obj) == "table" then
    obj.client_secret = nil
  end
  return event
end

function _M.webhook(ctx, request)
  local ok, why = _M.verify(ctx.crypto, ctx.config.webhook_secret,
    request.headers["stripe-signature"], request.raw_body, ctx.time.now(), ctx.config.tolerance)
  if not ok then
    return nil, why
  end
  local event = ctx.json.decode(request.raw_body)
  if type(event) ~= "table" or type(event.id) ~= "string" or type(event.type) ~= "string" then
    return nil, "not a Stripe event"
  end
  local kind = KINDS[event.type]
  local obj = type(event.data) == "table" and event.data.object or nil
  if not kind or type(obj) ~= "table" then
    return { kind = "ignored", event_id = event.id, payload = { id = event.id,
      type = event.type } }
  end
  local metadata = type(obj.metadata) == "table" and obj.metadata or {}
  local reason
  if kind == "failed" then
    local e = type(obj.last_payment_error) == "table" and obj.last_payment_error or {}
    reason = "card payment failed: " .. tostring(e.message or e.code or "declined")
  end
  return {
    kind = kind,
    event_id = event.id,
    payment_id = metadata.payment_id,
    provider_ref = obj.id,
    amount = math.tointeger(obj.amount),
    currency = type(obj.currency) == "string" and obj.currency or nil,
    reason = reason,
    payload = redacted(event),
    response = { received = true },
  }
end

-- Asking before failing ----------------------------------------------------------------------

function _M.status(ctx, payment)
  local id = payment.provider_ref
  if not id then
    -- The create call never answered: the same Idempotency-Key answers the same intent.
    local pi, err = create_intent(ctx, payment)
    if not pi then
      return nil, err
    end
    id = pi.id
  end
  local pi, err = call(ctx, "GET", "/v1/payment_intents/" .. urlencode(id))
  if not pi then
    return nil, err
  end
  if pi.status == "succeeded" then
    return { status = "completed", provider_ref = pi.id }
  end
  if pi.status ~= "canceled" then
    local cancelled, cerr = call(ctx, "POST", "/v1/payment_intents/" .. urlencode(id)
      .. "/cancel", "", payment.idempotency_key .. "-cancel")
    if not cancelled then
      -- It may have succeeded meanwhile: look once more.
      local again = call(ctx, "GET", "/v1/payment_intents/" .. urlencode(id))
      if again and again.status == "succeeded" then
        return { status = "completed", provider_ref = again.id }
      end
      return nil, cerr
    end
  end
  return { status = "failed", provider_ref = pi.id, reason = "not paid in time (intent "
    .. tostring(pi.status) .. ", cancelled)" }
end

function _M.refund(ctx, payment, amount)
  if not payment.provider_ref then
    return nil, "no payment intent to refund"
  end
  local refund, err = call(ctx, "POST", "/v1/refunds", form({
    { "payment_intent", payment.provider_ref },
    { "amount", amount },
  }), payment.idempotency_key .. "-refund")
  if not refund then
    return nil, err
  end
  return { status = "refunded", provider_ref = refund.id }
end

return _M
