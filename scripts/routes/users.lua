-- routes/users.lua: accounts. Registration, login (with throttling), logout, one's own
-- profile, and the admin's user management, on the canonical /api/users/... paths and the
-- old web app's compatibility paths (/api/register, /api/login, /api/profile, /api/users...).
--
-- Login throttling: failed attempts are rows of login_attempts (succeeded = false). A login
-- is refused with 429 before any password is checked while, within [login] window_minutes,
-- the email has max_failures_per_email failures or the client address max_failures_per_ip.
-- A successful login deletes the email's failed rows (its count starts again); nothing is
-- recorded for it, so the table holds failures only and every count uses its partial
-- indexes. Rows older than the window are pruned now and then as failures come in.
local api = require("lib.api")
local auth = require("lib.auth")
local openapi = require("lib.openapi")

local _M = {}

local db = spacer.db

local LOGIN = spacer.config.declare("login", {
  max_failures_per_email = 5,
  max_failures_per_ip = 20,
  window_minutes = 15,
})

local MIN_PASSWORD_BYTES = 8
local MAX_PASSWORD_BYTES = 72 -- bcrypt reads no further: longer ones are refused, not cut
local MAX_NAME_LENGTH = 200 -- as users_name_check
local PRUNE_EVERY = 50 -- failures, on average, between two prunings of old rows

local COLUMNS = api.USER_COLUMNS

-- SQL --------------------------------------------------------------------------

local INSERT_USER = [[
  INSERT INTO users (name, email, password_hash, role)
  VALUES ($1, $2, $3, $4)
  RETURNING ]] .. COLUMNS

local USER_FOR_LOGIN = [[
  SELECT ]] .. COLUMNS .. [[, password_hash FROM users WHERE email = $1
]]

local USER_BY_ID = "SELECT " .. COLUMNS .. " FROM users WHERE id = $1"

local PASSWORD_OF = "SELECT email, password_hash FROM users WHERE id = $1"

local UPDATE_PROFILE = [[
  UPDATE users
  SET name = COALESCE($2, name),
      password_hash = COALESCE($3, password_hash),
      updated_at = now()
  WHERE id = $1
  RETURNING ]] .. COLUMNS

-- The admins, locked in id order: demotions and deletions of admins are serialised, so two
-- admins removing each other at once cannot leave none.
local LOCK_ADMINS = "SELECT id FROM users WHERE role = 'admin' ORDER BY id FOR UPDATE"

local USER_FOR_CHANGE = "SELECT " .. COLUMNS .. " FROM users WHERE id = $1 FOR UPDATE"

local UPDATE_USER = [[
  UPDATE users
  SET name = COALESCE($2, name),
      email = COALESCE($3, email),
      role = COALESCE($4, role),
      is_verified = COALESCE($5, is_verified),
      updated_at = now()
  WHERE id = $1
  RETURNING ]] .. COLUMNS

local DELETE_USER = "DELETE FROM users WHERE id = $1"

local COUNT_USERS = [[
  SELECT count(*) AS total FROM users WHERE ($1::text IS NULL OR role::text = $1)
]]

local LIST_USERS = [[
  SELECT ]] .. COLUMNS .. [[
  FROM users
  WHERE ($1::text IS NULL OR role::text = $1)
  ORDER BY id
  LIMIT $2 OFFSET $3
]]

-- Seconds until the client may try again ($1 email, $2 address, $3 window in minutes,
-- $4 and $5 the limits), or NULL while under both limits. A limit is reached when its
-- limit-th newest failure is still inside the window; the wait ends when that one leaves it
-- (with exactly `limit` failures: the oldest one).
local THROTTLE = [[
  WITH by_email AS (
    SELECT at FROM login_attempts
    WHERE email = $1 AND NOT succeeded AND at > now() - $3::float8 * interval '1 minute'
    ORDER BY at DESC OFFSET ($4::int - 1) LIMIT 1
  ),
  by_ip AS (
    SELECT at FROM login_attempts
    WHERE ip = $2::inet AND NOT succeeded AND at > now() - $3::float8 * interval '1 minute'
    ORDER BY at DESC OFFSET ($5::int - 1) LIMIT 1
  )
  SELECT ceil(extract(epoch FROM max(t.at) + $3::float8 * interval '1 minute' - now()))::int8
         AS retry_after
  FROM (SELECT at FROM by_email UNION ALL SELECT at FROM by_ip) t
]]

local RECORD_FAILURE = [[
  INSERT INTO login_attempts (email, ip, succeeded) VALUES ($1, $2::inet, false)
]]

