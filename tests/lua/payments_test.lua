-- payments_test.lua: the pure parts of payments: Stripe's signature check, the M-Pesa STK
-- password, timestamp and phone numbers, the plugin interface check, and the invoice's
-- JSON and HTML (escaping included).
local stripe = require("plugins.payments.stripe")
local mpesa = require("plugins.payments.mpesa")
local manual = require("plugins.payments.manual")
local payments = require("lib.payments")
local invoice = require("invoice")

local crypto = spacer.crypto

local SECRET = "whsec_test"
local BODY = '{"id":"evt_1","type":"payment_intent.succeeded"}'

local function sign(t, body, secret)
  return crypto.hmac_sha256(secret or SECRET, t .. "." .. body)
end

test("a Stripe signature made with the endpoint secret verifies", function()
  local t = 1700000000
  local header = "t=" .. t .. ",v1=" .. sign(t, BODY)
  assert_true(stripe.verify(crypto, SECRET, header, BODY, t + 10, 300))
end)

test("any of several v1 signatures may match (a secret being rolled)", function()
  local t = 1700000000
  local header = string.format("t=%d,v1=%s,v1=%s,v0=abc", t, sign(t, BODY, "whsec_old"),
    sign(t, BODY))
  assert_true(stripe.verify(crypto, SECRET, header, BODY, t, 300))
end)

test("forged, missing, malformed and stale Stripe signatures are refused", function()
  local t = 1700000000
  local cases = {
    { nil, "missing" },
    { "", "missing" },
    { "v1=" .. sign(t, BODY), "malformed" },
    { "t=" .. t, "malformed" },
    { "t=abc,v1=" .. sign(t, BODY), "malformed" },
    { "t=" .. t .. ",v1=" .. sign(t, BODY, "whsec_other"), "no Stripe%-Signature matches" },
    { "t=" .. t .. ",v1=" .. sign(t, BODY .. " "), "no Stripe%-Signature matches" },
    { "t=" .. (t + 1) .. ",v1=" .. sign(t, BODY), "no Stripe%-Signature matches" },
    { "t=" .. (t - 301) .. ",v1=" .. sign(t - 301, BODY), "tolerance" },
    { "t=" .. (t + 301) .. ",v1=" .. sign(t + 301, BODY), "tolerance" },
  }
  for i, c in ipairs(cases) do
    local ok, why = stripe.verify(crypto, SECRET, c[1], BODY, t, 300)
    assert_nil(ok, "case " .. i)
    assert_true(why:find(c[2]) ~= nil, "case " .. i .. ": " .. tostring(why))
  end
end)

test("the M-Pesa password is base64(shortcode .. passkey .. timestamp)", function()
  -- Safaricom's sandbox example
  local pw = mpesa.password(crypto, "174379",
    "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919", "20160216165627")
  assert_eq("MTc0Mzc5YmZiMjc5ZjlhYTliZGJjZjE1OGU5N2RkNzFhNDY3Y2QyZTBjODkzMDU5YjEwZjc4ZTZiNzJhZGExZWQyYzkxOTIwMTYwMjE2MTY1NjI3", pw)
end)

test("the M-Pesa timestamp is YYYYMMDDHHmmss in Nairobi time", function()
  assert_eq("20261201130000", mpesa.timestamp(spacer.time, spacer.time.parse("2026-12-01T10:00:00Z")))
end)

test("M-Pesa phone numbers are normalised to 2547XXXXXXXX or refused", function()
  assert_eq("254712345678", mpesa.phone("0712345678"))
  assert_eq("254712345678", mpesa.phone("+254 712 345 678"))
  assert_eq("254712345678", mpesa.phone("254712345678"))
  assert_eq("254112345678", mpesa.phone("0112345678"))
  assert_eq("254712345678", mpesa.phone("712345678"))
  assert_nil(mpesa.phone("12345"))
  assert_nil(mpesa.phone("0812345678"))
  assert_nil(mpesa.phone(nil))
end)

test("M-Pesa refuses cents instead of rounding, other currencies and missing phones", function()
  local ok, fields = mpesa.validate({}, { amount = 116050, currency = "KES", phone = "0712345678" })
  assert_nil(ok)
  assert_true(fields.amount:find("whole shillings") ~= nil, fields.amount)
  ok, fields = mpesa.validate({}, { amount = 116000, currency = "USD", phone = "0712345678" })
  assert_nil(ok)
  assert_true(fields.payment_method ~= nil)
  ok, fields = mpesa.validate({}, { amount = 116000, currency = "KES" })
  assert_nil(ok)
  assert_true(fields.phone ~= nil)
  ok = mpesa.validate({}, { amount = 116000, currency = "KES", phone = "0712345678" })
  assert_eq("254712345678", ok.phone)
end)

