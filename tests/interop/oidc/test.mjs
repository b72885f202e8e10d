#!/usr/bin/env node
// mcpvisor as an OAuth 2.1 resource server in front of a real authorization server: gets JWT
// access tokens from provider.mjs (oidc-provider) with the client credentials grant and a
// resource indicator (RFC 8707), checks what the provider issued, then uses them against mcpvisor.
//
//   OIDC_CLIENT_ID=ID OIDC_CLIENT_SECRET=SECRET node test.mjs --issuer ISSUER --jwks-url URL \
//       [--mcp http://127.0.0.1:PORT/servers/ts/mcp]
//
// Without --mcp only the provider side is checked (tokens issued, claims and signature right).
// mcpvisor is expected to be configured with auth.jwt = {issuer: ISSUER, audience:
// "https://mcp.example.test", jwks_url: URL, claims: {tenant: "tenant", agent: "azp"}} and a
// tenant "acme" allowed the server "ts" (tests/servers/testserver), which has the tool "echo".
// Prints "ok NAME" or "not ok NAME: REASON" per check, then "oidc: N passed, M failed"; exits 1
// if any check failed, 2 on a usage error.

import crypto from 'node:crypto';

const MCP_RESOURCE = 'https://mcp.example.test';
const OTHER_RESOURCE = 'https://other.example.test';
const TS_RESOURCE = `${MCP_RESOURCE}/servers/ts/mcp`;
const TS2_RESOURCE = `${MCP_RESOURCE}/servers/ts2/mcp`;
const PROTOCOL = '2025-11-25';
const TIMEOUT_MS = 15000;

function usage(msg) {
  process.stderr.write(`test.mjs: ${msg}\n`);
  process.stderr.write('usage: OIDC_CLIENT_ID=ID OIDC_CLIENT_SECRET=SECRET node test.mjs --issuer ISSUER --jwks-url URL [--mcp URL]\n');
  process.exit(2);
}

const opts = { issuer: undefined, 'jwks-url': undefined, mcp: undefined };
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i].replace(/^--/, '');
    if (!(key in opts) || argv[i + 1] === undefined) usage(`bad argument ${argv[i]}`);
    opts[key] = argv[++i];
  }
  if (!opts.issuer || !opts['jwks-url']) usage('give --issuer and --jwks-url');
}
const clientId = process.env.OIDC_CLIENT_ID;
const clientSecret = process.env.OIDC_CLIENT_SECRET;
if (!clientId || !clientSecret) usage('set OIDC_CLIENT_ID and OIDC_CLIENT_SECRET');

let passed = 0;
let failed = 0;

function oneLine(s) {
  return String(s).replace(/\s+/g, ' ').slice(0, 600);
}

async function check(name, fn) {
  try {
    const note = await fn();
    passed++;
    console.log(`ok ${name}${note ? ` (${oneLine(note)})` : ''}`);
    return true;
  } catch (err) {
    failed++;
    console.log(`not ok ${name}: ${oneLine(err?.message ?? err)}`);
    return false;
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

const b64urlJson = (s) => JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));

function decode(jwt) {
  const parts = jwt.split('.');
  assert(parts.length === 3, `not a JWS compact serialization (${parts.length} parts)`);
  return { header: b64urlJson(parts[0]), payload: b64urlJson(parts[1]), parts };
}

async function httpFetch(url, init = {}) {
  return fetch(url, { ...init, signal: AbortSignal.timeout(TIMEOUT_MS) });
}

// ---- the authorization server ------------------------------------------------------------------

let discovery;
let jwks;

