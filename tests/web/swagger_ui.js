// swagger_ui.js: a user's way through /apidocs in headless Chromium. The page loads with
// nothing from another host and no script error; the user logs in through the API, gives the
// token to "Authorize", opens GET /api/users/profile, runs "Try it out" and sees 200 with
// their own profile. A screenshot of the answer goes to OUT_DIR.
'use strict';
const { args, check, run } = require('./lib');
const { open, noProblems, screenshot, login } = require('./browser');

const { base, out } = args();
const EMAIL = process.env.SPACER_DOCS_EMAIL || 'client1@example.com';
const PASSWORD = process.env.SPACER_DOCS_PASSWORD || 'password123';

run('swagger_ui', async () => {
  const { token, user } = await login(base, EMAIL, PASSWORD);
  const { browser, page, problems } = await open(base);
  try {
    const res = await page.goto(base + '/apidocs');
    check(res.status() === 200, 'GET /apidocs: ' + res.status());
    await page.locator('.swagger-ui .info .title').filter({ hasText: 'Spacer API' }).waitFor();

    // Authorize: the bearer scheme's dialog
    await page.locator('button.authorize').first().click();
    const dialog = page.locator('.dialog-ux .modal-ux');
    await dialog.waitFor();
    await dialog.locator('input').first().fill(token);
    await dialog.locator('button.modal-btn.auth').first().click();
    await dialog.locator('button', { hasText: 'Logout' }).waitFor(); // authorized
    await dialog.locator('button.btn-done').click();

    // GET /api/users/profile: open it, Try it out, Execute
    const op = page.locator('#operations-users-get_api_users_profile');
    await op.locator('.opblock-summary').first().click();
    await op.locator('button.try-out__btn').click();
    const answer = page.waitForResponse((r) => new URL(r.url()).pathname === '/api/users/profile');
    await op.locator('button.execute').click();
    const r = await answer;
    check(r.status() === 200, 'Try it out: GET /api/users/profile answered ' + r.status());
    check(r.request().headers()['authorization'] === 'Bearer ' + token,
      'the request did not carry the token: ' + JSON.stringify(r.request().headers()));
    const status = op.locator('.live-responses-table .response .response-col_status').first();
    await status.waitFor();
    const shown = (await status.innerText()).trim();
    check(shown.startsWith('200'), 'the page shows the status ' + JSON.stringify(shown));
    const body = await op.locator('.live-responses-table .response-col_description pre').first().innerText();
    check(body.includes(user.email), 'the page does not show the profile: ' + body.slice(0, 300));
    await op.scrollIntoViewIfNeeded();
    const file = await screenshot(page, out, 'swagger-ui-profile.png');
    noProblems(problems);
    console.log('Try it out: 200 with ' + user.email + '; screenshot ' + file);
  } finally {
    await browser.close();
  }
});
