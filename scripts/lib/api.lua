-- lib/api.lua: what every resource's routes share: list parameters and pagination (the
-- X-Total-Count and RFC 8288 Link headers, the compatibility paths' unpaged lists), query
-- string validation, 404s, unique violations, and the public shape of a user.
--
-- Settings: declares the [compat] section of spacer.conf (this is the only place that does).
--
--   api.compat
--     The [compat] settings: { max_list = 1000 }, the most rows a compatibility path's
--     unpaged list returns.
--
--   api.compat_path(path) -> { path, compat = true }
--     A path of the old web app, for spacer.route's path list.
--
--   api.fail(fields)
--     Raises a 422 validation_failed with these fields, like the core's body validation.
--
--   api.PAGE_QUERY
--     The lib/schema.lua spec of page and per_page, which api.pager validates and the OpenAPI
--     document shows on every route declared with paged = true.
--
--   api.query(req, spec) -> cleaned
--     Validates req.query against a lib/schema.lua spec (values are strings; numbers, booleans
--     and enums are converted); raises a 422 naming every bad parameter.
--
--   api.pager(req) -> pager | nil, fields
--     Reads page and per_page: { page =, per_page =, limit =, offset =, paged = }.
--     page from 1 (default 1), per_page 1..100 (default 20); anything else: nil and fields.
--     On a compatibility path without page and per_page the list is not paged: paged = false,
--     limit = compat.max_list, offset = 0 (the old web app never pages).
--
--   api.list_params(req, filter_spec) -> filters, pager
--     api.query and api.pager together, with one 422 naming every bad parameter.
--     filter_spec may be nil (no filters: filters is {}).
--
--   api.link(req, page, per_page, last_page) -> Link header value
--     RFC 8288 links first, prev (when page > 1), next (when page < last_page) and last,
--     each the request's own path and query with page and per_page replaced:
--     </api/users/users?role=client&page=2&per_page=20>; rel="next", ...
--
--   api.list_headers(req, pager, total) -> headers
--     X-Total-Count (every matching row), and Link when the list is paged.
--
--   api.list(req, pager, rows, total[, shape]) -> 200, array, headers
--     A handler's answer for a list: rows (each passed through shape when given) as a JSON
--     array, even when empty, with api.list_headers.
--
--   api.paged_query(req, pager, q) -> 200, array, headers
--     Runs q.count (one row with a column `total`) and q.list with q.args ($1..$n, may be
--     nil), the list getting LIMIT and OFFSET as $n+1 and $n+2, then answers as api.list with
--     q.shape. Example:
--       api.paged_query(req, pager, {
--         count = "SELECT count(*) AS total FROM users WHERE role = $1",
--         list = "SELECT ... FROM users WHERE role = $1 ORDER BY id LIMIT $2 OFFSET $3",
--         args = { "client" },
--         shape = api.user,
--       })
--
--   api.not_found(what)
--     Raises a 404 not_found: "<what> not found" (what defaults to "resource").
--
--   api.is_unique_violation(e[, constraint]) -> boolean
--     e is a database error of a unique constraint (sqlstate 23505), of this constraint when
--     one is named. Catch it from pcall: never rely only on a check made before the write.
--
--   api.is_fk_violation(e) -> boolean
--     e is a database error of a foreign key (sqlstate 23503): the row is still referenced.
--
--   api.USER_COLUMNS
--     The select list that api.user and api.user_brief read: id, name, email, role (as text),
--     is_verified, created_at, updated_at. Never the password hash.
--
--   api.user(row) -> { id, name, email, role, is_verified, created_at }
--     A user as the API shows it (profile, registration, admin views).
--
--   api.user_brief(row) -> { id, name, email, role }
--     The user of a login answer.
local schema = require("lib.schema")

local _M = {}

local json = spacer.json

_M.compat = spacer.config.declare("compat", { max_list = 1000 })

local DEFAULT_PER_PAGE = 20
local MAX_PER_PAGE = 100

-- The page and per_page parameters of every list (validation and the OpenAPI document).
_M.PAGE_QUERY = schema.page_spec({
  default_per_page = DEFAULT_PER_PAGE,
  max_per_page = MAX_PER_PAGE,
})

_M.USER_COLUMNS = "id, name, email, role::text AS role, is_verified, created_at, updated_at"

-- Errors ------------------------------------------------------------------------

-- api.compat_path(path) -> the route path { path, compat = true }: a path of the old web app.
function _M.compat_path(path)
  return { path, compat = true }
