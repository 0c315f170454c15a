-- money_test.lua: lib/money.lua — parsing to integer minor units, and back for display.
local money = require("lib.money")

test("exponents of the currencies we take, and the default", function()
  local cases = {
    { "KES", 2 }, { "USD", 2 }, { "EUR", 2 }, { "GBP", 2 }, { "TZS", 2 },
    { "UGX", 0 }, { "JPY", 0 }, { "RWF", 0 }, { "BHD", 3 },
    { "kes", 2 }, { "ugx", 0 }, { "XYZ", 2 }, { nil, 2 },
  }
  for _, c in ipairs(cases) do
    assert_eq(c[2], money.exponent(c[1]), tostring(c[1]))
  end
end)

test("parse accepts integers, floats and numeric strings", function()
  local cases = {
    { 500, "KES", 50000 },
    { 0, "KES", 0 },
    { 500.5, "KES", 50050 },
    { 500.0, "KES", 50000 },
    { 0.1, "KES", 10 },
    { 0.07, "KES", 7 },
    { 1.15, "KES", 115 }, -- 1.15 * 100 is 114.99999999999999 in floats
    { 4.35, "KES", 435 }, -- and 434.99999999999994
    { 123456789.99, "KES", 12345678999 },
    { "500", "KES", 50000 },
    { "500.00", "KES", 50000 },
    { "500.5", "KES", 50050 },
    { " 500.5 ", "KES", 50050 },
    { "\t7\n", "KES", 700 },
    { "0.05", "KES", 5 },
    { "+3", "KES", 300 },
    { "007", "KES", 700 },
    { "500.000", "KES", 50000 }, -- zeros past the minor unit change nothing
    { 50000, "UGX", 50000 },
    { "50000", "UGX", 50000 },
    { 50000.0, "UGX", 50000 },
    { "1.234", "BHD", 1234 },
    { 12, nil, 1200 },
  }
  for _, c in ipairs(cases) do
    local minor, err = money.parse(c[1], c[2])
    assert_nil(err, tostring(c[1]))
    assert_eq(c[3], minor, string.format("%q in %s", tostring(c[1]), tostring(c[2])))
    assert_eq("integer", math.type(minor), tostring(c[1]))
  end
end)

test("parse keeps the sign: the schema's min decides", function()
  assert_eq(-50000, money.parse(-500, "KES"))
  assert_eq(-50050, money.parse("-500.50", "KES"))
  assert_eq(-5, money.parse(-0.05, "KES"))
end)

test("parse refuses more decimals than the currency has", function()
  local cases = {
    { 500.123, "KES", "must have at most 2 decimal places" },
    { "500.123", "KES", "must have at most 2 decimal places" },
    { "0.001", "KES", "must have at most 2 decimal places" },
    { 0.1 + 0.2, "KES", "must have at most 2 decimal places" }, -- 0.30000000000000004
    { 500.5, "UGX", "must be a whole amount" },
    { "500.5", "UGX", "must be a whole amount" },
    { "1.2345", "BHD", "must have at most 3 decimal places" },
  }
  for _, c in ipairs(cases) do
    local minor, err = money.parse(c[1], c[2])
    assert_nil(minor, tostring(c[1]))
    assert_eq(c[3], err, tostring(c[1]))
  end
end)

test("parse refuses what is not an amount", function()
  local cases = {
    "", " ", "abc", "500abc", "5 00", "500.", ".5", "1e3", "0x10", "1,000", "inf", "nan",
    "--5", "500.5.5", true, false, {}, 0 / 0, math.huge, -math.huge,
  }
  for _, v in ipairs(cases) do
    local minor, err = money.parse(v, "KES")
    assert_nil(minor, tostring(v))
    assert_eq("must be an amount", err, tostring(v))
  end
  local minor, err = money.parse(nil, "KES")
  assert_nil(minor)
  assert_eq("must be an amount", err)
end)

test("parse refuses a long string before looking at it", function()
  local minor, err = money.parse("1" .. string.rep(" ", 100000) .. "2", "KES")
  assert_nil(minor)
  assert_eq("must be an amount", err)
end)

test("parse refuses amounts too large to stay exact", function()
  local cases = {
    { 2 ^ 53, "KES" },
    { 90071992547410, "KES" }, -- * 100 > 2^53
    { "90071992547409.92", "KES" },
    { "99999999999999999999", "KES" },
    { 1e12, "KES" },
    { math.maxinteger, "UGX" },
  }
  for _, c in ipairs(cases) do
    local minor, err = money.parse(c[1], c[2])
    assert_nil(minor, tostring(c[1]))
    assert_eq("is too large", err, tostring(c[1]))
  end
  assert_eq(9007199254740991, money.parse("90071992547409.91", "KES"))
  assert_eq(9007199254740900, money.parse(90071992547409, "KES"))
end)

test("parse_decimal scales percentages to basis points exactly", function()
  assert_eq(1600, money.parse_decimal(16, 2))
  assert_eq(750, money.parse_decimal(7.5, 2))
  assert_eq(750, money.parse_decimal("7.5", 2))
  assert_eq(1625, money.parse_decimal("16.25", 2))
  assert_eq(16, money.parse_decimal(16, 0))
  local bp, err = money.parse_decimal("7.125", 2)
  assert_nil(bp)
  assert_eq("must have at most 2 decimal places", err)
  assert_error(function()
    money.parse_decimal(1, 9)
  end, "places")
end)

test("to_major gives the float the API shows", function()
  local cases = {
    { 50000, "KES", 500.0 },
    { 50050, "KES", 500.5 },
    { 12345, "KES", 123.45 },
    { 7, "KES", 0.07 },
    { 0, "KES", 0.0 },
    { -250, "KES", -2.5 },
    { 50000, "UGX", 50000.0 },
    { 1234, "BHD", 1.234 },
  }
  for _, c in ipairs(cases) do
    local major = money.to_major(c[1], c[2])
    assert_eq("float", math.type(major), tostring(c[1]))
    assert_eq(c[3], major, tostring(c[1]))
  end
end)

test("parse and to_major round-trip", function()
  for _, text in ipairs({ "0.01", "0.1", "1.15", "4.35", "19.99", "1000000.07", "123456789.99" }) do
    local minor = money.parse(text, "KES")
    assert_eq(tonumber(text), money.to_major(minor, "KES"), text)
    assert_eq(minor, money.parse(money.to_major(minor, "KES"), "KES"), text)
  end
end)

test("decimal and format write amounts with integers only", function()
  assert_eq("500.50", money.decimal(50050, 2))
  assert_eq("0.05", money.decimal(5, 2))
  assert_eq("0.00", money.decimal(0, 2))
  assert_eq("-0.05", money.decimal(-5, 2))
  assert_eq("500", money.decimal(500, 0))
  assert_eq("1,234,567.89", money.decimal(123456789, 2, true))
  assert_eq("KES 500.00", money.format(50000, "KES"))
  assert_eq("KES 7,000.00", money.format(700000, "KES"))
  assert_eq("KES 1,000,000.00", money.format(100000000, "kes"))
  assert_eq("UGX 50,000", money.format(50000, "UGX"))
  assert_eq("UGX 500", money.format(500, "UGX"))
  assert_eq("BHD 1.234", money.format(1234, "BHD"))
  assert_eq("KES -12.50", money.format(-1250, "KES"))
end)
