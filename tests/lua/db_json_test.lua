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
