-- plugins/payments/mpesa.lua: M-Pesa through Safaricom Daraja (Lipa na M-Pesa Online, the
-- STK push: the payer's phone asks for their PIN).
--
-- Token: GET /oauth/v1/generate?grant_type=client_credentials with Basic auth (consumer key
-- and secret); kept until shortly before it expires.
-- create: POST /mpesa/stkpush/v1/processrequest with Password = base64(shortcode .. passkey
-- .. timestamp), Timestamp YYYYMMDDHHmmss (Nairobi time), the amount in whole shillings, the
-- payer's phone (2547XXXXXXXX) and a CallBackURL carrying this payment's unguessable token.
-- The CheckoutRequestID becomes the payment's provider_request_ref.
-- webhook: Daraja does not sign callbacks. The token in the URL, the CheckoutRequestID, the
-- amount and the phone must all match the pending payment (payment_flow checks them).
-- ResultCode 0 completes it (MpesaReceiptNumber becomes provider_ref); any other code
-- (1032 cancelled by the user, 1037 phone unreachable, 1 insufficient funds, ...) fails it,
-- which frees the booking for a new attempt.
-- status: STK Push Query, asked by the expiry job before a payment is failed.
-- No refund(): M-Pesa reversals go through the Daraja reversal API with a security
-- credential; Spacer records the refund owed and the owner reverses it.
local _M = {
  name = "mpesa",
  version = "1.0.0",
  methods = { "mpesa", "m_pesa" },
  config = {
    consumer_key = { type = "string", required = true, secret = true },
    consumer_secret = { type = "string", required = true, secret = true },
    shortcode = { type = "string", required = true,
      description = "the paybill or till number (BusinessShortCode)" },
    passkey = { type = "string", required = true, secret = true,
      description = "the Lipa na M-Pesa Online passkey" },
    party_b = { type = "string", description = "PartyB; empty: the shortcode" },
    transaction_type = { type = "string", default = "CustomerPayBillOnline" },
    account_reference = { type = "string", default = "Spacer",
      description = "AccountReference shown to the payer (12 characters at most)" },
    base_url = { type = "string", default = "https://sandbox.safaricom.co.ke",
      check = function(v)
        if not v:match("^https?://[^/]+") then
          return "must be an http:// or https:// URL"
        end
      end },
    timeout = { type = "number", default = 10, description = "seconds per call to Daraja" },
  },
  -- An STK prompt lives about a minute; a missing callback is asked about after three.
  pending_timeout = 180,
}

local format = string.format

-- Tokens by consumer key: { value, expires } (per worker; one generation's life).
local tokens = {}

local function base(ctx)
  return (ctx.config.base_url:gsub("/+$", ""))
end

local function token(ctx)
  local key = ctx.config.consumer_key
  local now = ctx.time.now()
  local cached = tokens[key]
  if cached and cached.expires > now then
    return cached.value
  end
  local res, err = ctx.http.request({
    method = "GET",
    url = base(ctx) .. "/oauth/v1/generate?grant_type=client_credentials",
    headers = { ["Authorization"] = "Basic "
      .. ctx.crypto.base64_encode(key .. ":" .. ctx.config.consumer_secret) },
    timeout = ctx.config.timeout,
  })
  if not res then
    return nil, err
  end
  local data = ctx.json.decode(res.body or "")
  if res.status ~= 200 or type(data) ~= "table" or type(data.access_token) ~= "string" then
    return nil, format("daraja token request answered %d", res.status)
  end
  local lifetime = tonumber(data.expires_in) or 3599
  tokens[key] = { value = data.access_token, expires = now + math.max(lifetime - 60, 1) }
  return data.access_token
end

-- One authorised JSON call -> decoded body | nil, err
local function call(ctx, path, body)
  if not ctx.http then
    return nil, "outbound HTTP is not available"
  end
  local tok, err = token(ctx)
  if not tok then
    return nil, err
  end
  local res
  res, err = ctx.http.request({
    method = "POST",
    url = base(ctx) .. path,
    headers = { ["Authorization"] = "Bearer " .. tok, ["Content-Type"] = "application/json" },
    body = ctx.json.encode(body),
    timeout = ctx.config.timeout,
  })
  if not res then
    return nil, err
  end
  local data = ctx.json.decode(res.body or "")
  if type(data) ~= "table" then
    return nil, format("daraja answered %d with an unreadable body", res.status)
  end
  if res.status == 401 then
    tokens[ctx.config.consumer_key] = nil -- revoked early: fetch a new one next time
  end
  return data, nil, res.status
end

-- _M.timestamp(ctx_time, epoch) -> "YYYYMMDDHHmmss" in Nairobi time
function _M.timestamp(time, epoch)
  local f = time.fields(epoch, "Africa/Nairobi")
  return format("%04d%02d%02d%02d%02d%02d", f.year, f.month, f.day, f.hour, f.min, f.sec)
end

-- _M.password(crypto, shortcode, passkey, timestamp) -> base64(shortcode .. passkey .. ts)
function _M.password(crypto, shortcode, passkey, ts)
  return crypto.base64_encode(shortcode .. passkey .. ts)
end

-- _M.phone("0712 345 678") -> "254712345678" | nil
function _M.phone(text)
  if type(text) ~= "string" then
    return nil
  end
  local p = text:gsub("[%s%-()]", "")
  p = p:gsub("^%+", "")
  if p:match("^0[17]%d%d%d%d%d%d%d%d$") then
    p = "254" .. p:sub(2)
  elseif p:match("^[17]%d%d%d%d%d%d%d%d$") then
    p = "254" .. p
  end
  if not p:match("^254[17]%d%d%d%d%d%d%d%d$") then
    return nil
  end
  return p
end

-- Whole shillings, a Kenyan phone: refused before any row or call, never rounded.
function _M.validate(ctx, payment)
  local _ = ctx
  if payment.currency ~= "KES" then
    return nil, { payment_method = "M-Pesa takes Kenyan shillings (KES), not "
      .. tostring(payment.currency) }
  end
  if payment.amount % 100 ~= 0 then
    return nil, { amount = format("M-Pesa takes whole shillings: KES %d.%02d has cents; it is "
      .. "not rounded, pay it another way", payment.amount // 100, payment.amount % 100) }
  end
  local phone = _M.phone(payment.phone)
  if not phone then
    return nil, { phone = "an M-Pesa phone number is required: 2547XXXXXXXX or 07XXXXXXXX" }
  end
  return { phone = phone }
end

local function stk_auth(ctx)
  local ts = _M.timestamp(ctx.time, ctx.time.now())
  return ts, _M.password(ctx.crypto, ctx.config.shortcode, ctx.config.passkey, ts)
end

function _M.create(ctx, payment)
  local ts, password = stk_auth(ctx)
  local shortcode = ctx.config.shortcode
  local party_b = ctx.config.party_b ~= "" and ctx.config.party_b or shortcode
  local data, err, status = call(ctx, "/mpesa/stkpush/v1/processrequest", {
    BusinessShortCode = shortcode,
    Password = password,
    Timestamp = ts,
    TransactionType = ctx.config.transaction_type,
    Amount = payment.amount // 100,
    PartyA = payment.phone,
    PartyB = party_b,
    PhoneNumber = payment.phone,
    CallBackURL = payment.callback_url,
    AccountReference = ctx.config.account_reference:sub(1, 12),
    TransactionDesc = "Booking " .. payment.booking_id,
  })
  if not data then
    return nil, err
  end
  if tostring(data.ResponseCode) ~= "0" or type(data.CheckoutRequestID) ~= "string" then
    return nil, format("daraja refused the STK push (%s): %s", tostring(status),
      tostring(data.errorMessage or data.ResponseDescription or "no reason"))
  end
  return {
    status = "pending",
    provider_request_ref = data.CheckoutRequestID,
    next_action = {
      type = "mpesa_stk_push",
      message = data.CustomerMessage or "Check your phone and enter your M-Pesa PIN",
      checkout_request_id = data.CheckoutRequestID,
    },
  }
end

local function masked(phone)
  local s = tostring(phone)
  return ("*"):rep(math.max(#s - 3, 0)) .. s:sub(-3)
end

local function as_text(v)
  if math.type(v) == "float" and v == math.floor(v) then
    return format("%.0f", v)
  end
  return tostring(v)
end

function _M.webhook(ctx, request)
  local _ = ctx
  local tok = request.query and request.query.token
  if type(tok) ~= "string" or tok == "" then
    return nil, "callback token missing"
  end
  local body = ctx.json.decode(request.raw_body or "")
  local cb = type(body) == "table" and type(body.Body) == "table" and body.Body.stkCallback
  if type(cb) ~= "table" or type(cb.CheckoutRequestID) ~= "string" then
    return nil, "not an STK callback"
  end
  local code = math.tointeger(tonumber(cb.ResultCode))
  if code == nil then
    return nil, "STK callback without a ResultCode"
  end
  local ev = {
    event_id = "stk:" .. cb.CheckoutRequestID,
    token = tok,
    require_token = true,
    provider_request_ref = cb.CheckoutRequestID,
    response = { ResultCode = 0, ResultDesc = "Accepted" },
  }
  local items = {}
  local meta = type(cb.CallbackMetadata) == "table" and cb.CallbackMetadata.Item or {}
  for _, item in ipairs(type(meta) == "table" and meta or {}) do
    if type(item) == "table" and item.Name then
      items[item.Name] = item.Value
    end
  end
  local kept = { MerchantRequestID = cb.MerchantRequestID,
    CheckoutRequestID = cb.CheckoutRequestID, ResultCode = code, ResultDesc = cb.ResultDesc,
    Amount = items.Amount, MpesaReceiptNumber = items.MpesaReceiptNumber,
    TransactionDate = items.TransactionDate }
  if items.PhoneNumber then
    kept.PhoneNumber = masked(as_text(items.PhoneNumber))
  end
  ev.payload = kept
  if code == 0 then
    local amount = tonumber(items.Amount)
    if not amount or type(items.MpesaReceiptNumber) ~= "string" then
      return nil, "a successful STK callback without Amount or MpesaReceiptNumber"
    end
    ev.kind = "completed"
    ev.amount = math.tointeger(amount * 100) or -1
    ev.provider_ref = items.MpesaReceiptNumber
    if items.PhoneNumber then
      ev.phone = as_text(items.PhoneNumber)
    end
  else
    ev.kind = "failed"
    ev.reason = format("M-Pesa: %s (ResultCode %d)", tostring(cb.ResultDesc or "failed"), code)
  end
  return ev
end

function _M.status(ctx, payment)
  if not payment.provider_request_ref then
    return { status = "unknown", reason = "the STK push never answered" }
  end
  local ts, password = stk_auth(ctx)
  local data, err = call(ctx, "/mpesa/stkpushquery/v1/query", {
    BusinessShortCode = ctx.config.shortcode,
    Password = password,
    Timestamp = ts,
    CheckoutRequestID = payment.provider_request_ref,
  })
  if not data then
    return nil, err
  end
  local code = data.ResultCode
  if code == nil then
    -- "The transaction is being processed" and friends: no answer yet.
    return { status = "pending", reason = tostring(data.errorMessage or "no result yet") }
  end
  if tostring(code) == "0" then
    return { status = "completed" }
  end
  return { status = "failed", reason = format("M-Pesa: %s (ResultCode %s)",
    tostring(data.ResultDesc or "failed"), tostring(code)) }
end

return _M
