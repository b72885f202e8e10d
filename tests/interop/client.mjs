#!/usr/bin/env node
// Drives an MCP server with the official TypeScript SDK client, over Streamable HTTP and over the
// legacy HTTP+SSE transport, the way a real MCP host would. Written against
// @modelcontextprotocol/server-everything (behind mcpvisor, or standing alone for a dry run:
// `PORT=3001 node node_modules/@modelcontextprotocol/server-everything/dist/index.js streamableHttp`).
//
// Per transport: connect (initialize), ping, tools/list, tools/call echo, resources/read,
// prompts/get, progress notifications, concurrent requests on one session, the server's own
// requests while a call is pending (sampling, elicitation, roots), and close (DELETE).
//
//   node client.mjs [--token KEY] [--name NAME] [--shared-child] [--streamable URL] [--sse URL]
//
// --token (or MCP_INTEROP_TOKEN) is sent as "Authorization: Bearer KEY" on every request; with a
// token, two extra checks assert that requests without it, or with a wrong one, are refused (401).
// --name NAME prefixes every check name and this client's root and sampling answer with "NAME/",
// so several clients can run at once against one server and be told apart.
// --shared-child: the server is one process shared with other sessions (isolation "tenant").
// server-everything asks for roots once per process and keeps them, so every client gives the same
// root (SHARED_ROOT, as pool-client.mjs does) and the roots check asks only that the server knows
// it, not that it asked this client.
// Prints "ok NAME" or "not ok NAME: REASON" per check, then "client: N passed, M failed";
// exits 1 if any check failed, 2 on a usage error.

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  LATEST_PROTOCOL_VERSION,
  ListRootsRequestSchema
} from '@modelcontextprotocol/sdk/types.js';
import { SHARED_ROOT, assert, check, reason, tally, textOf } from './checks.mjs';


function usage(msg) {
  if (msg) process.stderr.write(`client.mjs: ${msg}\n`);
  process.stderr.write('usage: node client.mjs [--token KEY] [--name NAME] [--shared-child] [--streamable URL] [--sse URL]\n');
  process.exit(2);
}

const opts = {
  token: process.env.MCP_INTEROP_TOKEN || undefined,
  name: undefined,
  'shared-child': false,
  streamable: undefined,
  sse: undefined
};
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i].replace(/^--/, '');
    if (key === 'shared-child') {
      opts[key] = true;
      continue;
    }
    if (!(key in opts) || argv[i + 1] === undefined) usage(`bad argument ${argv[i]}`);
    opts[key] = argv[++i];
  }
  if (!opts.streamable && !opts.sse) usage('give --streamable URL and/or --sse URL');
}


const prefix = opts.name ? `${opts.name}/` : '';

const authHeaders = () => (opts.token ? { Authorization: `Bearer ${opts.token}` } : {});

function makeTransport(kind, url) {
  const requestInit = { headers: authHeaders() };
  if (kind === 'streamable') return new StreamableHTTPClientTransport(new URL(url), { requestInit });
  return new SSEClientTransport(new URL(url), { requestInit });
}

