-- db_json_test.lua: spacer.db.json and json_one write rows straight to JSON text, the select
-- list being the shape; spacer.json.raw values are written as they are.
local db = spacer.db
local json = spacer.json

local function text(v)
  return json.encode(v)
end

test("each column is a key, each type as the encoder would write it", function()
  local one = db.json_one([[
    SELECT 42::int8 AS id, 'a "q" \ ünï' || chr(10) AS s, NULL::text AS n, true AS t,
           false AS f, 12.50::numeric AS num, 50000::float8 / 100 AS major,
           12345::float8 / 100 AS cents, '2026-12-01 10:00:00.5+03'::timestamptz AS ts,
           ARRAY['wifi', 'a "b"', NULL] AS arr, ARRAY[1, 2]::int8[] AS ints,
           '{}'::text[] AS empty, '{"x": [1, {"y": null}]}'::jsonb AS j]])
  local decoded = json.decode(text(one))
  assert_eq(42, decoded.id)
  assert_eq('a "q" \\ ünï\n', decoded.s)
  assert_true(decoded.n == json.null)
  assert_true(decoded.t == true and decoded.f == false)
  assert_true(text(one):find('"major":500.0', 1, true) ~= nil, "a float keeps its .0")
  assert_true(text(one):find('"cents":123.45', 1, true) ~= nil, text(one))
  assert_true(text(one):find('"num":12.50', 1, true) ~= nil, "numeric as written")
  local ts = db.one("SELECT '2026-12-01 10:00:00.5+03'::timestamptz AS ts").ts
  assert_eq(ts, decoded.ts, "the same text as spacer.db gives")
  assert_eq({ "wifi", 'a "b"', json.null }, decoded.arr)
  assert_eq({ 1, 2 }, decoded.ints)
  assert_true(text(one):find('"empty":[]', 1, true) ~= nil)
  assert_eq({ x = { 1, { y = json.null } } }, decoded.j)
end)

test("a dotted name nests; _ columns are meta; empty rows are left out", function()
  local rows, meta = db.json([[
    SELECT t.id, t.id * 10 AS "owner.id", 'n' || t.id AS "owner.name", 7 AS _total
    FROM (VALUES (1), (2)) t(id)
    UNION ALL SELECT NULL, NULL, NULL, 7]])
  assert_eq('[{"id":1,"owner":{"id":10,"name":"n1"}},{"id":2,"owner":{"id":20,"name":"n2"}}]',
    text(rows))
  assert_eq(7, meta.total)
  local none, meta2 = db.json("SELECT 1 AS id, 3 AS _total WHERE false")
  assert_eq("[]", text(none))
  assert_eq(nil, meta2.total)
  assert_eq(nil, db.json_one("SELECT 1 AS id WHERE false"))
end)

test("spacer.json.raw takes valid JSON only and is written as it is", function()
  local raw = json.raw('{"a": [1, 2.0]}')
  assert_eq('{"x":{"a": [1, 2.0]}}', text({ x = raw }))
  assert_eq('{"a": [1, 2.0]}', tostring(raw))
  assert_true(not pcall(json.raw, '{"a": '), "invalid JSON is refused")
  assert_eq("spacer.json.raw", getmetatable(raw))
end)

