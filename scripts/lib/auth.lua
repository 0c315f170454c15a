-- lib/auth.lua: from a verified token to the user it speaks for, and the role checks that
-- depend on ownership (the core has already checked the route's declared roles).
local _M = {}

local USER_BY_ID = "SELECT id, role::text AS role FROM users WHERE id = $1"

-- A token of a deleted user is refused (nil: 401). Tokens of the old deployment carry no
-- role claim; the role then comes from the user's row, and so it does for every token: a
-- demoted admin loses admin rights at once, not when the token expires.
function _M.resolve(claims)
  local user = spacer.db.one(USER_BY_ID, claims.sub)
  if not user then
    return nil
  end
  return { id = user.id, role = user.role }
end

function _M.is_admin(user)
  return user ~= nil and user.role == "admin"
end

return _M
