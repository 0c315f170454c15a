-- db_types_test.lua: values go to PostgreSQL as parameters and come back typed.
local db = spacer.db
local null = spacer.json.null

test("integers of every width round-trip exactly", function()
  local r = db.one("SELECT $1::int2 AS a, $2::int4 AS b, $3::int8 AS c, $4::int8 AS d",
    -32768, 2147483647, 9007199254740993, math.mininteger)
  assert_eq(-32768, r.a)
  assert_eq(2147483647, r.b)
  assert_eq(9007199254740993, r.c)
  assert_eq(math.mininteger, r.d)
  assert_eq("integer", math.type(r.c))
end)

test("numeric stays an exact string; floats are floats", function()
  local r = db.one("SELECT $1::numeric AS n, ($1::numeric * 3) AS m, $2::float8 AS f",
    "0.1", 1.5)
  assert_eq("0.1", r.n)
  assert_eq("0.3", r.m)
  assert_eq(1.5, r.f)
  assert_eq("float", math.type(r.f))
end)

test("booleans, text and NULL", function()
  local r = db.one("SELECT $1::bool AS t, $2::bool AS f, $3::text AS s, $4::text AS n",
    true, false, "café ✓ \"quoted\"", nil)
  assert_true(r.t == true)
  assert_true(r.f == false)
  assert_eq("café ✓ \"quoted\"", r.s)
  assert_true(r.n == null, "NULL comes back as spacer.json.null")
  local r2 = db.one("SELECT $1::text IS NULL AS is_null", null)
  assert_true(r2.is_null)
end)

test("tables go as JSON and jsonb comes back as tables", function()
  local value = { name = "x", list = { 1, 2, 3 }, nested = { ok = true }, empty = spacer.json.array() }
  local r = db.one("SELECT $1::jsonb AS j", value)
  assert_eq(value, r.j)
  assert_eq('[]', spacer.json.encode(r.j.empty))
end)

test("arrays come back as tables", function()
  local r = db.one("SELECT ARRAY['a', 'b c', NULL]::text[] AS t, ARRAY[1, 2]::int8[] AS i, "
    .. "'{}'::text[] AS e")
  assert_eq("a", r.t[1])
  assert_eq("b c", r.t[2])
  assert_true(r.t[3] == null)
  assert_eq({ 1, 2 }, r.i)
  assert_eq("[]", spacer.json.encode(r.e))
end)

test("timestamptz comes back as ISO 8601 with its offset", function()
  local r = db.one("SELECT $1::timestamptz AS ts", "2026-12-01T10:00:00+03:00")
  assert_eq("2026-12-01T07:00:00+00:00", r.ts)
  assert_eq(spacer.time.parse("2026-12-01T10:00", "Africa/Nairobi"), spacer.time.parse(r.ts))
end)

-- Temporary tables live on one connection: a transaction pins it.
test("query, one and exec shapes", function()
  db.tx(function()
    db.exec("CREATE TEMP TABLE t_shapes (n int) ON COMMIT DROP")
    assert_eq(3, db.exec("INSERT INTO t_shapes SELECT generate_series(1, 3)"))
    local rows = db.query("SELECT n FROM t_shapes ORDER BY n")
    assert_eq(3, #rows)
    assert_eq(2, rows[2].n)
    assert_nil(db.one("SELECT n FROM t_shapes WHERE n > 10"))
    assert_eq("[]", spacer.json.encode(db.query("SELECT n FROM t_shapes WHERE n > 10")))
  end)
end)

test("a database error carries sqlstate, constraint and detail", function()
  local e = assert_error(function()
    db.tx(function()
      db.exec("CREATE TEMP TABLE t_unique (k text CONSTRAINT t_unique_k UNIQUE) ON COMMIT DROP")
      db.exec("INSERT INTO t_unique VALUES ('a')")
      db.exec("INSERT INTO t_unique VALUES ('a')")
    end)
  end)
  assert_true(db.is_error(e))
  assert_eq("23505", e.sqlstate)
  assert_eq("t_unique_k", e.constraint)
  assert_true(e.detail:find("already exists") ~= nil, e.detail)
end)
