-- init.lua: what a generation loads. Every route file, the request validator, and how a
-- verified token becomes a user. Add a route file here and `spacer reload`.
local auth = require("lib.auth")
local schema = require("lib.schema")

spacer.set_validator(schema.validate)
spacer.on_auth(auth.resolve)

require("routes.ops")
require("routes.docs")
require("routes.users")
require("routes.spaces")
require("routes.bookings")
require("routes.payments")