local CLEAR_FAILURES = "DELETE FROM login_attempts WHERE email = $1 AND NOT succeeded"

local PRUNE_ATTEMPTS = [[
  DELETE FROM login_attempts WHERE at < now() - $1::float8 * interval '1 minute'
]]

-- Validation --------------------------------------------------------------------

local function password_length(value)
  if #value < MIN_PASSWORD_BYTES then
    return "must be at least " .. MIN_PASSWORD_BYTES .. " bytes long"
  end
  if #value > MAX_PASSWORD_BYTES then
    return "must be at most " .. MAX_PASSWORD_BYTES .. " bytes long (UTF-8)"
  end
  return nil
end

local NAME = { type = "string", required = true, max_length = MAX_NAME_LENGTH }
local NEW_PASSWORD = { type = "string", trim = false, check = password_length }
local READONLY = { readonly = true }

local REGISTER = {
  name = NAME,
  email = { type = "email", required = true },
  password = { type = "string", required = true, trim = false, check = password_length },
  role = { type = "string", lower = true, enum = { "client", "owner" }, default = "client" },
  id = READONLY,
  is_verified = READONLY,
  created_at = READONLY,
  updated_at = READONLY,
  password_hash = READONLY,
}

-- Not type = "email": a malformed address is just a wrong credential here.
local LOGIN_BODY = {
  email = { type = "string", required = true, lower = true, max_length = 320 },
  password = { type = "string", required = true, trim = false },
}

local PROFILE_CHANGE = {
  name = NAME,
  password = NEW_PASSWORD,
  current_password = { type = "string", trim = false },
  id = READONLY,
  email = READONLY,
  role = READONLY,
  is_verified = READONLY,
  created_at = READONLY,
  updated_at = READONLY,
  password_hash = READONLY,
}

local USER_CHANGE = {
  name = NAME,
  email = { type = "email", required = true },
  role = { type = "string", lower = true, required = true, enum = { "client", "owner", "admin" } },
  is_verified = { type = "boolean", required = true },
  id = READONLY,
  password = READONLY,
  password_hash = READONLY,
  created_at = READONLY,
  updated_at = READONLY,
}

local USER_FILTERS = {
  role = { type = "string", lower = true, enum = { "client", "owner", "admin" } },
}

-- Helpers -----------------------------------------------------------------------

local function client_ip(req)
  if req.ip == nil or req.ip == "" then
    return nil
  end
  return req.ip
end

local function prune_attempts()
  if math.random(PRUNE_EVERY) == 1 then
    db.exec(PRUNE_ATTEMPTS, LOGIN.window_minutes)
  end
end

-- Raises 429 while this email or address is over its limit of failed attempts.
local function check_throttle(email, ip)
  local row = db.one(THROTTLE, email, ip, LOGIN.window_minutes,
    LOGIN.max_failures_per_email, LOGIN.max_failures_per_ip)
  local wait = row and row.retry_after
  if wait == nil or wait == spacer.json.null then
    return
  end
  wait = math.max(1, math.tointeger(wait) or 1)
  spacer.error(429, "too many failed login attempts; try again in " .. wait .. " seconds", {
    code = "too_many_attempts",
    headers = { ["Retry-After"] = tostring(wait) },
  })
end

local function record_failure(email, ip)
  db.exec(RECORD_FAILURE, email, ip)
  prune_attempts()
end

local function hash_of(row)
  if row == nil or row.password_hash == spacer.json.null then
    return nil
  end
  return row.password_hash
end

-- One bcrypt verification, whatever the input. No password longer than bcrypt's 72 bytes
-- was ever accepted, so such a one never matches (bcrypt would compare only its start).
local function verify(password, hash)
  if #password > MAX_PASSWORD_BYTES then
    spacer.password.verify(password:sub(1, MAX_PASSWORD_BYTES), nil)
    return false
  end
  return spacer.password.verify(password, hash)
end

local function find_user(id)
  local row = db.one(USER_BY_ID, id)
  if not row then
    api.not_found("user")
  end
  return row
end

local function email_taken()
  spacer.error(409, "this email is already registered", {
    code = "email_taken",
    fields = { email = "is already registered" },
  })
end

-- Runs fn(); a unique violation (the email) becomes a 409.
local function unless_taken(fn, ...)
  local ok, result = pcall(fn, ...)
  if ok then
    return result
  end
  if api.is_unique_violation(result) then
    email_taken()
  end
  error(result, 0)
end

local function last_admin(action)
  spacer.error(409, "the last admin cannot be " .. action
    .. "; make another user an admin first", "last_admin")
end

