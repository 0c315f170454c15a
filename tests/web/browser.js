// browser.js: headless Chromium (Debian's /usr/bin/chromium) driven by playwright-core, for
// the browser tests. If Chromium cannot start, the test fails with the reason: never a skip.
'use strict';
const fs = require('fs');
const path = require('path');
const { webRequire, check } = require('./lib');

const CHROMIUM = process.env.SPACER_CHROMIUM || '/usr/bin/chromium';
const TIMEOUT_MS = 60000;

// Opens a page that records every request to a host other than the server's, every page
// error, every console error (a Content-Security-Policy violation is one) and every failed
// load (but /favicon.ico's).
async function open(base) {
  const { chromium } = webRequire('playwright-core');
  let browser;
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      timeout: TIMEOUT_MS,
      // as root Chromium refuses its sandbox; /dev/shm is small in containers
      args: (process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [])
        .concat(['--disable-dev-shm-usage']),
    });
  } catch (e) {
    throw new Error('Chromium could not start (' + CHROMIUM + '): ' + e.message);
  }
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.setDefaultTimeout(TIMEOUT_MS);
  const host = new URL(base).host;
  const problems = { foreign: [], errors: [] };
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.protocol !== 'data:' && u.host !== host) problems.foreign.push(r.url());
  });
  page.on('pageerror', (e) => problems.errors.push('page error: ' + e.message));
  page.on('console', (m) => {
    // a failed load is reported below with its address
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) {
      problems.errors.push('console: ' + m.text());
    }
  });
  page.on('response', (r) => {
    // the icon a browser asks every site for is not Spacer's to have
    if (r.status() >= 400 && new URL(r.url()).pathname !== '/favicon.ico') {
      problems.errors.push(r.status() + ' for ' + r.url());
    }
  });
  return { browser, page, problems };
}

function noProblems(problems) {
  check(problems.foreign.length === 0, 'requests to other hosts: ' + problems.foreign.join(', '));
  check(problems.errors.length === 0, problems.errors.join('\n'));
}

async function screenshot(page, out, name) {
  fs.mkdirSync(out, { recursive: true });
  const file = path.join(out, name);
  await page.screenshot({ path: file, fullPage: false });
  return file;
}

async function login(base, email, password) {
  const res = await fetch(base + '/api/users/login', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ email, password }),
  });
  const body = await res.json();
  check(res.status === 200 && body.token, 'login ' + email + ': ' + res.status + ' ' + JSON.stringify(body));
  return body;
}

module.exports = { open, noProblems, screenshot, login };
