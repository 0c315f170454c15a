-- schema_test.lua: lib/schema.lua — request bodies and query strings.
local schema = require("lib.schema")

local NULL = spacer.json.null

-- validate(spec, input, opts) must fail with exactly these fields
local function fails(spec, input, opts, expected)
  local cleaned, fields = schema.validate(spec, input, opts)
  assert_nil(cleaned, "cleaned")
  assert_eq(expected, fields)
end

-- one field `v` of the given rule: the cleaned value, or nil and its message
local function one(rule, value, opts)
  local cleaned, fields = schema.validate({ v = rule }, { v = value }, opts)
  if cleaned then
    return cleaned.v, nil
  end
  return nil, fields.v
end

local SPACE = {
  id = { readonly = true },
  owner_id = { readonly = true },
  created_at = { readonly = true },
  title = { type = "string", required = true, max_length = 200 },
  capacity = { type = "integer", required = true, min = 1 },
  price_per_hour = { type = "money", required = true, min = 0 },
  is_available = { type = "boolean", default = true },
}

test("a valid body is cleaned; unknown fields are dropped", function()
  local cleaned, fields = schema.validate(SPACE, {
    title = "  Garden Loft ",
    capacity = 40,
    price_per_hour = 500,
    colour = "blue",
  })
  assert_nil(fields)
  assert_eq({ title = "Garden Loft", capacity = 40, price_per_hour = 50000, is_available = true },
    cleaned)
end)

test("numbers as strings, as the web app's forms send them", function()
  local cleaned = schema.validate(SPACE, {
    title = "Loft",
    capacity = "12",
    price_per_hour = "500.00",
    is_available = "false",
  })
  assert_eq({ title = "Loft", capacity = 12, price_per_hour = 50000, is_available = false },
    cleaned)
  assert_eq("integer", math.type(cleaned.capacity))
end)

test("every failing field is reported at once", function()
  fails(SPACE, { capacity = "many", price_per_hour = -1, is_available = "maybe" }, nil, {
    title = "is required",
    capacity = "must be an integer",
    price_per_hour = "must be at least 0",
    is_available = "must be true or false",
  })
end)

test("an empty body counts as {}", function()
  fails(SPACE, nil, nil, {
    title = "is required",
    capacity = "is required",
    price_per_hour = "is required",
  })
  local cleaned, fields = schema.validate({ reason = { type = "string" } }, nil)
  assert_nil(fields)
  assert_eq({}, cleaned)
end)

test("a body that is not an object", function()
  local bodies = { "text", 12, true, NULL, spacer.json.array({}), { "a", "b" }, { [1] = "x", y = 2 } }
  for i, body in ipairs(bodies) do
    local cleaned, fields = schema.validate({ reason = { type = "string" } }, body)
    assert_nil(cleaned, "body " .. i)
    assert_eq({ _body = "must be a JSON object" }, fields, "body " .. i)
  end
end)

test("read-only fields are refused, or dropped on the web app's paths", function()
  local body = { id = 9, owner_id = "7", created_at = "2020-01-01", title = "Loft",
    capacity = 10, price_per_hour = 100 }
  fails(SPACE, body, nil, {
    id = "may not be set",
    owner_id = "may not be set",
    created_at = "may not be set",
  })
  fails(SPACE, { id = NULL, title = "Loft", capacity = 1, price_per_hour = 1 }, nil,
    { id = "may not be set" })
  local cleaned, fields = schema.validate(SPACE, body, { compat = true })
  assert_nil(fields)
  assert_eq({ title = "Loft", capacity = 10, price_per_hour = 10000, is_available = true },
    cleaned)
end)

test("compat does not relax anything else", function()
  fails(SPACE, { id = 1, title = "Loft", capacity = "0", price_per_hour = "x" },
    { compat = true },
    { capacity = "must be at least 1", price_per_hour = "must be an amount" })
end)

test("partial (PATCH): required is not enforced and no defaults are added", function()
  local cleaned, fields = schema.validate(SPACE, { capacity = "20" }, { partial = true })
  assert_nil(fields)
  assert_eq({ capacity = 20 }, cleaned)
  cleaned = schema.validate(SPACE, nil, { partial = true })
  assert_eq({}, cleaned)
  fails(SPACE, { capacity = 0, title = "   " }, { partial = true },
    { capacity = "must be at least 1", title = "is required" })
  fails(SPACE, { title = NULL }, { partial = true }, { title = "must not be null" })
  fails(SPACE, { id = 3 }, { partial = true }, { id = "may not be set" })
end)

