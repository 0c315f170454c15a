// lib.js: what the node tests share. Modules come from web/node_modules (make deps), the
// server's address and the output directory from the command line:
//   node tests/web/<test>.js BASE_URL OUT_DIR
// A test prints what it checked and exits 0, or prints why it failed and exits 1.
'use strict';
const path = require('path');
const { createRequire } = require('module');

const ROOT = path.resolve(__dirname, '..', '..');
const webRequire = createRequire(path.join(ROOT, 'web', 'package.json'));

function args() {
  const [base, out] = process.argv.slice(2);
  if (!base || !out) {
    console.error('usage: node ' + path.basename(process.argv[1]) + ' BASE_URL OUT_DIR');
    process.exit(2);
  }
  return { base: base.replace(/\/$/, ''), out };
}

function check(cond, what) {
  if (!cond) throw new Error(what);
}

// Runs fn; any error (or rejection) fails the test with its message.
function run(name, fn) {
  Promise.resolve()
    .then(fn)
    .then(() => {
      console.log('ok ' + name);
      process.exit(0);
    })
    .catch((e) => {
      console.error('FAIL ' + name + ': ' + (e && e.stack ? e.stack : e));
      process.exit(1);
    });
}

module.exports = { ROOT, webRequire, args, check, run };