-- Handlers ----------------------------------------------------------------------

function _M.register(req)
  local body = req.body
  local hash = spacer.password.hash(body.password)
  local row = unless_taken(db.one, INSERT_USER, body.name, body.email, hash, body.role)
  return 201, { message = "User registered successfully", user = api.user(row) }
end

function _M.login(req)
  local email, password = req.body.email, req.body.password
  local ip = client_ip(req)
  check_throttle(email, ip)
  local user = db.one(USER_FOR_LOGIN, email)
  local ok = verify(password, hash_of(user)) -- costs one bcrypt even without a user
  if not ok or user == nil then
    record_failure(email, ip)
    spacer.error(401, "Invalid credentials", "invalid_credentials")
  end
  db.exec(CLEAR_FAILURES, email)
  local token = spacer.jwt.issue(user.id, user.role)
  return 200, { message = "Login successful", token = token, user = api.user_brief(user) }
end

function _M.logout()
  return 200, {
    message = "Logged out. Tokens are stateless: the server keeps no session, so discard "
      .. "the token on the client; it stays valid until it expires.",
  }
end

-- The profile as JSON text, made once per row lib/auth keeps: a row is never changed, a
-- change to users makes lib/auth drop its rows, and with them (weak keys) their text.
local profile_json = setmetatable({}, { __mode = "k" })

function _M.profile(req)
  local row = auth.row(req.user.id) -- the row lib/auth just read for the token
  if not row then
    api.not_found("user")
  end
  local body = profile_json[row]
  if not body then
    body = spacer.json.raw(spacer.json.encode(api.user(row)))
    profile_json[row] = body
  end
  return 200, body
end

function _M.update_profile(req)
  local body = req.body
  local new_hash
  if body.password ~= nil then
    if body.current_password == nil or body.current_password == "" then
      api.fail({ current_password = "is required to change the password" })
    end
    local current = db.one(PASSWORD_OF, req.user.id)
    if not current then
      api.not_found("user")
    end
    local ip = client_ip(req)
    check_throttle(current.email, ip)
    if not verify(body.current_password, hash_of(current)) then
      record_failure(current.email, ip)
      api.fail({ current_password = "is incorrect" })
    end
    new_hash = spacer.password.hash(body.password)
  end
  local row = db.one(UPDATE_PROFILE, req.user.id, body.name, new_hash)
  spacer.cache.touch("users")
  if not row then
    api.not_found("user")
  end
  return 200, { message = "Profile updated successfully", user = api.user(row) }
end

function _M.list(req)
  local filters, pager = api.list_params(req, USER_FILTERS)
  return api.paged_query(req, pager, {
    count = COUNT_USERS,
    list = LIST_USERS,
    args = { n = 1, filters.role },
    shape = api.user,
  })
end

function _M.show(req)
  return 200, api.user(find_user(req.params.id))
end

function _M.update(req)
  local id, body = req.params.id, req.body
  local demoting = body.role ~= nil and body.role ~= "admin"
  local row = unless_taken(db.tx, function()
    local admins = demoting and db.query(LOCK_ADMINS) or nil
    local current = db.one(USER_FOR_CHANGE, id)
    if not current then
      api.not_found("user")
    end
    if demoting and current.role == "admin" and #admins <= 1 then
      last_admin("demoted")
    end
    return db.one(UPDATE_USER, id, body.name, body.email, body.role, body.is_verified)
  end)
  spacer.cache.touch("users") -- a demoted admin loses the role at once on this instance
  return 200, { message = "User updated successfully", user = api.user(row) }
end

function _M.delete(req)
  local id = req.params.id
  local ok, err = pcall(db.tx, function()
    local admins = db.query(LOCK_ADMINS)
    local current = db.one(USER_FOR_CHANGE, id)
    if not current then
      api.not_found("user")
    end
    if current.role == "admin" and #admins <= 1 then
      last_admin("deleted")
    end
    db.exec(DELETE_USER, id)
  end)
  spacer.cache.touch("users")
  if not ok then
    if api.is_fk_violation(err) then
      spacer.error(409, "this user still has spaces, bookings or payments", "user_in_use")
    end
    error(err, 0)
  end
  return 200, { message = "User deleted successfully" }
end

-- Routes ------------------------------------------------------------------------

local compat = api.compat_path

local TAGS = { "users" }
local ADMIN = { "admin" }

