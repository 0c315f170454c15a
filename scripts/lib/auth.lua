-- lib/auth.lua: from a verified token to the user it speaks for, and the role checks that
-- depend on ownership (the core has already checked the route's declared roles).
--
-- Every authenticated request needs its user's row (a deleted user is refused, the role
-- comes from the row). Each worker keeps the rows it has read while the version of "users"
-- (spacer.cache.version) stays the same: any change to the users table, on any instance,
-- changes it (the database announces it; this instance's own writes touch it at once), and
-- the whole copy is dropped. While changes cannot be heard (cache off, notification
-- connection down), every call reads the database.
local api = require("lib.api")

local _M = {}

local USER_BY_ID = "SELECT " .. api.USER_COLUMNS .. " FROM users WHERE id = $1"

local MAX_CACHED = 10000 -- rows kept per worker; beyond, the copy starts over

local rows, rows_version, nrows = {}, nil, 0

-- auth.row(id) -> the user's row (api.USER_COLUMNS) | nil when there is no such user.
-- The row is shared: read it, never change it.
function _M.row(id)
  local version = spacer.cache.version("users")
  if version == nil then
    return spacer.db.one(USER_BY_ID, id)
  end
  if version ~= rows_version then
    rows, rows_version, nrows = {}, version, 0
  end
  local row = rows[id]
  if row then
    return row
  end
  row = spacer.db.one(USER_BY_ID, id)
  -- Kept only if nothing changed meanwhile (a newer version has started a new copy).
  if row and rows_version == version then
    if nrows >= MAX_CACHED then
      rows, nrows = {}, 0
    end
    rows[id] = row
    nrows = nrows + 1
  end
  return row
end

-- A token of a deleted user is refused (nil: 401). Tokens of the old deployment carry no
-- role claim; the role then comes from the user's row, and so it does for every token: a
-- demoted admin loses admin rights at once, not when the token expires.
function _M.resolve(claims)
  local user = _M.row(claims.sub)
  if not user then
    return nil
  end
  return { id = user.id, role = user.role }
end

function _M.is_admin(user)
  return user ~= nil and user.role == "admin"
end

return _M