test("nullable fields keep null; others treat it as missing", function()
  local spec = {
    image = { type = "string", nullable = true },
    notes = { type = "string" },
    guests = { type = "integer", default = 1 },
    title = { type = "string", required = true },
  }
  local cleaned, fields = schema.validate(spec, { image = NULL, notes = NULL, guests = NULL,
    title = "Loft" })
  assert_nil(fields)
  assert_true(cleaned.image == NULL, "image is json null")
  assert_nil(cleaned.notes)
  assert_eq(1, cleaned.guests)
  assert_eq("Loft", cleaned.title)
  fails(spec, { title = NULL }, nil, { title = "is required" })
  assert_eq("x.png", one({ type = "string", nullable = true }, "x.png"))
  assert_true(schema.NULL == NULL, "schema.NULL is spacer.json.null")
end)

test("strings: trimmed, lower-cased on request, lengths in characters", function()
  assert_eq("Loft", one({ type = "string" }, "  Loft\n"))
  assert_eq("  Loft ", one({ type = "string", trim = false }, "  Loft "))
  assert_eq("nairobi", one({ type = "string", lower = true }, " NAIROBI "))
  assert_eq("", one({ type = "string" }, "   "))
  assert_eq("Café", one({ type = "string", max_length = 4 }, "Café"))
  assert_eq("日本語", one({ type = "string", min_length = 3, max_length = 3 }, "日本語"))
  local cases = {
    { { type = "string", max_length = 100 }, string.rep("a", 101), "must be at most 100 characters" },
    { { type = "string", max_length = 1 }, "ab", "must be at most 1 character" },
    { { type = "string", min_length = 8 }, "short", "must be at least 8 characters" },
    { { type = "string", max_length = 3 }, "Cafés", "must be at most 3 characters" },
    { { type = "string" }, 12, "must be a string" },
    { { type = "string" }, true, "must be a string" },
    { { type = "string" }, { "a" }, "must be a string" },
    { { type = "string" }, "caf\xe9", "must be valid UTF-8" },
    { { type = "string" }, "\xff\xfe", "must be valid UTF-8" },
    { { type = "string" }, "\xed\xa0\x80", "must be valid UTF-8" }, -- a UTF-16 surrogate
    { { type = "string", required = true }, " \t ", "is required" },
  }
  for i, c in ipairs(cases) do
    local value, err = one(c[1], c[2])
    assert_nil(value, "case " .. i)
    assert_eq(c[3], err, "case " .. i)
  end
end)