-- The shapes of the answers, for the OpenAPI document (api.user and api.user_brief).
local ROLE = { type = "string", enum = spacer.json.array({ "client", "owner", "admin" }) }
local USER = openapi.component("User", openapi.object({
  id = openapi.ID,
  name = openapi.STRING,
  email = { type = "string", format = "email" },
  role = ROLE,
  is_verified = openapi.BOOLEAN,
  created_at = openapi.DATETIME,
}, { "id", "name", "email", "role", "is_verified", "created_at" }))
local USER_BRIEF = openapi.component("UserBrief", openapi.object({
  id = openapi.ID,
  name = openapi.STRING,
  email = { type = "string", format = "email" },
  role = ROLE,
}, { "id", "name", "email", "role" }))
local MESSAGE_USER = openapi.object({ message = openapi.MESSAGE, user = USER },
  { "message", "user" })
local MESSAGE_ONLY = openapi.component("Message",
  openapi.object({ message = openapi.MESSAGE }, { "message" }))
local LOGIN_RESULT = openapi.component("LoginResult", openapi.object({
  message = { type = "string", example = "Login successful" },
  token = { type = "string", description = "the bearer token (JWT) for Authorization" },
  user = USER_BRIEF,
}, { "message", "token", "user" }))
local WRONG_PASSWORDS = "too many failed attempts (Retry-After)"

spacer.post({ "/api/users/register", compat("/api/register") }, {
  body = REGISTER,
  summary = "Register a client or owner account",
  status = 201,
  result = MESSAGE_USER,
  responses = { [201] = "registered: message, user", [409] = "email already registered" },
  tags = TAGS,
}, _M.register)

spacer.post({ "/api/users/login", compat("/api/login") }, {
  body = LOGIN_BODY,
  summary = "Log in: a token and the user; 429 after too many failures",
  result = LOGIN_RESULT,
  responses = { [200] = "message, token, user", [401] = "Invalid credentials",
    [429] = WRONG_PASSWORDS },
  description = "401 Invalid credentials for a wrong email or password. Within [login] "
    .. "window_minutes, max_failures_per_email failures for one email or "
    .. "max_failures_per_ip from one address give 429 with Retry-After, before any "
    .. "password is checked; a successful login clears the email's failures.",
  tags = TAGS,
}, _M.login)

spacer.post({ "/api/users/logout", compat("/api/logout") }, {
  summary = "Log out (tokens are stateless: the client discards its token)",
  description = "Always 200. The server keeps no session: a token stays valid until it "
    .. "expires ([auth] token_lifetime), so logging out means the client forgets it.",
  result = MESSAGE_ONLY,
  db = false,
  tags = TAGS,
}, _M.logout)

spacer.get({ "/api/users/profile", compat("/api/profile") }, {
  auth = true,
  summary = "The caller's profile",
  result = USER,
  tags = TAGS,
}, _M.profile)

local PROFILE_UPDATE = {
  auth = true,
  body = PROFILE_CHANGE,
  partial = true,
  summary = "Change one's name, or password (with current_password)",
  result = MESSAGE_USER,
  responses = { [200] = "message, user", [429] = "too many wrong current passwords" },
  tags = TAGS,
}
spacer.patch("/api/users/profile", PROFILE_UPDATE, _M.update_profile)
spacer.route({ "PATCH", "PUT" }, { compat("/api/profile") }, PROFILE_UPDATE, _M.update_profile)

spacer.get({ "/api/users/users", compat("/api/users") }, {
  roles = ADMIN,
  summary = "Every user (admin); filter role; page, per_page",
  query = USER_FILTERS,
  paged = true,
  result = USER,
  tags = TAGS,
}, _M.list)

spacer.get({ "/api/users/users/{id}", compat("/api/users/{id}") }, {
  roles = ADMIN,
  summary = "One user (admin)",
  result = USER,
  responses = { [404] = "no such user" },
  tags = TAGS,
}, _M.show)

local USER_UPDATE = {
  roles = ADMIN,
  body = USER_CHANGE,
  partial = true,
  summary = "Change a user's name, email, role or is_verified (admin)",
  result = MESSAGE_USER,
  responses = { [404] = "no such user", [409] = "email taken, or the last admin demoted" },
  tags = TAGS,
}
spacer.patch("/api/users/users/{id}", USER_UPDATE, _M.update)
spacer.put({ compat("/api/users/{id}") }, USER_UPDATE, _M.update)

spacer.delete({ "/api/users/users/{id}", compat("/api/users/{id}") }, {
  roles = ADMIN,
  summary = "Delete a user (admin); never the last admin",
  result = MESSAGE_ONLY,
  responses = { [404] = "no such user",
    [409] = "the last admin, or a user who still has spaces, bookings or payments" },
  tags = TAGS,
}, _M.delete)

return _M