test("the shipped plugins pass the interface check; broken ones are named", function()
  for _, p in ipairs({ manual, stripe, mpesa }) do
    assert_nil(payments.check_plugin(p, "x.lua"))
  end
  local broken = { name = "x", methods = {}, config = {}, create = function() end }
  assert_eq("x.lua: missing function webhook(ctx, ...)", payments.check_plugin(broken, "x.lua"))
  broken.webhook = function() end
  broken.config = { key = { type = "list" } }
  assert_true(payments.check_plugin(broken, "x.lua"):find("config.key") ~= nil)
  assert_true(payments.check_plugin(42, "x.lua"):find("must return a table") ~= nil)
end)

test("the development configuration takes every web app method by hand", function()
  for _, m in ipairs({ "credit_card", "paypal", "mpesa", "manual", "cash" }) do
    assert_eq("manual", payments.resolve(m).name, m)
  end
  assert_nil(payments.resolve("bitcoin"))
end)

local ROW = {
  id = 7, number = "INV-2026-000042", status = "paid", booking_id = 3, payment_id = 9,
  client_id = 5, issued_at = "2026-12-01T10:00:00+03:00", paid_at = "2026-12-01T10:05:00+03:00",
  currency = "KES", subtotal_minor = 100000, tax_minor = 16000, total_minor = 116000,
  tax_rate_percent = 16.0,
  lines = { { code = "hours", description = "2 hours × KES 500.00 <b>", quantity = 2,
    unit_amount = 50000, amount = 100000 } },
  seller = { id = 2, name = "O'Brien & <Sons>", email = "o@example.com" },
  buyer = { id = 5, name = "Client \"One\"", email = "c@example.com" },
  space = { id = 1, title = "<script>x</script>", location = "Nairobi" },
}

test("invoice numbers are INV-YYYY-NNNNNN", function()
  assert_eq("INV-2026-000001", invoice.number(2026, 1))
  assert_eq("INV-2027-123456", invoice.number(2027, 123456))
end)

test("the invoice JSON shows major units and its printable page", function()
  local j = invoice.json(ROW)
  assert_eq(1160.0, j.total)
  assert_eq(160.0, j.tax)
  assert_eq(500.0, j.lines[1].unit_amount)
  assert_eq("/api/payments/invoices/7/html", j.invoice_url)
  assert_eq("O'Brien & <Sons>", j.seller.name)
end)

test("the invoice page escapes every value", function()
  local html = invoice.html(ROW)
  assert_true(html:find("<script>x", 1, true) == nil)
  assert_true(html:find("&lt;script&gt;x&lt;/script&gt;", 1, true) ~= nil)
  assert_true(html:find("O&#39;Brien &amp; &lt;Sons&gt;", 1, true) ~= nil)
  assert_true(html:find("Client &quot;One&quot;", 1, true) ~= nil)
  assert_true(html:find("KES 500.00 &lt;b&gt;", 1, true) ~= nil)
  assert_true(html:find("KES 1,160.00", 1, true) ~= nil)
  assert_true(html:find("Tax (16%)", 1, true) ~= nil)
  assert_eq("&amp;&lt;&gt;&quot;&#39;", invoice.escape("&<>\"'"))
end)

test("an invoice takes lines and tax from the booking's breakdown", function()
  local parts = invoice.from_breakdown({ lines = { { code = "hours", description = "d",
    quantity = 2, unit_amount = 50000, amount = 100000 } }, subtotal = 100000, tax = 16000,
    total = 116000, tax_rate_percent = 16 })
  assert_eq(1, #parts.lines)
  assert_eq(116000, parts.total)
  assert_eq(16, parts.tax_rate_percent)
end)

local flow = require("payment_flow")

test("the cleanup job removes idempotency keys older than 24 hours, and only those", function()
  local user = spacer.db.one("SELECT id FROM users ORDER BY id LIMIT 1").id
  local old, young = "old-" .. spacer.crypto.random_hex(8), "young-" .. spacer.crypto.random_hex(8)
  spacer.db.exec([[INSERT INTO idempotency_keys (client_id, key, method, path, request_hash,
      created_at) VALUES ($1, $2, 'POST', 'x', 'h', now() - interval '25 hours'),
      ($1, $3, 'POST', 'x', 'h', now() - interval '23 hours')]], user, old, young)
  flow.delete_old_keys()
  local left = spacer.db.query("SELECT key FROM idempotency_keys WHERE key = ANY (ARRAY[$1, $2])",
    old, young)
  assert_eq(1, #left)
  assert_eq(young, left[1].key)
  spacer.db.exec("DELETE FROM idempotency_keys WHERE key = $1", young)
end)
