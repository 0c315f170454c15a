-- invoice.lua: how an invoice looks, as JSON and as a printable HTML page. No I/O: it gets
-- an invoice row and answers tables and text. Integrators restyle the page here (STYLE below)
-- and `spacer reload`. Every value put in the page is escaped.
--
--   invoice.from_breakdown(breakdown) -> { lines, subtotal, tax, total, tax_rate_percent }
--     What an invoice takes from a booking's stored price breakdown (minor units).
--   invoice.number(year, n) -> "INV-2026-000042"
--   invoice.json(row) -> the invoice as the API shows it (amounts in major units); lists
--     write the same object from SQL (routes/payments.lua, INVOICE_JSON): change both together
--   invoice.lines(stored, currency) -> the lines as invoice.json shows them
--   invoice.LINE_AMOUNTS -> the keys of a line that are amounts (what lists scale in C)
--   invoice.html(row) -> the printable page (a complete HTML document)
--   invoice.escape(s) -> s with & < > " ' escaped
--
-- row: an invoices row with seller, buyer and space (jsonb snapshots taken when issued),
-- lines (minor units) and subtotal_minor, tax_minor, total_minor.
local money = require("lib.money")

local _M = {}

local json = spacer.json
local NULL = json.null
local format = string.format

function _M.number(year, n)
  return format("INV-%04d-%06d", year, n)
end

local function int(v)
  return math.type(v) == "integer" and v or math.tointeger(tonumber(v) or 0) or 0
end

function _M.from_breakdown(b)
  if type(b) ~= "table" or b == NULL then
    b = {}
  end
  local lines = {}
  for i, line in ipairs(b.lines or {}) do
    lines[i] = {
      code = line.code,
      description = line.description,
      quantity = line.quantity,
      unit_amount = int(line.unit_amount),
      amount = int(line.amount),
    }
  end
  local rate = b.tax_rate_percent
  if rate == nil then
    rate = NULL
  end
  return {
    lines = json.array(lines),
    subtotal = int(b.subtotal),
    tax = int(b.tax),
    total = int(b.total),
    tax_rate_percent = rate,
  }
end

-- A jsonb snapshot (seller, buyer, space) as shown: the table, or {} for anything else.
local obj = json.object

local function rate_of(row)
  local r = row.tax_rate_percent
  if r == nil or r == NULL then
    return NULL
  end
  r = tonumber(r)
  return math.tointeger(r) or r
end

-- The keys of a stored line whose integers are amounts in minor units. Lists show the stored
-- lines as they are but for these, in major units (spacer.json.scaler over the jsonb text,
-- routes/payments.lua INVOICE_SHAPERS): the same as _M.lines, since stored lines hold
-- exactly code, description, quantity and these two, as integers (from_breakdown). A key
-- added here or there: change both together.
_M.LINE_AMOUNTS = { "unit_amount", "amount" }

-- The stored lines (minor units) as the API shows them: amounts in major units.
function _M.lines(stored, currency)
  local lines = {}
  for i, line in ipairs(obj(stored)) do
    lines[i] = {
      code = line.code,
      description = line.description,
      quantity = line.quantity,
      unit_amount = money.to_major(int(line.unit_amount), currency),
      amount = money.to_major(int(line.amount), currency),
    }
  end
  return json.array(lines)
end

-- What invoice.json shows of a jsonb snapshot (seller, buyer, space): a table, or {}
-- (spacer.json.object, which spacer.db.json_with writes without a Lua call).
_M.object = obj

function _M.json(row)
  local currency = row.currency
  return {
    id = row.id,
    number = row.number,
    status = row.status,
    booking_id = row.booking_id,
    payment_id = row.payment_id,
    client_id = row.client_id,
    issued_at = row.issued_at,
    paid_at = row.paid_at,
    currency = currency,
    lines = _M.lines(row.lines, currency),
    subtotal = money.to_major(row.subtotal_minor, currency),
    tax = money.to_major(row.tax_minor, currency),
    tax_rate_percent = rate_of(row),
    total = money.to_major(row.total_minor, currency),
    seller = obj(row.seller),
    buyer = obj(row.buyer),
    space = obj(row.space),
    invoice_url = "/api/payments/invoices/" .. row.id .. "/html",
  }
end

-- HTML -------------------------------------------------------------------------------------

