-- users_test.lua: lib/api.lua — list parameters, pagination headers, user shapes.
local api = require("lib.api")

local function req(path, query, compat)
  return { path = path, query = query or {}, compat = compat or false }
end

-- { rel = target } of a Link header
local function links(header)
  local out = {}
  for target, rel in header:gmatch("<([^>]*)>; rel=\"(%a+)\"") do
    out[rel] = target
  end
  return out
end

test("pager: defaults, given values, and 422 fields", function()
  local p = api.pager(req("/x"))
  assert_eq({ page = 1, per_page = 20, limit = 20, offset = 0, paged = true }, p)
  p = api.pager(req("/x", { page = "3", per_page = "10" }))
  assert_eq({ page = 3, per_page = 10, limit = 10, offset = 20, paged = true }, p)
  local pager, fields = api.pager(req("/x", { page = "0", per_page = "101" }))
  assert_nil(pager)
  assert_true(fields.page ~= nil and fields.per_page ~= nil, "both named")
  pager, fields = api.pager(req("/x", { page = "two" }))
  assert_nil(pager)
  assert_true(fields.page ~= nil)
end)

test("pager: compatibility paths are unpaged up to [compat] max_list unless asked", function()
  local p = api.pager(req("/api/users", {}, true))
  assert_eq(false, p.paged)
  assert_eq(api.compat.max_list, p.limit)
  assert_eq(0, p.offset)
  p = api.pager(req("/api/users", { per_page = "5" }, true))
  assert_eq({ page = 1, per_page = 5, limit = 5, offset = 0, paged = true }, p)
  p = api.pager(req("/api/users", { page = "2" }, true))
  assert_eq({ page = 2, per_page = 20, limit = 20, offset = 20, paged = true }, p)
end)

test("list_params: one 422 naming filters and paging at once", function()
  local err = assert_error(function()
    api.list_params(req("/x", { role = "king", per_page = "500" }),
      { role = { type = "string", enum = { "client", "owner" } } })
  end)
  assert_true(spacer.is_error(err))
  assert_eq(422, err.status)
  assert_true(err.fields.role ~= nil and err.fields.per_page ~= nil)
  local filters, pager = api.list_params(req("/x", { role = "owner", page = "2" }),
    { role = { type = "string", enum = { "client", "owner" } } })
  assert_eq({ role = "owner" }, filters)
  assert_eq(2, pager.page)
end)

test("link: first, prev, next, last with the request's own query", function()
  local r = req("/api/users/users", { role = "client", q = "a b&c", page = "2", per_page = "10" })
  local l = links(api.link(r, 2, 10, 5))
  assert_eq("/api/users/users?q=a%20b%26c&role=client&page=1&per_page=10", l.first)
  assert_eq("/api/users/users?q=a%20b%26c&role=client&page=1&per_page=10", l.prev)
  assert_eq("/api/users/users?q=a%20b%26c&role=client&page=3&per_page=10", l.next)
  assert_eq("/api/users/users?q=a%20b%26c&role=client&page=5&per_page=10", l.last)
  l = links(api.link(req("/x"), 1, 20, 1))
  assert_eq({ first = "/x?page=1&per_page=20", last = "/x?page=1&per_page=20" }, l)
  l = links(api.link(req("/x"), 9, 20, 3)) -- past the end: prev is the last page
  assert_eq("/x?page=3&per_page=20", l.prev)
  assert_nil(l.next)
end)

test("list_headers and list: totals, Link only when paged, an empty array is []", function()
  local r = req("/x")
  local h = api.list_headers(r, api.pager(r), 41)
  assert_eq("41", h["X-Total-Count"])
  assert_eq("/x?page=3&per_page=20", links(h.Link).last)
  h = api.list_headers(req("/x", {}, true), api.pager(req("/x", {}, true)), 41)
  assert_eq({ ["X-Total-Count"] = "41" }, h)
  local status, body, headers = api.list(r, api.pager(r), {}, 0)
  assert_eq(200, status)
  assert_eq("[]", spacer.json.encode(body))
  assert_eq("/x?page=1&per_page=20", links(headers.Link).last)
  status, body = api.list(r, api.pager(r), { { id = 1, x = 2 } }, 1, function(row)
    return { id = row.id }
  end)
  assert_eq({ { id = 1 } }, body)
end)

test("user shapes never carry the password hash", function()
  local row = { id = 7, name = "N", email = "n@example.com", role = "client", is_verified = false,
    created_at = "2026-01-01T00:00:00+00:00", updated_at = "2026-01-02T00:00:00+00:00",
    password_hash = "$2b$12$x" }
  assert_eq({ id = 7, name = "N", email = "n@example.com", role = "client", is_verified = false,
    created_at = "2026-01-01T00:00:00+00:00" }, api.user(row))
  assert_eq({ id = 7, name = "N", email = "n@example.com", role = "client" }, api.user_brief(row))
  assert_true(not api.USER_COLUMNS:find("password"))
end)
