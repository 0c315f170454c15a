-- plugins/payments/manual.lua: cash or bank transfer. The payment stays pending until the
-- space's owner (or an admin) confirms that the money arrived
-- (PATCH /api/payments/payments/{id}/confirm); a refund is paid back by hand.
-- No webhook: nothing calls back. docs/plugins.md describes the interface.
local _M = {
  name = "manual",
  version = "1.0.0",
  methods = { "manual", "cash", "bank_transfer" },
  config = {
    instructions = {
      type = "string",
      default = "Pay the space's owner in cash or by bank transfer; "
        .. "the owner confirms the payment when the money arrives.",
      description = "what the payer is told to do (next_action.instructions)",
    },
  },
  -- Manual payments wait for the owner: they never expire.
  pending_timeout = 0,
  confirmable = true,
}

function _M.create(ctx, payment)
  return {
    status = "pending",
    next_action = {
      type = "manual",
      instructions = ctx.config.instructions,
      reference = "PAY-" .. payment.id,
    },
  }
end

function _M.webhook()
  return nil, "manual payments have no webhook"
end

-- The money goes back by hand; the record says it was refunded.
function _M.refund()
  return { status = "refunded" }
end

return _M
