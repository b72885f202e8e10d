#!/usr/bin/env node
// A real OAuth 2.0 authorization server for the interop suite: node-oidc-provider on 127.0.0.1,
// issuing JWT access tokens (RFC 9068, "at+jwt", ES256) for the client credentials grant with a
// resource indicator (RFC 8707).
//
//   OIDC_CLIENT_ID=ID OIDC_CLIENT_SECRET=SECRET node provider.mjs [--port N]
//
// Prints "listening ISSUER" on stdout once it accepts requests (ISSUER = http://127.0.0.1:PORT,
// no trailing slash; --port 0, the default, picks a free port). Its JWKS is at ISSUER/jwks and its
// metadata at ISSUER/.well-known/openid-configuration. Diagnostics go to stderr.
//
// One confidential client (client_secret_basic, grant client_credentials). Resource servers it
// issues tokens for (anything else is invalid_target):
//   https://mcp.example.test                    mcpvisor (scope mcp:tools)
//   https://mcp.example.test/servers/ts/mcp     one of mcpvisor's server endpoints (mcp:tools)
//   https://mcp.example.test/servers/ts2/mcp    another server endpoint (mcp:tools)
//   https://other.example.test                  some other API (other:read)
// A request without a resource gets https://mcp.example.test (defaultResource). Every access token
// carries tenant: "acme" (extraTokenClaims), besides the RFC 9068 claims oidc-provider sets
// itself: iss, sub (= client_id for this grant), aud, exp, iat, jti, client_id, scope.

import crypto from 'node:crypto';
import http from 'node:http';
import Provider, { errors } from 'oidc-provider';

export const MCP_RESOURCE = 'https://mcp.example.test';
export const RESOURCES = {
  [MCP_RESOURCE]: 'mcp:tools',
  [`${MCP_RESOURCE}/servers/ts/mcp`]: 'mcp:tools',
  [`${MCP_RESOURCE}/servers/ts2/mcp`]: 'mcp:tools',
  'https://other.example.test': 'other:read'
};
const TENANT = 'acme';

function usage(msg) {
  process.stderr.write(`provider.mjs: ${msg}\nusage: OIDC_CLIENT_ID=ID OIDC_CLIENT_SECRET=SECRET node provider.mjs [--port N]\n`);
  process.exit(2);
}

let port = 0;
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--port' && /^\d+$/.test(argv[i + 1] ?? '')) port = Number(argv[++i]);
    else usage(`bad argument ${argv[i]}`);
  }
}
const clientId = process.env.OIDC_CLIENT_ID;
const clientSecret = process.env.OIDC_CLIENT_SECRET;
if (!clientId || !clientSecret) usage('set OIDC_CLIENT_ID and OIDC_CLIENT_SECRET');

// A fresh P-256 signing key per run; the provider publishes its public half at /jwks.
const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signingJwk = {
  ...privateKey.export({ format: 'jwk' }),
  kid: `es256-${crypto.randomBytes(6).toString('hex')}`,
  alg: 'ES256',
  use: 'sig'
};

const server = http.createServer();
server.listen(port, '127.0.0.1');
await new Promise((resolve, reject) => {
  server.once('listening', resolve);
  server.once('error', reject);
});
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: [...new Set(Object.values(RESOURCES))].join(' '),
      id_token_signed_response_alg: 'ES256'
    }
  ],
  jwks: { keys: [signingJwk] },
  scopes: [...new Set(Object.values(RESOURCES))],
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  enabledJWA: { idTokenSigningAlgValues: ['ES256'] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: false },
    revocation: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => MCP_RESOURCE,
      useGrantedResource: async () => false,
      getResourceServerInfo: async (_ctx, resourceIndicator, _client) => {
        const scope = RESOURCES[resourceIndicator];
        if (scope === undefined) throw new errors.InvalidTarget();
        return {
          scope,
          audience: resourceIndicator,
          accessTokenTTL: 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } }
        };
      }
    }
  },
  extraTokenClaims: async (_ctx, _token) => ({ tenant: TENANT }),
  ttl: { ClientCredentials: 600 },
  renderError: async (ctx, out) => {
    ctx.type = 'json';
    ctx.body = out;
  }
});
provider.on('server_error', (_ctx, err) => process.stderr.write(`provider: server_error ${err.stack}\n`));
provider.on('grant.error', (_ctx, err) => process.stderr.write(`provider: grant.error ${err.message} ${err.error_description ?? ''}\n`));

server.on('request', provider.callback());
process.stdout.write(`listening ${issuer}\n`);

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
