-- static_test.lua: lib/static.lua (files answered from memory) and lib/openapi.lua (rules of
-- lib/schema.lua as JSON Schema).
local static = require("lib.static")
local openapi = require("lib.openapi")
local api = require("lib.api")

local function caught(fn)
  local ok, e = pcall(fn)
  assert_true(not ok, "expected an error")
  return e
end

test("a file of the set: 200 with its type, ETag and caching", function()
  local set = static.new()
  static.add(set, "app.js", "console.log(1)")
  local status, body, headers = static.answer({ headers = {} }, set, "app.js", "no-cache")
  assert_eq(200, status)
  assert_eq("console.log(1)", body)
  assert_eq("text/javascript; charset=utf-8", headers["Content-Type"])
  assert_eq("no-cache", headers["Cache-Control"])
  assert_eq('"' .. spacer.crypto.sha256("console.log(1)"):sub(1, 32) .. '"', headers["ETag"])
end)

test("If-None-Match: weak comparison, lists and *", function()
  local set = static.new()
  static.add(set, "a.css", "body{}")
  local etag = set.files["a.css"].etag
  for _, given in ipairs({ etag, "W/" .. etag, '"x", ' .. etag, " " .. etag .. " ", "*" }) do
    local status, body = static.answer({ headers = { ["if-none-match"] = given } }, set, "a.css")
    assert_eq(304, status, given)
    assert_eq(nil, body, given)
  end
  for _, given in ipairs({ '"x"', "", etag:sub(2, -2), "W/" }) do
    local status = static.answer({ headers = { ["if-none-match"] = given } }, set, "a.css")
    assert_eq(200, status, given)
  end
end)

test("a name outside the set is a 404, whatever its form", function()
  local set = static.new()
  static.add(set, "a.css", "body{}")
  for _, name in ipairs({ "b.css", "../a.css", "a.css/", "A.CSS", "%2e%2e%2fa.css", "" }) do
    local e = caught(function() static.answer({ headers = {} }, set, name) end)
    assert_eq(404, e.status, name)
  end
end)

test("content types by extension", function()
  assert_eq("text/html; charset=utf-8", static.content_type("index.html"))
  assert_eq("image/png", static.content_type("x.PNG"))
  assert_eq("application/octet-stream", static.content_type("x.bin"))
  assert_eq("application/octet-stream", static.content_type("noext"))
end)

test("spacer.files.read is refused once the generation has loaded", function()
  local e = caught(function() spacer.files.read("scripts/init.lua") end)
  assert_true(tostring(e):find("only while a generation loads", 1, true) ~= nil, tostring(e))
end)

test("spacer.files.static is refused once the generation has loaded", function()
  local e = caught(function() spacer.files.static("scripts/init.lua") end)
  assert_true(tostring(e):find("only while a generation loads", 1, true) ~= nil, tostring(e))
end)

test("schema rules become JSON Schema with bounds, enums and defaults", function()
  assert_eq({ type = "integer", minimum = 1, maximum = 100, default = 20,
    description = "items per page" }, openapi.rule(api.PAGE_QUERY.per_page))
  local s = openapi.rule({ type = "string", required = true, enum = { "a", "b" } })
  assert_eq("string", s.type)
  assert_eq(1, s.minLength)
  assert_eq({ "a", "b" }, s.enum)
  assert_true(spacer.json.is_array(s.enum), "enum is a JSON array")
  local a = openapi.rule({ type = "array", split = ",", max_length = 3,
    items = { type = "string", max_length = 9 } })
  assert_eq({ type = "string", maxLength = 9 }, a.items)
  assert_eq(3, a.maxItems)
  assert_eq({ readOnly = true }, openapi.rule({ readonly = true }))
  local params = openapi.parameters({ b = { type = "integer" }, a = { type = "datetime",
    required = true } })
  assert_eq("a", params[1].name)
  assert_eq(true, params[1].required)
  assert_eq("query", params[2]["in"])
end)