test("trimming is linear on a long run of spaces", function()
  local value = "a" .. string.rep(" ", 200000) .. "b" .. string.rep(" ", 200000)
  assert_eq(200002, #one({ type = "string" }, value))
end)

test("integers", function()
  local good = {
    { 12, 12 }, { "12", 12 }, { " 12 ", 12 }, { "-3", -3 }, { "+4", 4 }, { 12.0, 12 },
    { "12.0", 12 }, { 0, 0 }, { "007", 7 },
  }
  for _, c in ipairs(good) do
    local value, err = one({ type = "integer" }, c[1])
    assert_nil(err, tostring(c[1]))
    assert_eq(c[2], value, tostring(c[1]))
    assert_eq("integer", math.type(value), tostring(c[1]))
  end
  local bad = { 12.5, "12.5", "12abc", "abc", "0x10", "1e3", "1,000", true, { 1 }, "inf", "nan" }
  for _, v in ipairs(bad) do
    local value, err = one({ type = "integer" }, v)
    assert_nil(value, tostring(v))
    assert_eq("must be an integer", err, tostring(v))
  end
  local _, err = one({ type = "integer" }, "99999999999999999999")
  assert_eq("must be an integer", err)
  _, err = one({ type = "integer" }, 2 ^ 53 + 2)
  assert_eq("is too large", err)
  _, err = one({ type = "integer" }, string.rep("1", 100))
  assert_eq("must be an integer", err)
end)

test("integer and number bounds", function()
  local cases = {
    { { type = "integer", min = 1 }, 0, "must be at least 1" },
    { { type = "integer", min = 1 }, "-5", "must be at least 1" },
    { { type = "integer", max = 100 }, 101, "must be at most 100" },
    { { type = "number", min = 0.5 }, "0.25", "must be at least 0.5" },
    { { type = "number", max = 10 }, 10.5, "must be at most 10" },
  }
  for i, c in ipairs(cases) do
    local value, err = one(c[1], c[2])
    assert_nil(value, "case " .. i)
    assert_eq(c[3], err, "case " .. i)
  end
  assert_eq(1, one({ type = "integer", min = 1, max = 1 }, "1"))
  assert_eq(100, one({ type = "integer", max = 100 }, 100))
end)

test("numbers", function()
  assert_eq(12.5, one({ type = "number" }, "12.5"))
  assert_eq(12.5, one({ type = "number" }, 12.5))
  assert_eq(7, one({ type = "number" }, 7))
  assert_eq(-0.25, one({ type = "number" }, " -0.25 "))
  for _, v in ipairs({ "abc", "1e5", "", true, 0 / 0, math.huge }) do
    local value, err = one({ type = "number", required = true }, v)
    assert_nil(value, tostring(v))
    assert_eq(v == "" and "is required" or "must be a number", err, tostring(v))
  end
end)

test("a blank form value in a numeric field counts as missing", function()
  local spec = { guests = { type = "integer", default = 1 }, price = { type = "money" } }
  local cleaned, fields = schema.validate(spec, { guests = "", price = "  " })
  assert_nil(fields)
  assert_eq({ guests = 1 }, cleaned)
  fails({ capacity = { type = "integer", required = true } }, { capacity = "" }, nil,
    { capacity = "is required" })
end)

test("money: integer minor units in the body's currency", function()
  assert_eq(50050, one({ type = "money" }, 500.5))
  assert_eq(50050, one({ type = "money" }, "500.50"))
  assert_eq(50000, one({ type = "money" }, 500))
  assert_eq(500, one({ type = "money" }, 500, { currency = "UGX" }))
  assert_eq(500, one({ type = "money", currency = "JPY" }, "500"))
  local spec = { currency = { type = "string" }, price = { type = "money", currency_field = "currency" } }
  assert_eq(500, schema.validate(spec, { currency = "ugx", price = "500" }).price)
  assert_eq(50000, schema.validate(spec, { price = "500" }).price)
  local by_field = { price = { type = "money", currency_field = "currency" } }
  assert_eq(50000, schema.validate(by_field, { currency = 5, price = "500" }).price)
  assert_eq(50000, schema.validate(by_field, { currency = "K", price = "500" }).price)
  assert_eq(500, schema.validate(by_field, { currency = " UGX ", price = "500" }).price)
  local cases = {
    { { type = "money" }, 500.123, "must have at most 2 decimal places" },
    { { type = "money" }, "12 KES", "must be an amount" },
    { { type = "money" }, true, "must be an amount" },
    { { type = "money" }, { 5 }, "must be an amount" },
    { { type = "money", min = 0 }, "-0.01", "must be at least 0" },
    { { type = "money", min = 100 }, "0.99", "must be at least 1" },
    { { type = "money", min = 150 }, "1.49", "must be at least 1.5" },
    { { type = "money", max = 100000000 }, "1000000.01", "must be at most 1000000" },
    { { type = "money", currency = "UGX" }, 500.5, "must be a whole amount" },
  }
  for i, c in ipairs(cases) do
    local value, err = one(c[1], c[2])
    assert_nil(value, "case " .. i)
    assert_eq(c[3], err, "case " .. i)
  end
end)

test("booleans", function()
  local cases = { { true, true }, { false, false }, { "true", true }, { "false", false },
    { " TRUE ", true }, { "False", false } }
  for _, c in ipairs(cases) do
    assert_eq(c[2], one({ type = "boolean" }, c[1]), tostring(c[1]))
  end
  for _, v in ipairs({ "yes", "1", 1, 0, "on", {} }) do
    local value, err = one({ type = "boolean" }, v)
    assert_nil(value, tostring(v))
    assert_eq("must be true or false", err, tostring(v))
  end
  assert_eq(false, schema.validate({ b = { type = "boolean", default = false } }, {}).b)
end)

test("enum", function()
  local rule = { type = "string", enum = { "client", "owner" }, default = "client" }
  assert_eq("owner", one(rule, " owner "))
  assert_eq("client", schema.validate({ role = rule }, {}).role)
  local value, err = one(rule, "admin")
  assert_nil(value)
  assert_eq("must be one of: client, owner", err)
  value, err = one(rule, "Owner")
  assert_nil(value)
  assert_eq("must be one of: client, owner", err)
  assert_eq("owner", one({ type = "string", lower = true, enum = { "client", "owner" } }, "Owner"))
  value, err = one({ type = "integer", enum = { 1, 2, 3 } }, "4")
  assert_nil(value)
  assert_eq("must be one of: 1, 2, 3", err)
  assert_eq(2, one({ type = "integer", enum = { 1, 2, 3 } }, "2"))
end)

test("email: trimmed, lower-cased, checked", function()
  local good = {
    { " Jane.Doe@Example.COM ", "jane.doe@example.com" },
    { "a+tag@sub.example.co.ke", "a+tag@sub.example.co.ke" },
    { "o'brien@example.ie", "o'brien@example.ie" },
    { "x_y-z@my-host.io", "x_y-z@my-host.io" },
  }
  for _, c in ipairs(good) do
    assert_eq(c[2], one({ type = "email" }, c[1]), c[1])
  end
  local bad = {
    "plainaddress", "@example.com", "jane@", "jane@example", "jane@@example.com",
    "ja ne@example.com", "jane@exa mple.com", "jane@example.c", "jane@example.123",
    ".jane@example.com", "jane.@example.com", "ja..ne@example.com", "jane@-example.com",
    "jane@example-.com", "jane@example..com", "jane@.example.com", "jane@example.com.",
    "jané@example.com", "jane@exämple.com", "jane<x>@example.com",
    string.rep("a", 65) .. "@example.com",
    "jane@" .. string.rep("a", 245) .. ".com",
    "jane@" .. string.rep("a", 64) .. ".com",
  }
  for _, v in ipairs(bad) do
    local value, err = one({ type = "email" }, v)
    assert_nil(value, v)
    assert_eq("must be a valid email address", err, v)
  end
  local _, err = one({ type = "email" }, 42)
  assert_eq("must be a string", err)
  _, err = one({ type = "email", required = true }, "  ")
  assert_eq("is required", err)
end)

test("datetime: the shape is checked, the string kept", function()
  local good = {
    "2026-12-01T10:00", "2026-12-01T10:00:30", "2026-12-01T10:00:30.123",
    "2026-12-01T10:00Z", "2026-12-01T10:00:00Z", "2026-12-01T10:00:00+03:00",
    "2026-12-01T10:00-05:30", "2026-12-01T10:00+0300", "2026-12-01 10:00",
  }
  for _, v in ipairs(good) do
    assert_eq(v, one({ type = "datetime" }, v), v)
  end
  assert_eq("2026-12-01T10:00", one({ type = "datetime" }, " 2026-12-01T10:00 "))
  local bad = {
    "2026-12-01", "tomorrow", "2026-13-01T10:00", "2026-12-32T10:00", "2026-12-01T24:00",
    "2026-12-01T10:60", "2026-12-01T10", "2026-12-01T10:00+3", "2026-12-01T10:00 EAT",
    "01/12/2026 10:00", "2026-12-01T10:00:61",
  }
  for _, v in ipairs(bad) do
    local value, err = one({ type = "datetime" }, v)
    assert_nil(value, v)
    assert_eq("must be a date and time like 2026-12-01T10:00", err, v)
  end
  local _, err = one({ type = "datetime" }, 1767250800)
  assert_eq("must be a string", err)
end)

test("arrays: items, lengths, comma-separated strings", function()
  local rule = { type = "array", items = { type = "string", max_length = 10 }, max_length = 3 }
  local value = one(rule, { " wifi ", "projector" })
  assert_eq({ "wifi", "projector" }, value)
  assert_true(spacer.json.is_array(value), "marked as a JSON array")
  local empty = one(rule, spacer.json.array({}))
  assert_eq({}, empty)
  assert_true(spacer.json.is_array(empty), "an empty array stays an array")
  assert_eq({ "wifi", "projector" }, one({ type = "array", split = "," }, "wifi, projector,,"))
  assert_eq({}, one({ type = "array", split = "," }, ""))
  assert_eq({ 1, 2 }, one({ type = "array", items = { type = "integer" } }, { "1", 2 }))
  local cases = {
    { rule, "wifi", "must be an array" },
    { rule, { a = 1 }, "must be an array" },
    { rule, { "a", "b", "c", "d" }, "must be at most 3 items" },
    { { type = "array", min_length = 1 }, {}, "must be at least 1 item" },
    { rule, { "wifi", 5 }, "item 2 must be a string" },
    { rule, { "wifi", "a very long amenity" }, "item 2 must be at most 10 characters" },
    { rule, { NULL }, "item 1 must not be null" },
    { { type = "array", items = { type = "integer", min = 1 } }, { 1, "0" }, "item 2 must be at least 1" },
  }
  for i, c in ipairs(cases) do
    local v, err = one(c[1], c[2])
    assert_nil(v, "case " .. i)
    assert_eq(c[3], err, "case " .. i)
  end
end)

test("custom checks run on the cleaned value", function()
  local rule = { type = "string", check = function(v)
    if v ~= "Africa/Nairobi" then
      return "must be a known time zone"
    end
  end }
  assert_eq("Africa/Nairobi", one(rule, " Africa/Nairobi "))
  local _, err = one(rule, "Mars/Olympus")
  assert_eq("must be a known time zone", err)
end)

test("a field without a type takes any value", function()
  assert_eq({ 1, 2 }, one({}, { 1, 2 }))
  assert_eq("x", one({ required = true }, "x"))
end)

test("a mistake in the spec is a programming error", function()
  assert_error(function()
    schema.validate({ v = { type = "strnig" } }, {})
  end, "unknown type")
  assert_error(function()
    schema.validate({ v = "string" }, {})
  end, "must be a table")
end)

test("query strings", function()
  local spec = {
    q = { type = "string", max_length = 100 },
    min_capacity = { type = "integer", min = 1 },
    max_price_per_hour = { type = "money", min = 0 },
    status = { type = "string", enum = { "pending", "confirmed", "declined", "cancelled" } },
    available_from = { type = "datetime" },
  }
  local cleaned, fields = schema.query(spec, { q = " loft ", min_capacity = "10",
    max_price_per_hour = "1500.50", status = "pending", page = "2" })
  assert_nil(fields)
  assert_eq({ q = "loft", min_capacity = 10, max_price_per_hour = 150050, status = "pending" },
    cleaned)
  cleaned = schema.query(spec, { min_capacity = "", max_price_per_hour = "" })
  assert_eq({}, cleaned)
  cleaned = schema.query(spec, nil)
  assert_eq({}, cleaned)
  cleaned, fields = schema.query(spec, { min_capacity = "ten", status = "lost",
    available_from = "soon" })
  assert_nil(cleaned)
  assert_eq({
    min_capacity = "must be an integer",
    status = "must be one of: pending, confirmed, declined, cancelled",
    available_from = "must be a date and time like 2026-12-01T10:00",
  }, fields)
end)

test("page and per_page", function()
  local good = {
    { {}, 1, 20, 0 },
    { nil, 1, 20, 0 },
    { { page = "1" }, 1, 20, 0 },
    { { page = "3" }, 3, 20, 40 },
    { { page = "2", per_page = "50" }, 2, 50, 50 },
    { { per_page = "100" }, 1, 100, 0 },
    { { per_page = "1" }, 1, 1, 0 },
    { { page = "", per_page = "" }, 1, 20, 0 },
    { { page = " 4 " }, 4, 20, 60 },
  }
  for i, c in ipairs(good) do
    local page, per_page, offset = schema.page(c[1])
    assert_eq({ c[2], c[3], c[4] }, { page, per_page, offset }, "case " .. i)
  end
  local bad = {
    { { page = "0" }, { page = "must be at least 1" } },
    { { page = "-1" }, { page = "must be at least 1" } },
    { { page = "two" }, { page = "must be an integer" } },
    { { page = "1.5" }, { page = "must be an integer" } },
    { { per_page = "101" }, { per_page = "must be at most 100" } },
    { { per_page = "0" }, { per_page = "must be at least 1" } },
    { { page = "0", per_page = "1000" }, { page = "must be at least 1", per_page = "must be at most 100" } },
  }
  for i, c in ipairs(bad) do
    local page, fields = schema.page(c[1])
    assert_nil(page, "case " .. i)
    assert_eq(c[2], fields, "case " .. i)
  end
  local page, per_page, offset = schema.page({ per_page = "500" }, { max_per_page = 1000 })
  assert_eq({ 1, 500, 0 }, { page, per_page, offset })
  page, per_page = schema.page({}, { default_per_page = 50 })
  assert_eq(50, per_page)
end)