async function getToken(resource, scope) {
  const body = new URLSearchParams({ grant_type: 'client_credentials' });
  if (resource !== undefined) body.set('resource', resource);
  if (scope !== undefined) body.set('scope', scope);
  const r = await httpFetch(discovery.token_endpoint, {
    method: 'POST',
    headers: {
      Authorization: `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64')}`,
      'Content-Type': 'application/x-www-form-urlencoded',
      Accept: 'application/json'
    },
    body
  });
  const text = await r.text();
  assert(r.status === 200, `token endpoint: HTTP ${r.status} ${text}`);
  const json = JSON.parse(text);
  assert(typeof json.access_token === 'string', `token endpoint: no access_token in ${text}`);
  assert(/^bearer$/i.test(json.token_type), `token endpoint: token_type ${json.token_type}`);
  return json;
}

// Checks an issued access token: RFC 9068 shape, the claims mcpvisor needs, and its ES256
// signature against the provider's JWKS. Returns the decoded token.
function checkToken(tokenResponse, resource, scope) {
  const tok = decode(tokenResponse.access_token);
  const { header, payload, parts } = tok;
  assert(header.alg === 'ES256', `header alg ${header.alg}, expected ES256`);
  assert(header.typ === 'at+jwt', `header typ ${header.typ}, expected at+jwt`);
  assert(typeof header.kid === 'string', 'header has no kid');
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  assert(jwk, `kid ${header.kid} is not in the JWKS`);
  assert(jwk.kty === 'EC' && jwk.crv === 'P-256' && !('d' in jwk), `JWKS key ${JSON.stringify(jwk)} is not a public P-256 key`);
  const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
  const good = crypto.verify('sha256', Buffer.from(`${parts[0]}.${parts[1]}`), { key, dsaEncoding: 'ieee-p1363' },
    Buffer.from(parts[2], 'base64url'));
  assert(good, 'ES256 signature does not verify with the JWKS key');
  const aud = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
  assert(aud.length === 1 && aud[0] === resource, `aud ${JSON.stringify(payload.aud)}, expected ${resource}`);
  assert(payload.iss === discovery.issuer, `iss ${payload.iss}, expected ${discovery.issuer}`);
  assert(payload.tenant === 'acme', `tenant ${JSON.stringify(payload.tenant)}`);
  assert(payload.client_id === clientId || payload.azp === clientId,
    `neither client_id (${payload.client_id}) nor azp (${payload.azp}) is ${clientId}`);
  assert(typeof payload.sub === 'string' && payload.sub.length > 0, `sub ${JSON.stringify(payload.sub)}`);
  assert(payload.scope === scope, `scope ${JSON.stringify(payload.scope)}, expected ${scope}`);
  const now = Math.floor(Date.now() / 1000);
  assert(Number.isInteger(payload.exp) && payload.exp > now && payload.exp <= now + 3600,
    `exp ${payload.exp} (now ${now})`);
  assert(Number.isInteger(payload.iat) && Math.abs(payload.iat - now) < 60, `iat ${payload.iat} (now ${now})`);
  assert(tokenResponse.scope === scope, `token response scope ${tokenResponse.scope}`);
  return tok;
}

const claimsNote = (t) => {
  const { alg, typ, kid } = t.header;
  const { iss, aud, sub, client_id: cid, azp, tenant, scope, exp, iat } = t.payload;
  return `header ${JSON.stringify({ alg, typ, kid })} claims ${JSON.stringify({ iss, aud, sub, client_id: cid, azp, tenant, scope, ttl_s: exp - iat })}`;
};

const tokens = {};

await check('oidc-provider metadata names the token endpoint and the JWKS mcpvisor fetches', async () => {
  const r = await httpFetch(`${opts.issuer}/.well-known/openid-configuration`);
  assert(r.status === 200, `discovery: HTTP ${r.status}`);
  discovery = await r.json();
  assert(discovery.issuer === opts.issuer, `issuer ${discovery.issuer}, expected ${opts.issuer}`);
  assert(discovery.jwks_uri === opts['jwks-url'], `jwks_uri ${discovery.jwks_uri}, mcpvisor is given ${opts['jwks-url']}`);
  assert(discovery.grant_types_supported?.includes('client_credentials'), 'client_credentials not in grant_types_supported');
  const j = await httpFetch(opts['jwks-url']);
  assert(j.status === 200, `JWKS: HTTP ${j.status}`);
  jwks = await j.json();
  assert(Array.isArray(jwks.keys) && jwks.keys.length > 0, 'JWKS has no keys');
  return `token_endpoint ${discovery.token_endpoint}, jwks_uri ${discovery.jwks_uri}, ${jwks.keys.length} key(s): ${jwks.keys.map((k) => `${k.kty}/${k.crv ?? ''}/${k.alg ?? ''}`).join(' ')}`;
});
if (!discovery || !jwks) {
  console.log(`oidc: ${passed} passed, ${failed} failed`);
  process.exit(1);
}