async function suite(kind, url) {
  const label = prefix + (kind === 'streamable' ? 'streamable-http' : 'sse');
  const client = new Client(
    { name: 'mcpvisor-interop-client', version: '1.0.0' },
    { capabilities: { sampling: {}, elicitation: {}, roots: { listChanged: true } } }
  );
  const transport = makeTransport(kind, url);
  // Answers to the server's own requests (server-everything asks for roots after initialize, and
  // its trigger-* tools ask for sampling and elicitation while a tools/call is pending).
  const ROOT = opts['shared-child']
    ? SHARED_ROOT
    : { uri: `file:///tmp/mcpvisor-interop/${label}`, name: `interop-${label}` };
  const asked = { roots: 0, sampling: 0, elicitation: 0 };
  client.setRequestHandler(ListRootsRequestSchema, async () => {
    asked.roots++;
    return { roots: [ROOT] };
  });
  client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
    asked.sampling++;
    const said = request.params.messages.map((m) => m.content?.text ?? '').join(' ');
    return {
      role: 'assistant',
      content: { type: 'text', text: `sampled-by-${label} (${said.length} chars asked)` },
      model: 'interop-model',
      stopReason: 'endTurn'
    };
  });
  client.setRequestHandler(ElicitRequestSchema, async () => {
    asked.elicitation++;
    return { action: 'decline' };
  });
  const clientErrors = [];
  const lateProgress = [];
  client.onerror = (err) => {
    // The SDK client hands notifications to their handlers a microtask later than responses, so a
    // final progress notification that arrives in the same read as its response (likely on the
    // legacy SSE transport) is reported as "unknown token". That is the client's race, not the
    // server's: such notifications are counted from the wire below instead.
    if (/progress notification for an unknown token/i.test(reason(err))) lateProgress.push(reason(err));
    else clientErrors.push(reason(err));
  };
  // Every progress notification as it came off the wire, in order.
  const wireProgress = [];

  const connected = await check(`${label} connect`, async () => {
    await client.connect(transport);
    const deliver = transport.onmessage;
    transport.onmessage = (message, extra) => {
      if (message?.method === 'notifications/progress') wireProgress.push(message.params);
      deliver?.call(transport, message, extra);
    };
    const info = client.getServerVersion();
    assert(info?.name, 'initialize answered without serverInfo.name');
    assert(client.getServerCapabilities()?.tools, 'server does not declare the tools capability');
  });
  if (!connected) {
    for (const name of ['ping', 'tools/list', 'tools/call echo', 'resources/read', 'prompts/get', 'progress',
      'concurrent requests', 'sampling', 'elicitation', 'roots', 'close']) {
      console.log(`not ok ${label} ${name}: not connected`);
      tally.failed++;
    }
    await client.close().catch(() => {});
    return;
  }

  await check(`${label} ping`, async () => {
    const r = await client.ping();
    assert(r && typeof r === 'object', `ping answered ${JSON.stringify(r)}`);
  });

  let tools = [];
  await check(`${label} tools/list`, async () => {
    tools = (await client.listTools()).tools ?? [];
    const names = tools.map((t) => t.name);
    assert(names.includes('echo'), `no echo tool among ${names.join(', ')}`);
    for (const t of tools) assert(t.inputSchema?.type === 'object', `tool ${t.name} has no object inputSchema`);
  });
  const longRunning =
    tools.find((t) => t.name === 'trigger-long-running-operation')?.name ??
    tools.find((t) => /long.?running/i.test(t.name))?.name ??
    'trigger-long-running-operation';

  await check(`${label} tools/call echo`, async () => {
    const message = `héllo from ${label} ✓ ${Date.now()}`;
    const r = await client.callTool({ name: 'echo', arguments: { message } });
    assert(!r.isError, `isError: ${textOf(r)}`);
    assert(textOf(r) === `Echo: ${message}`, `unexpected echo ${JSON.stringify(textOf(r))}`);
  });

  await check(`${label} resources/read`, async () => {
    const { resources = [] } = await client.listResources();
    const { resourceTemplates = [] } = await client.listResourceTemplates();
    assert(resources.length + resourceTemplates.length > 0, 'no resources and no templates listed');
    // A templated resource proves parameters travel; a listed one that listing and reading agree.
    const uri = resourceTemplates.some((t) => t.uriTemplate.startsWith('demo://resource/dynamic/text/'))
      ? 'demo://resource/dynamic/text/1'
      : resources[0]?.uri;
    assert(uri, 'nothing to read');
    const r = await client.readResource({ uri });
    const c = r.contents?.[0];
    assert(c, `no contents for ${uri}`);
    assert(c.uri === uri, `contents uri ${c.uri} != ${uri}`);
    assert(typeof c.text === 'string' || typeof c.blob === 'string', 'contents have neither text nor blob');
    if (resources[0]) {
      const r2 = await client.readResource({ uri: resources[0].uri });
      assert(r2.contents?.length > 0, `no contents for listed ${resources[0].uri}`);
    }
  });

  await check(`${label} prompts/get`, async () => {
    const { prompts = [] } = await client.listPrompts();
    const names = prompts.map((p) => p.name);
    if (names.includes('args-prompt')) {
      const r = await client.getPrompt({ name: 'args-prompt', arguments: { city: 'Zürich', state: 'ZH' } });
      const t = JSON.stringify(r.messages);
      assert(t.includes('Zürich') && t.includes('ZH'), `arguments not substituted: ${t}`);
    } else {
      const p = prompts.find((x) => !(x.arguments ?? []).some((a) => a.required));
      assert(p, `no prompt without required arguments among ${names.join(', ')}`);
      const r = await client.getPrompt({ name: p.name });
      assert(r.messages?.length > 0, `prompt ${p.name} has no messages`);
    }
  });

  await check(`${label} progress`, async () => {
    const delivered = [];
    const steps = 4;
    const before = wireProgress.length;
    const r = await client.callTool(
      { name: longRunning, arguments: { duration: 1, steps } },
      undefined,
      { onprogress: (p) => delivered.push(p), timeout: 20000, resetTimeoutOnProgress: true }
    );
    assert(!r.isError, `isError: ${textOf(r)}`);
    await new Promise((resolve) => setTimeout(resolve, 50)); // let queued notifications drain
    const updates = wireProgress.slice(before);
    assert(updates.length === steps, `expected ${steps} progress notifications, got ${updates.length}`);
    const token = updates[0].progressToken;
    assert(token !== undefined && updates.every((u) => u.progressToken === token), 'progress tokens differ');
    for (let i = 1; i < updates.length; i++) {
      assert(updates[i].progress > updates[i - 1].progress, `progress not increasing: ${JSON.stringify(updates)}`);
    }
    assert(updates.at(-1).total === steps, `last progress has total ${updates.at(-1).total}`);
    // All but (at most) the last must have reached the handler before the response.
    assert(delivered.length >= steps - 1, `only ${delivered.length} progress notifications reached onprogress`);
  });

  // Several requests in flight on one session: the broker must match each answer to its request.
  await check(`${label} concurrent requests`, async () => {
    const slow = client.callTool({ name: longRunning, arguments: { duration: 0.6, steps: 3 } }, undefined, {
      onprogress: () => {}
    });
    const msgs = Array.from({ length: 8 }, (_, i) => `concurrent-${i}`);
    const echoes = await Promise.all(msgs.map((message) => client.callTool({ name: 'echo', arguments: { message } })));
    echoes.forEach((r, i) => assert(textOf(r) === `Echo: ${msgs[i]}`, `answer ${i} mismatched: ${textOf(r)}`));
    const s = await slow;
    assert(!s.isError && /completed/i.test(textOf(s)), `slow call: ${textOf(s)}`);
  });

  // Server-to-client requests while a tools/call is pending: they must reach this client (on the
  // POST's SSE stream, or the legacy SSE stream) and the answers must reach the server.
  await check(`${label} sampling`, async () => {
    const before = asked.sampling;
    const r = await client.callTool({ name: 'trigger-sampling-request', arguments: { prompt: 'interop', maxTokens: 16 } });
    assert(!r.isError, `isError: ${textOf(r)}`);
    assert(asked.sampling === before + 1, `client was asked ${asked.sampling - before} times for sampling`);
    assert(textOf(r).includes(`sampled-by-${label}`), `sampling answer did not reach the server: ${textOf(r)}`);
  });

  await check(`${label} elicitation`, async () => {
    const before = asked.elicitation;
    const r = await client.callTool({ name: 'trigger-elicitation-request', arguments: {} });
    assert(!r.isError, `isError: ${textOf(r)}`);
    assert(asked.elicitation === before + 1, `client was asked ${asked.elicitation - before} times to elicit`);
    assert(/declined/i.test(textOf(r)), `decline did not reach the server: ${textOf(r).slice(0, 200)}`);
  });

  await check(`${label} roots`, async () => {
    const r = await client.callTool({ name: 'get-roots-list', arguments: {} });
    assert(!r.isError, `isError: ${textOf(r)}`);
    assert(asked.roots >= 1 || opts['shared-child'], 'the server never asked this client for roots');
    assert(textOf(r).includes(ROOT.uri), `the server does not know this client's root: ${textOf(r).slice(0, 200)}`);
  });

  await check(`${label} close`, async () => {
    if (kind === 'streamable') {
      assert(transport.sessionId, 'server gave no Mcp-Session-Id');
      await transport.terminateSession(); // DELETE; a 405 is accepted by the SDK
    }
    await client.close();
    assert(clientErrors.length === 0, `client transport errors: ${clientErrors.join('; ')}`);
    if (lateProgress.length > 0) {
      console.log(`# ${label}: ${lateProgress.length} final progress notification(s) arrived with their response`);
    }
  });
}