local ESCAPES = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;",
  ["'"] = "&#39;" }

function _M.escape(s)
  if s == nil or s == NULL then
    return ""
  end
  return (tostring(s):gsub("[&<>\"']", ESCAPES))
end

local e = _M.escape

local STYLE = [[
body { font-family: system-ui, sans-serif; color: #222; max-width: 48rem; margin: 2rem auto;
       padding: 0 1rem; }
h1 { font-size: 1.6rem; margin: 0; }
.meta, .parties { display: flex; justify-content: space-between; gap: 2rem; margin: 1.5rem 0; }
.status { text-transform: uppercase; font-weight: bold; }
.status-paid { color: #17702b; } .status-void { color: #a01818; }
table { width: 100%; border-collapse: collapse; }
th, td { padding: .4rem .3rem; border-bottom: 1px solid #ddd; text-align: left; }
td.num, th.num { text-align: right; }
tfoot td { border: none; } tfoot tr.total td { font-weight: bold; border-top: 2px solid #222; }
@media print { body { margin: 0; } }
]]

local function party(title, p)
  p = obj(p)
  local out = { "<div><h2>" .. e(title) .. "</h2>", "<div>" .. e(p.name) .. "</div>" }
  if p.email and p.email ~= NULL then
    out[#out + 1] = "<div>" .. e(p.email) .. "</div>"
  end
  out[#out + 1] = "</div>"
  return table.concat(out, "\n")
end

function _M.html(row)
  local currency = row.currency
  local function amount(minor)
    return e(money.format(int(minor), currency))
  end
  local space = obj(row.space)
  local out = {
    "<!DOCTYPE html>",
    "<html lang=\"en\"><head><meta charset=\"utf-8\">",
    "<title>Invoice " .. e(row.number) .. "</title>",
    "<style>" .. STYLE .. "</style></head><body>",
    "<header><h1>Invoice " .. e(row.number) .. "</h1>",
    format("<div class=\"status status-%s\">%s</div></header>", e(row.status), e(row.status)),
    "<section class=\"meta\"><div>Issued: " .. e(row.issued_at) .. "</div>",
    "<div>Booking #" .. e(row.booking_id) .. "</div>",
  }
  if row.paid_at and row.paid_at ~= NULL then
    out[#out + 1] = "<div>Paid: " .. e(row.paid_at) .. "</div>"
  end
  out[#out + 1] = "</section>"
  out[#out + 1] = "<section class=\"parties\">"
  out[#out + 1] = party("Seller", row.seller)
  out[#out + 1] = party("Buyer", row.buyer)
  out[#out + 1] = "</section>"
  if space.title then
    out[#out + 1] = "<p>Space: " .. e(space.title)
      .. (space.location and space.location ~= NULL and (", " .. e(space.location)) or "")
      .. "</p>"
  end
  out[#out + 1] = "<table><thead><tr><th>Description</th><th class=\"num\">Quantity</th>"
    .. "<th class=\"num\">Unit price</th><th class=\"num\">Amount</th></tr></thead><tbody>"
  for _, line in ipairs(obj(row.lines)) do
    out[#out + 1] = format(
      "<tr><td>%s</td><td class=\"num\">%s</td><td class=\"num\">%s</td>"
        .. "<td class=\"num\">%s</td></tr>",
      e(line.description or line.code), e(line.quantity), amount(line.unit_amount),
      amount(line.amount))
  end
  local rate = rate_of(row)
  local tax_label = "Tax"
  if rate ~= NULL then
    local shown = math.tointeger(rate) or rate
    tax_label = format("Tax (%s%%)", e(shown))
  end
  out[#out + 1] = "</tbody><tfoot>"
  out[#out + 1] = format("<tr><td colspan=\"3\">Subtotal</td><td class=\"num\">%s</td></tr>",
    amount(row.subtotal_minor))
  out[#out + 1] = format("<tr><td colspan=\"3\">%s</td><td class=\"num\">%s</td></tr>",
    tax_label, amount(row.tax_minor))
  out[#out + 1] = format(
    "<tr class=\"total\"><td colspan=\"3\">Total</td><td class=\"num\">%s</td></tr>",
    amount(row.total_minor))
  out[#out + 1] = "</tfoot></table></body></html>"
  return table.concat(out, "\n")
end

return _M
