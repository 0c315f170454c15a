-- time_crypto_test.lua: spacer.time and spacer.crypto decoding — impossible dates, leap
-- seconds, offsets that RFC 3339 cannot write, strict base64 and hex.
local time = spacer.time
local crypto = spacer.crypto

test("an impossible date is refused whatever the seconds", function()
  for _, s in ipairs({
    "2026-02-30T23:59:60", "2026-04-31T23:59:60", "2026-02-29T23:59:60",
    "2026-02-30T23:59:59", "2026-02-30T23:59:60Z", "2026-04-31T23:59:60+03:00",
    "2026-06-31T10:00", "2026-13-01T00:00",
  }) do
    for _, zone in ipairs({ "UTC", "Europe/Berlin", "Africa/Nairobi" }) do
      local t, err = time.parse(s, zone)
      assert_nil(t, s .. " in " .. zone)
      assert_true(err:find("not an ISO 8601", 1, true), err)
    end
  end
  assert_eq(time.parse("2028-02-29T10:00:00Z"), time.parse("2028-03-01T10:00:00Z") - 86400)
end)

test("a leap second is the next minute's :00, with an offset or without", function()
  assert_eq(time.parse("2026-12-31T00:00:00Z"), time.parse("2026-12-30T23:59:60Z"))
  assert_eq(time.parse("2026-03-01T00:00:00+03:00"), time.parse("2026-02-28T23:59:60+03:00"))
  for _, zone in ipairs({ "UTC", "Europe/Berlin", "America/New_York", "Africa/Nairobi" }) do
    assert_eq(time.parse("2026-03-01T00:00:00", zone), time.parse("2026-02-28T23:59:60", zone),
      zone)
    assert_eq(time.parse("2026-06-15T10:31", zone), time.parse("2026-06-15T10:30:60", zone), zone)
  end
  -- just before the spring gap of Europe/Berlin (02:00 -> 03:00 on 2026-03-29)
  assert_eq(time.parse("2026-03-29T01:59:59", "Europe/Berlin") + 1,
    time.parse("2026-03-29T01:59:60", "Europe/Berlin"))
  assert_eq("2026-03-29T03:00:00+02:00",
    time.format(time.parse("2026-03-29T01:59:60", "Europe/Berlin"), "Europe/Berlin"))
end)

test("offsets need their minutes when they have a colon", function()
  assert_nil(time.parse("2026-06-15T10:00+03:"))
  assert_nil(time.parse("2026-06-15T10:00+3"))
  assert_eq(time.parse("2026-06-15T07:00Z"), time.parse("2026-06-15T10:00+0300"))
  assert_eq(time.parse("2026-06-15T07:00Z"), time.parse("2026-06-15T10:00+03"))
end)

test("every formatted time parses back to the same instant", function()
  -- Europe/Berlin was +00:53:28 before 1893: RFC 3339 has no seconds in offsets, so such an
  -- instant is written in UTC
  local t = time.parse("1890-06-01T12:00:00", "Europe/Berlin")
  assert_eq(time.parse("1890-06-01T11:06:32Z"), t)
  assert_eq("1890-06-01T11:06:32+00:00", time.format(t, "Europe/Berlin"))
  assert_eq(t, time.parse(time.format(t, "Europe/Berlin")))
  assert_eq("1900-06-01T12:00:00+01:00",
    time.format(time.parse("1900-06-01T12:00:00", "Europe/Berlin"), "Europe/Berlin"))
  for _, zone in ipairs({ "UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata",
    "Pacific/Kiritimati", "Africa/Monrovia" }) do
    for _, s in ipairs({ "0001-01-01T00:00:00Z", "1000-01-01T00:00:00Z", "1971-03-28T02:30:00Z",
      "2026-03-29T01:30:00Z", "2026-11-01T05:30:00Z", "9999-12-31T23:59:59Z" }) do
      local t1 = time.parse(s)
      assert_eq(t1, time.parse(time.format(t1, zone)), s .. " in " .. zone)
    end
  end
  -- four-digit years; beyond them, the instant cannot be written
  assert_eq("0999-01-01T00:00:00+00:00", time.format(time.parse("0999-01-01T00:00:00Z")))
  assert_eq("9999-12-31T23:59:59+00:00",
    time.format(time.parse("9999-12-31T23:59:59Z"), "Pacific/Kiritimati"))
  assert_nil(time.parse("0000-01-01T00:00:00+01:00"))
  assert_nil(time.parse("9999-12-31T23:59:59-01:00"))
  assert_error(function() time.format(253402300800) end, "outside the years")
end)

test("base64_decode: valid input exactly its bytes, anything else nil and a reason", function()
  local cases = {
    { "", "" }, { "QQ==", "A" }, { "QUI=", "AB" }, { "QUJD", "ABC" }, { "QQ", "A" },
    { "QUI", "AB" }, { "AAEC/w==", "\0\1\2\255" }, { "+/+/", "\251\255\191" },
  }
  for _, c in ipairs(cases) do
    assert_eq(c[2], crypto.base64_decode(c[1]), c[1])
    assert_eq(c[1]:gsub("=", ""), crypto.base64_encode(c[2]):gsub("=", ""), c[1])
  end
  for _, s in ipairs({ "====", "=", "QQ==  ", " QQ==", "QQ=\n", "Q", "QQ=", "QQ===", "QQ=A",
    "Q===", "QUJD=", "QR==", "QUJ=", "QU-D", "QU_D", "QU\0D" }) do
    local v, err = crypto.base64_decode(s)
    assert_nil(v, string.format("%q", s))
    assert_true(err:find("invalid base64", 1, true), err)
  end
end)

test("hex_decode: either case, even length", function()
  assert_eq("\0\1\171\255", crypto.hex_decode("0001abFF"))
  assert_eq("", crypto.hex_decode(""))
  assert_eq(crypto.hmac_sha256("k", "m", true), crypto.hex_decode(crypto.hmac_sha256("k", "m")))
  for _, s in ipairs({ "0", "abc", "0g", " 00", "00 ", "0x00" }) do
    local v, err = crypto.hex_decode(s)
    assert_nil(v, s)
    assert_true(err:find("invalid hex", 1, true), err)
  end
end)
