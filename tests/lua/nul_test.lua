-- nul_test.lua: a NUL byte in a Lua string is never cut short where the string becomes a C
-- string (libpq parameters, bcrypt, JWT claims, time zones, module names): it raises or is
-- refused, and the validator refuses it with a message naming the field.
local db = spacer.db
local schema = require("lib.schema")

test("a database parameter with a NUL byte raises instead of being cut", function()
  assert_error(function()
    db.one("SELECT $1::text AS s", "T a\0b")
  end, "query parameter %$1 contains a NUL byte")
  assert_error(function()
    db.one("SELECT $1::int AS n, $2::text AS s", 1, "\0")
  end, "query parameter %$2 contains a NUL byte")
  assert_error(function()
    db.one("SELECT 1 AS n\0; SELECT 2")
  end, "contains a NUL byte")
  -- text without one goes through unchanged
  assert_eq("T ab", db.one("SELECT $1::text AS s", "T ab").s)
end)

test("a table parameter sent as JSON keeps the NUL escaped", function()
  local err = assert_error(function()
    db.one("SELECT $1::jsonb AS j", { title = "a\0b" })
  end)
  -- PostgreSQL refuses \u0000 in jsonb: an error, never a shortened value
  assert_true(type(err) == "table" and err.sqlstate ~= nil, "a database error")
  assert_eq('{"t":"a\\u0000b"}', spacer.json.encode({ t = "a\0b" }))
end)

test("passwords, JWT claims, time zones and module names refuse a NUL byte", function()
  assert_error(function() spacer.password.hash("secret\0tail") end, "contains a NUL byte")
  assert_error(function() spacer.password.verify("secret\0tail", nil) end,
    "contains a NUL byte")
  assert_error(function() spacer.jwt.issue(1, "admin\0client") end, "contains a NUL byte")
  assert_false(spacer.time.valid_zone("Africa/Nairobi\0junk"))
  local t, err = spacer.time.parse("2026-12-01T10:00\0junk", "Africa/Nairobi")
  assert_nil(t)
  assert_eq("contains a NUL byte", err)
  t, err = spacer.time.parse("2026-12-01T10:00", "Africa/Nairobi\0junk")
  assert_nil(t)
  assert_eq("contains a NUL byte", err)
  assert_error(function() spacer.time.format(0, "UTC\0junk") end, "contains a NUL byte")
  assert_error(function() spacer.time.fields(0, "UTC\0junk") end, "contains a NUL byte")
  assert_error(function() require("lib.schema\0junk") end, "contains a NUL byte")
  -- logging keeps the whole message (the NUL is written escaped); it does not raise
  spacer.log.info("a\0b")
end)

test("the validator refuses a NUL byte in any text field, naming it", function()
  local spec = {
    title = { type = "string", required = true },
    email = { type = "email" },
    start = { type = "datetime" },
    tags = { type = "array", items = { type = "string" } },
    note = { type = "string", nullable = true, trim = false },
  }
  local cases = {
    { title = "T a\0b" },
    { title = "ok", email = "a\0@example.com" },
    { title = "ok", start = "2026-12-01T10:00\0" },
    { title = "ok", tags = { "wifi", "pro\0jector" } },
    { title = "ok", note = "\0" },
  }
  local names = { "title", "email", "start", "tags", "note" }
  for i, body in ipairs(cases) do
    local cleaned, fields = schema.validate(spec, body)
    assert_nil(cleaned, names[i])
    local msg = fields[names[i]]
    assert_true(msg ~= nil and msg:find("NUL", 1, true) ~= nil,
      names[i] .. ": " .. tostring(msg))
  end
  local cleaned, fields = schema.query({ q = { type = "string" } }, { q = "lo\0ft" })
  assert_nil(cleaned)
  assert_eq("must not contain a NUL character", fields.q)
end)