test("spacer.time.format writes what the time's fields say, in any zone (UTC for LMT)", function()
  local zones = { "UTC", "Africa/Nairobi", "America/New_York", "Asia/Kolkata", "America/St_Johns",
    "Pacific/Chatham", "Australia/Lord_Howe", "Asia/Kathmandu" }
  local t = -2208988800 -- 1900-01-01: local mean times with odd offsets too
  for i = 1, 3000 do
    t = t + 1234567 + i * 7919
    for _, zone in ipairs(zones) do
      local f = spacer.time.fields(t, zone)
      if f.offset % 60 ~= 0 then
        -- a local mean time offset has seconds, which RFC 3339 cannot write: UTC instead
        f = spacer.time.fields(t, "UTC")
      end
      local off = math.abs(f.offset)
      local want = string.format("%04d-%02d-%02dT%02d:%02d:%02d%s%02d:%02d", f.year, f.month,
        f.day, f.hour, f.min, f.sec, f.offset < 0 and "-" or "+", off // 3600, off % 3600 // 60)
      assert_eq(want, spacer.time.format(t, zone))
    end
  end
end)

-- spacer.json.scaler: a stored breakdown (minor units) in major units, without Lua tables.
local flow = require("booking_flow")
local major = json.scaler(flow.BREAKDOWN_AMOUNTS)

-- The breakdown as flow.breakdown_major shows it, decoded: the values to compare.
local function via_lua(stored, currency)
  return json.decode(json.encode(flow.breakdown_major(json.decode(stored), currency)))
end

local STORED = '{"tax": 8160, "hours": 3, "lines": [{"code": "hours", "amount": 51000, '
  .. '"quantity": 3, "description": "3 hours", "unit_amount": 17000}], "total": 59160, '
  .. '"currency": "KES", "subtotal": 51000, "tax_rate_percent": "16"}'

test("scaler: amounts in major units, the rest as the encoder writes it", function()
  local out = text(major(STORED, 100))
  assert_eq('{"currency":"KES","hours":3,"lines":[{"amount":510.0,"code":"hours",'
    .. '"description":"3 hours","quantity":3,"unit_amount":170.0}],"subtotal":510.0,'
    .. '"tax":81.6,"tax_rate_percent":"16","total":591.6}', out)
  -- byte for byte what the Lua way writes
  assert_eq(json.encode(flow.breakdown_major(json.decode(STORED), "KES")), out)
  -- "factor text", a select list's one column, is the same call
  assert_eq(out, text(major("100 " .. STORED)))
  -- numbers: floats stay floats, integers of other keys stay integers, big ones go through
  assert_eq('{"amount":-0.07,"n":[1,2.5,1000.0,0,null,true,false],"total":1.5,"x":{}}',
    text(major('{"amount": -7, "n": [1, 2.50, 1e3, -0, null, true, false], "total": 1.5, '
      .. '"x": {}}', 100)))
  assert_eq('{"total":1234567890123456.8}', text(major('{"total": 123456789012345678}', 100)))
  -- beyond 64 bits: a float, as the decoder reads it (the decoder's way)
  assert_eq('{"total":1e+20}', text(major('{"total": 99999999999999999999}', 1)))
  assert_eq('{"total":12.345}', text(major('{"total": 12345}', 1000)))
  assert_eq('{"total":12345.0}', text(major('{"total": 12345}', 1)))
end)

test("scaler: escaped strings take the decoder's way, with the same answer", function()
  local stored = '{"lines": [{"amount": 150, "description": "say \\"hi\\"\\\\ \\n caf\\u00e9"}]}'
  local out = text(major(stored, 100))
  assert_eq({ lines = { { amount = 1.5, description = 'say "hi"\\ \n café' } } },
    json.decode(out))
  assert_true(out:find('"amount":1.5', 1, true) ~= nil, out)
end)

test("scaler: bad input is a clear error", function()
  assert_error(function() major("{", 100) end, "spacer.json.scaler")
  assert_error(function() major(STORED, 0) end, "factor")
  assert_error(function() major("no factor") end, "factor text")
  assert_error(function() json.scaler({ "a,b" }) end, "commas")
end)

test("json_with: a scaler shapes a \"factor text\" column in C, as in Lua", function()
  local rows = db.json_with({ b = major }, [[
    SELECT 1 AS id, 100 || ' ' || $1::jsonb::text AS b
    UNION ALL SELECT 2, 1 || ' ' || '{"total": 5, "d": "a\"b"}'::jsonb::text
    UNION ALL SELECT 3, NULL]], STORED)
  local decoded = json.decode(text(rows))
  assert_eq(via_lua(STORED, "KES"), decoded[1].b)
  assert_eq({ total = 5.0, d = 'a"b' }, decoded[2].b)
  assert_true(text(rows):find('"b":{"d":"a\\"b","total":5.0}', 1, true) ~= nil, text(rows))
  assert_true(decoded[3].b == json.null)
end)