end

function _M.fail(fields)
  spacer.error(422, "validation failed", { code = "validation_failed", fields = fields })
end

function _M.not_found(what)
  spacer.error(404, (what or "resource") .. " not found", "not_found")
end

function _M.is_unique_violation(e, constraint)
  if not spacer.db.is_error(e) or e.sqlstate ~= "23505" then
    return false
  end
  return constraint == nil or e.constraint == constraint
end

function _M.is_fk_violation(e)
  return spacer.db.is_error(e) and e.sqlstate == "23503"
end

-- Query strings -----------------------------------------------------------------

function _M.query(req, spec)
  local cleaned, fields = schema.query(spec, req.query)
  if not cleaned then
    _M.fail(fields)
  end
  return cleaned
end

function _M.pager(req)
  local query = req.query or {}
  if req.compat and query.page == nil and query.per_page == nil then
    local limit = _M.compat.max_list
    return { page = 1, per_page = limit, limit = limit, offset = 0, paged = false }
  end
  local page, per_page_or_fields = schema.page(query, _M.PAGE_QUERY)
  if not page then
    return nil, per_page_or_fields
  end
  local per_page = per_page_or_fields
  return {
    page = page,
    per_page = per_page,
    limit = per_page,
    offset = (page - 1) * per_page,
    paged = true,
  }
end

function _M.list_params(req, filter_spec)
  local filters, fields = {}, nil
  if filter_spec then
    filters, fields = schema.query(filter_spec, req.query)
  end
  local pager, page_fields = _M.pager(req)
  if fields or page_fields then
    local all = {}
    for k, v in pairs(fields or {}) do
      all[k] = v
    end
    for k, v in pairs(page_fields or {}) do
      all[k] = v
    end
    _M.fail(all)
  end
  return filters, pager
end

-- Links -------------------------------------------------------------------------

local function escape(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c)
    return string.format("%%%02X", c:byte())
  end))
end

-- The request's query without page and per_page, in a stable order.
local function base_query(req)
  local keys = {}
  for k in pairs(req.query or {}) do
    if k ~= "page" and k ~= "per_page" then
      keys[#keys + 1] = k
    end
  end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do
    parts[i] = escape(k) .. "=" .. escape(req.query[k])
  end
  return parts
end

function _M.link(req, page, per_page, last_page)
  local base = base_query(req)
  local function target(p, rel)
    local parts = { table.unpack(base) }
    parts[#parts + 1] = "page=" .. p
    parts[#parts + 1] = "per_page=" .. per_page
    return string.format("<%s?%s>; rel=\"%s\"", req.path, table.concat(parts, "&"), rel)
  end
  local links = { target(1, "first") }
  if page > 1 then
    links[#links + 1] = target(math.min(page - 1, last_page), "prev")
  end
  if page < last_page then
    links[#links + 1] = target(page + 1, "next")
  end
  links[#links + 1] = target(last_page, "last")
  return table.concat(links, ", ")
end

function _M.list_headers(req, pager, total)
  local headers = { ["X-Total-Count"] = tostring(total) }
  if pager.paged then
    local last_page = math.max(1, (total + pager.per_page - 1) // pager.per_page)
    headers["Link"] = _M.link(req, pager.page, pager.per_page, last_page)
  end
  return headers
end

-- Lists -------------------------------------------------------------------------

function _M.list(req, pager, rows, total, shape)
  local out = {}
  for i, row in ipairs(rows) do
    out[i] = shape and shape(row) or row
  end
  return 200, json.array(out), _M.list_headers(req, pager, total)
end

function _M.paged_query(req, pager, q)
  local args = q.args or {}
  local n = args.n or #args
  local counted = spacer.db.one(q.count, table.unpack(args, 1, n))
  local total = counted and counted.total or 0
  local list_args = { table.unpack(args, 1, n) }
  list_args[n + 1] = pager.limit
  list_args[n + 2] = pager.offset
  local rows = spacer.db.query(q.list, table.unpack(list_args, 1, n + 2))
  return _M.list(req, pager, rows, total, q.shape)
end

-- Users -------------------------------------------------------------------------

function _M.user(row)
  return {
    id = row.id,
    name = row.name,
    email = row.email,
    role = row.role,
    is_verified = row.is_verified,
    created_at = row.created_at,
  }
end

function _M.user_brief(row)
  return {
    id = row.id,
    name = row.name,
    email = row.email,
    role = row.role,
  }
end

return _M
