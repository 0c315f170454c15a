-- bench/wrk/invoices_list.lua: GET /api/payments/invoices with a client's token (BENCH_TOKEN,
-- the bookings_list client): the client's own invoices, first page of 20 (about sixty, from
-- bench/gen_payments.sql).
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

wrk.method = "GET"
wrk.path = "/api/payments/invoices"
wrk.headers["Authorization"] = "Bearer " .. env("BENCH_TOKEN", "missing-token")
