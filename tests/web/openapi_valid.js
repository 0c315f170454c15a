// openapi_valid.js: GET /apispec.json passes a real OpenAPI 3 validator
// (@apidevtools/swagger-parser: the OpenAPI 3.0 JSON Schema, then its semantic checks such as
// unique operation ids), every $ref resolves, and — checked here, since the validator does not
// for OpenAPI 3 — each {name} of a path is a declared path parameter and the other way round.
'use strict';
const { webRequire, args, check, run } = require('./lib');

const SwaggerParser = webRequire('@apidevtools/swagger-parser');
const { base } = args();

run('openapi_valid', async () => {
  const res = await fetch(base + '/apispec.json');
  check(res.status === 200, 'GET /apispec.json: ' + res.status);
  const doc = await res.json();
  const count = Object.keys(doc.paths).length;
  const ids = new Set();
  for (const [p, item] of Object.entries(doc.paths)) {
    const names = [...p.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]).sort();
    for (const [method, op] of Object.entries(item)) {
      const declared = (op.parameters || []).filter((x) => x.in === 'path').map((x) => x.name).sort();
      check(JSON.stringify(names) === JSON.stringify(declared),
        `${method.toUpperCase()} ${p}: path parameters ${declared} for {${names}}`);
      check(!ids.has(op.operationId), 'operationId twice: ' + op.operationId);
      ids.add(op.operationId);
    }
  }
  // validate() dereferences in place: give it a copy, keep doc for the checks below.
  const api = await SwaggerParser.validate(JSON.parse(JSON.stringify(doc)));
  check(api.openapi === '3.0.3', 'openapi version ' + api.openapi);
  check(count > 30, 'only ' + count + ' paths');
  console.log('valid OpenAPI ' + api.openapi + ': ' + count + ' paths');
});
