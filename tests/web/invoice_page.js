// invoice_page.js: the printable invoice in headless Chromium. Through the API a client books
// one of an owner's spaces, the owner approves, the client pays (manual), the owner confirms;
// the invoice is then issued and paid. The browser opens its page (GET
// /api/payments/invoices/{id}/html and GET /api/payments/invoices/{id} with Accept:
// text/html) with the client's token and must show every line of the JSON invoice, a
// subtotal, tax and total equal to the JSON's, and nothing from another host. A screenshot
// goes to OUT_DIR.
'use strict';
const { args, check, run } = require('./lib');
const { open, noProblems, screenshot, login } = require('./browser');

const { base, out } = args();

async function call(method, path, token, body, extra) {
  const headers = Object.assign({ Authorization: 'Bearer ' + token }, extra || {});
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(base + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch (e) { /* not JSON */ }
  return { status: res.status, json, text };
}

function expect(r, status, what) {
  check(r.status === status, what + ': ' + r.status + ' ' + r.text.slice(0, 300));
  return r.json;
}

// "KES 1,160.00" -> 1160
function amountOf(text) {
  const m = text.replace(/,/g, '').match(/-?\d+(\.\d+)?/);
  check(m, 'no amount in ' + JSON.stringify(text));
  return Number(m[0]);
}

// A two-hour slot of the space with no confirmed booking (its availability says so).
async function freeSlot(space) {
  for (let day = 30; day < 400; day += 7) {
    const start = new Date(Date.now() + day * 86400000);
    start.setUTCHours(7, 0, 0, 0);
    const end = new Date(start.getTime() + 2 * 3600000);
    const q = '?from=' + encodeURIComponent(start.toISOString())
      + '&to=' + encodeURIComponent(end.toISOString());
    const busy = await fetch(base + '/api/spaces/spaces/' + space.id + '/availability' + q);
    check(busy.status === 200, 'availability: ' + busy.status);
    if ((await busy.json()).length === 0) return [start.toISOString(), end.toISOString()];
  }
  throw new Error('no free slot for space ' + space.id);
}

async function paidInvoice() {
  const client = (await login(base, 'client2@example.com', 'password123')).token;
  const owner = (await login(base, 'owner2@example.com', 'password123')).token;
  const spaces = expect(await call('GET', '/api/spaces/spaces/mine?per_page=100', owner), 200,
    'the owner\'s spaces');
  const space = spaces.find((s) => s.is_available && !s.instant_book);
  check(space, 'the owner has no available space that needs approval');
  const [start, end] = await freeSlot(space);
  const booked = expect(await call('POST', '/api/bookings/bookings', client,
    { space_id: space.id, start_datetime: start, end_datetime: end }), 201, 'book');
  const booking = booked.booking;
  expect(await call('PATCH', '/api/bookings/bookings/' + booking.id + '/approve', owner), 200,
    'approve');
  const paid = expect(await call('POST', '/api/payments/payments', client,
    { booking_id: booking.id, payment_method: 'manual' },
    { 'Idempotency-Key': 'invoice-page-' + booking.id }), 201, 'pay');
  expect(await call('PATCH', '/api/payments/payments/' + paid.payment.id + '/confirm', owner),
    200, 'confirm');
  const list = expect(await call('GET', '/api/payments/invoices?per_page=100', client), 200,
    'invoices');
  const found = list.find((i) => i.booking_id === booking.id);
  check(found, 'no invoice for booking ' + booking.id + ' in ' + JSON.stringify(list).slice(0, 300));
  const invoice = expect(await call('GET', '/api/payments/invoices/' + found.id, client), 200,
    'the invoice');
  check(invoice.status === 'paid', 'the invoice is ' + invoice.status);
  check(invoice.lines.length > 0, 'an invoice without lines');
  return { client, invoice };
}

async function checkPage(page, invoice) {
  await page.locator('table').waitFor();
  const rows = page.locator('table tbody tr');
  check(await rows.count() === invoice.lines.length,
    'the page shows ' + (await rows.count()) + ' lines, the invoice has ' + invoice.lines.length);
  for (let i = 0; i < invoice.lines.length; i++) {
    const line = invoice.lines[i];
    const cells = await rows.nth(i).locator('td').allInnerTexts();
    check(cells[0].trim() === (line.description || line.code),
      'line ' + (i + 1) + ': ' + JSON.stringify(cells) + ' for ' + JSON.stringify(line));
    check(amountOf(cells[cells.length - 1]) === line.amount,
      'line ' + (i + 1) + ' amount ' + cells[cells.length - 1] + ', expected ' + line.amount);
    check(await rows.nth(i).isVisible(), 'line ' + (i + 1) + ' is not visible');
  }
  const foot = await page.locator('table tfoot tr').allInnerTexts();
  const row = (label) => foot.find((t) => t.trim().toLowerCase().startsWith(label));
  for (const [label, value] of [['subtotal', invoice.subtotal], ['tax', invoice.tax],
    ['total', invoice.total]]) {
    const text = row(label);
    check(text, 'no ' + label + ' row in ' + JSON.stringify(foot));
    check(amountOf(text.replace(/\(.*?\)/, '')) === value,
      label + ': the page shows ' + JSON.stringify(text) + ', the invoice ' + value);
  }
  const body = await page.locator('body').innerText();
  check(body.includes(invoice.number), 'the page does not show ' + invoice.number);
  check(/paid/i.test(body), 'the page does not say paid');
}

run('invoice_page', async () => {
  const { client, invoice } = await paidInvoice();
  const { browser, page, problems } = await open(base);
  try {
    await page.setExtraHTTPHeaders({ Authorization: 'Bearer ' + client });
    let res = await page.goto(base + '/api/payments/invoices/' + invoice.id + '/html');
    check(res.status() === 200, 'GET …/html: ' + res.status());
    check(res.headers()['content-type'].startsWith('text/html'), res.headers()['content-type']);
    await checkPage(page, invoice);
    const file = await screenshot(page, out, 'invoice.png');

    await page.setExtraHTTPHeaders({ Authorization: 'Bearer ' + client, Accept: 'text/html' });
    res = await page.goto(base + '/api/payments/invoices/' + invoice.id);
    check(res.status() === 200 && res.headers()['content-type'].startsWith('text/html'),
      'Accept: text/html: ' + res.status() + ' ' + res.headers()['content-type']);
    await checkPage(page, invoice);
    noProblems(problems);
    console.log('invoice ' + invoice.number + ': ' + invoice.lines.length + ' lines, total '
      + invoice.total + ' ' + invoice.currency + '; screenshot ' + file);
  } finally {
    await browser.close();
  }
});
