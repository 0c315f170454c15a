// openapi_valid.js: GET /apispec.json passes a real OpenAPI 3 validator
// (@apidevtools/swagger-parser: the OpenAPI 3.0 JSON Schema, then its semantic checks such as
// unique operation ids), every $ref resolves, and — checked here, since the validator does not
// for OpenAPI 3 — each {name} of a path is a declared path parameter and the other way round,
// and conditional GET (If-None-Match, ETag, 304) is documented all together or not at all.
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
  // Conditional GET: a route with an ETag documents the request header, the 200's ETag and
  // the 304 without a body; a route without one documents none of them.
  const conditional = (op) => ({
    ifNoneMatch: (op.parameters || []).some((x) => x.in === 'header' && x.name === 'If-None-Match'),
    etag: Boolean(((op.responses['200'] || {}).headers || {}).ETag),
    notModified: op.responses['304'],
  });
  const space = conditional(doc.paths['/api/spaces/spaces/{id}'].get);
  check(space.ifNoneMatch, 'GET /api/spaces/spaces/{id}: no If-None-Match parameter');
  check(space.etag, 'GET /api/spaces/spaces/{id}: no ETag header on the 200');
  check(space.notModified && !space.notModified.content && space.notModified.headers.ETag,
    'GET /api/spaces/spaces/{id}: 304 ' + JSON.stringify(space.notModified));
  let tagged = 0;
  for (const [p, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const c = conditional(op);
      check(c.ifNoneMatch === c.etag && c.etag === Boolean(c.notModified),
        `${method.toUpperCase()} ${p}: If-None-Match ${c.ifNoneMatch}, ETag ${c.etag}, 304 ${Boolean(c.notModified)}`);
      if (c.etag) tagged += 1;
    }
  }
  check(!conditional(doc.paths['/api/bookings/bookings'].get).etag, 'private bookings list with an ETag');
  // validate() dereferences in place: give it a copy, keep doc for the checks below.
  const api = await SwaggerParser.validate(JSON.parse(JSON.stringify(doc)));
  check(api.openapi === '3.0.3', 'openapi version ' + api.openapi);
  check(count > 30, 'only ' + count + ' paths');
  console.log('valid OpenAPI ' + api.openapi + ': ' + count + ' paths, ' + tagged + ' with conditional GET');
});