const wanted = [
  ['mcp', MCP_RESOURCE, 'mcp:tools'],
  ['ts', TS_RESOURCE, 'mcp:tools'],
  ['ts2', TS2_RESOURCE, 'mcp:tools'],
  ['other', OTHER_RESOURCE, 'other:read']
];
for (const [name, resource, scope] of wanted) {
  await check(`oidc-provider issues an ES256 at+jwt for resource=${resource} scope=${scope} (client credentials)`, async () => {
    // Ask for both scopes: the provider must keep only the one this resource server accepts.
    const t = checkToken(await getToken(resource, 'mcp:tools other:read'), resource, scope);
    tokens[name] = t;
    return claimsNote(t);
  });
}

await check(`oidc-provider defaults a request without a resource indicator to ${MCP_RESOURCE}`, async () =>
  claimsNote(checkToken(await getToken(undefined, 'mcp:tools'), MCP_RESOURCE, 'mcp:tools')));

await check('oidc-provider refuses an unknown resource indicator (invalid_target)', async () => {
  const body = new URLSearchParams({ grant_type: 'client_credentials', resource: 'https://unknown.example.test', scope: 'mcp:tools' });
  const r = await httpFetch(discovery.token_endpoint, {
    method: 'POST',
    headers: { Authorization: `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString('base64')}`, 'Content-Type': 'application/x-www-form-urlencoded' },
    body
  });
  const text = await r.text();
  assert(r.status === 400 && JSON.parse(text).error === 'invalid_target', `HTTP ${r.status} ${text}`);
});

// ---- mcpvisor ----------------------------------------------------------------------------------

function mcpHeaders(token, sessionId) {
  const h = {
    Accept: 'application/json, text/event-stream',
    'Content-Type': 'application/json'
  };
  if (token !== undefined) h.Authorization = `Bearer ${token}`;
  if (sessionId !== undefined) {
    h['Mcp-Session-Id'] = sessionId;
    h['MCP-Protocol-Version'] = PROTOCOL;
  }
  return h;
}

function describe(r, text) {
  const hs = ['content-type', 'www-authenticate', 'mcp-session-id']
    .filter((k) => r.headers.get(k) !== null)
    .map((k) => `${k}: ${r.headers.get(k)}`);
  return `HTTP ${r.status} [${hs.join('; ')}] ${text.slice(0, 300)}`;
}

// The JSON-RPC answer in a POST reply, whether a JSON body or an SSE stream.
function answerOf(r, text) {
  const ct = (r.headers.get('content-type') ?? '').split(';')[0].trim().toLowerCase();
  if (ct === 'application/json') return JSON.parse(text);
  assert(ct === 'text/event-stream', `unexpected content-type ${ct}: ${describe(r, text)}`);
  const msgs = [];
  for (const ev of text.split(/\r?\n\r?\n/)) {
    const data = ev.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, '')).join('\n');
    if (data) msgs.push(JSON.parse(data));
  }
  const answers = msgs.filter((m) => m && ('result' in m || 'error' in m));
  assert(answers.length > 0, `no JSON-RPC answer in the SSE stream: ${text.slice(0, 300)}`);
  return answers[answers.length - 1];
}

async function post(token, msg, sessionId) {
  const r = await httpFetch(opts.mcp, { method: 'POST', headers: mcpHeaders(token, sessionId), body: JSON.stringify(msg) });
  const text = await r.text();
  return { r, text };
}