// Without credentials (or with a wrong key) the endpoint must refuse before any MCP processing.
async function authChecks(url) {
  const initialize = JSON.stringify({
    jsonrpc: '2.0',
    id: 1,
    method: 'initialize',
    params: {
      protocolVersion: LATEST_PROTOCOL_VERSION,
      capabilities: {},
      clientInfo: { name: 'mcpvisor-interop-client', version: '1.0.0' }
    }
  });
  const post = (headers) =>
    fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', ...headers },
      body: initialize
    });
  await check(`${prefix}auth missing key refused`, async () => {
    const r = await post({});
    await r.body?.cancel();
    assert(r.status === 401, `HTTP ${r.status}, expected 401`);
    assert(/^bearer/i.test(r.headers.get('www-authenticate') ?? ''), 'no WWW-Authenticate: Bearer challenge');
  });
  await check(`${prefix}auth wrong key refused`, async () => {
    const r = await post({ Authorization: `Bearer wrong-${opts.token}` });
    await r.body?.cancel();
    assert(r.status === 401, `HTTP ${r.status}, expected 401`);
  });
}

if (opts.streamable) await suite('streamable', opts.streamable);
if (opts.sse) await suite('sse', opts.sse);
if (opts.token && opts.streamable) await authChecks(opts.streamable);

console.log(`client: ${tally.passed} passed, ${tally.failed} failed`);
process.exit(tally.failed > 0 ? 1 : 0);
