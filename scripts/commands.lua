-- commands.lua: command-line tasks that need the database, run by `spacer <command>` in the
-- same VM and with the same API as the routes.
local _M = {}

local UPSERT_ADMIN = [[
  INSERT INTO users (name, email, password_hash, role, is_verified)
  VALUES ($1, $2, $3, 'admin', true)
  ON CONFLICT (email) DO UPDATE
    SET name = EXCLUDED.name, password_hash = EXCLUDED.password_hash,
        role = 'admin', is_verified = true, updated_at = now()
  RETURNING id, (xmax = 0) AS created
]]

-- spacer create-admin --email E --name N (password on standard input)
function _M.create_admin(opts)
  local email = (opts.email or ""):match("^%s*(.-)%s*$"):lower()
  if not email:match("^[^@%s]+@[^@%s]+%.[^@%s]+$") then
    error("--email must be a valid email address", 0)
  end
  local name = (opts.name or ""):match("^%s*(.-)%s*$")
  if name == "" then error("--name must not be empty", 0) end
  local password = opts.password or ""
  if #password < 8 or #password > 72 then
    error("the password must be 8 to 72 bytes long", 0)
  end
  local hash = spacer.password.hash(password)
  local row = spacer.db.one(UPSERT_ADMIN, name, email, hash)
  return string.format("%s admin %s (id %d)", row.created and "created" or "promoted", email, row.id)
end

return _M