const initialize = (id = 0) => ({
  jsonrpc: '2.0',
  id,
  method: 'initialize',
  params: { protocolVersion: PROTOCOL, capabilities: {}, clientInfo: { name: 'mcpvisor-oidc-interop', version: '1' } }
});

// initialize, notifications/initialized, tools/call echo: the whole exchange with one token.
async function endToEnd(token) {
  const init = await post(token, initialize());
  assert(init.r.status === 200, `initialize: ${describe(init.r, init.text)}`);
  const sid = init.r.headers.get('mcp-session-id');
  assert(sid, `initialize: no Mcp-Session-Id: ${describe(init.r, init.text)}`);
  const initAnswer = answerOf(init.r, init.text);
  assert(initAnswer.result?.protocolVersion === PROTOCOL, `initialize answer ${JSON.stringify(initAnswer).slice(0, 300)}`);
  const note = await post(token, { jsonrpc: '2.0', method: 'notifications/initialized' }, sid);
  assert(note.r.status === 202, `notifications/initialized: ${describe(note.r, note.text)}`);
  const call = await post(token, { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { text: 'hi' } } }, sid);
  assert(call.r.status === 200, `tools/call: ${describe(call.r, call.text)}`);
  const answer = answerOf(call.r, call.text);
  const text = answer.result?.content?.find((c) => c.type === 'text')?.text;
  assert(text === 'hi' && answer.result.isError !== true, `tools/call echo answered ${JSON.stringify(answer).slice(0, 300)}`);
  return { sid, note: `session ${sid.slice(0, 8)}…, echo → "${text}"` };
}

async function expect401(token, what, sessionId) {
  const { r, text } = await post(token, initialize(), sessionId);
  assert(r.status === 401, `${what}: expected 401, got ${describe(r, text)}`);
  const wa = r.headers.get('www-authenticate');
  assert(wa && /^Bearer(\s|$)/i.test(wa), `${what}: 401 without a WWW-Authenticate: Bearer header: ${describe(r, text)}`);
  return `WWW-Authenticate: ${wa}`;
}

// The same token with its payload changed (tenant), the signature kept.
function tamper(t) {
  const payload = { ...t.payload, tenant: 'other' };
  return `${t.parts[0]}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${t.parts[2]}`;
}

if (opts.mcp) {
  let session;
  if (tokens.mcp) {
    await check(`mcpvisor accepts the oidc-provider token for ${MCP_RESOURCE}: initialize, tools/call echo`, async () => {
      session = await endToEnd(tokens.mcp.parts.join('.'));
      return session.note;
    });
  }
  if (tokens.ts) {
    await check(`mcpvisor accepts a token for the server's own endpoint (aud ${TS_RESOURCE})`, async () =>
      (await endToEnd(tokens.ts.parts.join('.'))).note);
  }
  if (tokens.other) {
    await check(`mcpvisor refuses a token for another resource (aud ${OTHER_RESOURCE}) with 401`, async () =>
      expect401(tokens.other.parts.join('.'), 'other resource'));
    if (session) {
      await check('mcpvisor refuses the other-resource token on an established session with 401', async () =>
        expect401(tokens.other.parts.join('.'), 'other resource, existing session', session.sid));
    }
  }
  if (tokens.ts2) {
    await check(`mcpvisor refuses at servers/ts a token for another server's endpoint (aud ${TS2_RESOURCE}) with 401`, async () =>
      expect401(tokens.ts2.parts.join('.'), 'other server endpoint'));
  }
  await check('mcpvisor refuses a request without a token with 401', async () => expect401(undefined, 'no token'));
  if (tokens.mcp) {
    await check('mcpvisor refuses a tampered token (payload changed, signature kept) with 401', async () =>
      expect401(tamper(tokens.mcp), 'tampered token'));
  }
}

console.log(`oidc: ${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
