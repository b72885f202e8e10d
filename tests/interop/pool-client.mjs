#!/usr/bin/env node
// Two sessions of one tenant on one child: the official TypeScript SDK client, twice, over
// Streamable HTTP, against mcpvisor fronting @modelcontextprotocol/server-everything with
// "isolation": "tenant". Both clients number their requests from 0 and use those numbers as
// progress tokens, so every id and token they send collides with the other's on the shared
// child: mcpvisor must rewrite them and route each message back to its own session.
//
// Checks: both connect at once (distinct sessions, the same server), both list the same tools,
// interleaved echo calls each get their own answer, concurrent progress reaches only its own
// session, a sampling request made during one session's call goes to that client and its answer
// back to that call, concurrent ones are refused (mcpvisor cannot tell whose they are) but never
// crossed, and one session's DELETE leaves the other working.
//
//   node pool-client.mjs --url URL [--token KEY]
//
// --token (or MCP_INTEROP_TOKEN) is sent as "Authorization: Bearer KEY" on every request.
// Prints "ok NAME" or "not ok NAME: REASON" per check, then "pool-client: N passed, M failed";
// exits 1 if any check failed, 2 on a usage error.

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema
} from '@modelcontextprotocol/sdk/types.js';
import { SHARED_ROOT, assert, check, reason, tally, textOf } from './checks.mjs';

function usage(msg) {
  if (msg) process.stderr.write(`pool-client.mjs: ${msg}\n`);
  process.stderr.write('usage: node pool-client.mjs --url URL [--token KEY]\n');
  process.exit(2);
}

const opts = { token: process.env.MCP_INTEROP_TOKEN || undefined, url: undefined };
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i].replace(/^--/, '');
    if (!(key in opts) || argv[i + 1] === undefined) usage(`bad argument ${argv[i]}`);
    opts[key] = argv[++i];
  }
  if (!opts.url) usage('give --url URL');
}

const LABEL = 'tenant-pool';

// One session: an SDK client whose handlers answer with its own name, and the messages it got.
// Its capabilities are client.mjs's: the child is initialized once, with the first session's, and
// server-everything offers its sampling, elicitation and roots tools only to clients that have them.
function makeSession(name) {
  const client = new Client(
    { name: `mcpvisor-interop-pool-${name}`, version: '1.0.0' },
    { capabilities: { sampling: {}, elicitation: {}, roots: { listChanged: true } } }
  );
  const transport = new StreamableHTTPClientTransport(new URL(opts.url), {
    requestInit: { headers: opts.token ? { Authorization: `Bearer ${opts.token}` } : {} }
  });
  const s = { name, client, transport, sampled: [], progress: [], errors: [], closed: false };
  client.setRequestHandler(ListRootsRequestSchema, async () => ({ roots: [SHARED_ROOT] }));
  client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
    s.sampled.push(request.params);
    return {
      role: 'assistant',
      content: { type: 'text', text: `sampled-by-session-${name}` },
      model: 'interop-model',
      stopReason: 'endTurn'
    };
  });
  client.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'decline' }));
  client.onerror = (err) => {
    // As in client.mjs: a final progress notification read together with its response is
    // reported by the SDK as "unknown token"; progress is counted from the wire instead. Once
    // close() has returned, the SDK may still report its own abort of the GET stream.
    if (s.closed || /progress notification for an unknown token/i.test(reason(err))) return;
    s.errors.push(reason(err));
  };
  return s;
}

async function connect(s) {
  await s.client.connect(s.transport);
  const deliver = s.transport.onmessage;
  s.transport.onmessage = (message, extra) => {
    if (message?.method === 'notifications/progress') s.progress.push(message.params);
    deliver?.call(s.transport, message, extra);
  };
}

const a = makeSession('a');
const b = makeSession('b');
const both = [a, b];

const connected = await check(`${LABEL} two sessions connect at once`, async () => {
  await Promise.all(both.map(connect));
  assert(a.transport.sessionId && b.transport.sessionId, 'a session has no Mcp-Session-Id');
  assert(a.transport.sessionId !== b.transport.sessionId, 'both sessions got the same Mcp-Session-Id');
  const [ia, ib] = both.map((s) => s.client.getServerVersion());
  assert(ia?.name && ia.name === ib?.name, `server names differ: ${ia?.name} / ${ib?.name}`);
  assert(a.client.getServerCapabilities()?.tools && b.client.getServerCapabilities()?.tools,
    'a session was not told about the tools capability');
});

if (connected) {
  await check(`${LABEL} both list the same tools`, async () => {
    const [ta, tb] = await Promise.all(both.map(async (s) => (await s.client.listTools()).tools ?? []));
    const na = ta.map((t) => t.name).sort();
    const nb = tb.map((t) => t.name).sort();
    assert(na.includes('echo'), `no echo tool among ${na.join(', ')}`);
    assert(JSON.stringify(na) === JSON.stringify(nb), `listings differ: [${na}] / [${nb}]`);
  });

  // Interleaved calls: the ids the two clients use are the same numbers, in flight together.
  await check(`${LABEL} interleaved echo calls each get their own answer`, async () => {
    const calls = [];
    for (let i = 0; i < 12; i++) {
      for (const s of both) {
        const message = `session ${s.name} call ${i} ✓`;
        calls.push(s.client.callTool({ name: 'echo', arguments: { message } }).then((r) => [message, r]));
      }
    }
    for (const [message, r] of await Promise.all(calls)) {
      assert(!r.isError, `isError: ${textOf(r)}`);
      assert(textOf(r) === `Echo: ${message}`, `asked "${message}", answered ${JSON.stringify(textOf(r))}`);
    }
  });

  // Both clients use their request id as the progress token; the step counts tell them apart.
  await check(`${LABEL} concurrent progress reaches only its own session`, async () => {
    const steps = { a: 3, b: 5 };
    const before = { a: a.progress.length, b: b.progress.length };
    const results = await Promise.all(both.map((s) =>
      s.client.callTool(
        { name: 'trigger-long-running-operation', arguments: { duration: 1, steps: steps[s.name] } },
        undefined,
        { onprogress: () => {}, timeout: 20000, resetTimeoutOnProgress: true }
      )));
    results.forEach((r) => assert(!r.isError, `isError: ${textOf(r)}`));
    await new Promise((resolve) => setTimeout(resolve, 50));
    for (const s of both) {
      const got = s.progress.slice(before[s.name]);
      assert(got.length === steps[s.name],
        `session ${s.name} got ${got.length} progress notifications, expected ${steps[s.name]}: ${JSON.stringify(got)}`);
      assert(got.every((p) => p.total === steps[s.name]), `session ${s.name} got another's progress: ${JSON.stringify(got)}`);
    }
  });

  // The child's sampling request, made while one session's call is pending, must go to that
  // session, and its answer back to that call: each session in turn.
  await check(`${LABEL} sampling during one session's call goes to that session`, async () => {
    for (const s of both) {
      const before = s.sampled.length;
      const r = await s.client.callTool({ name: 'trigger-sampling-request', arguments: { prompt: `from ${s.name}`, maxTokens: 16 } });
      assert(!r.isError, `session ${s.name} isError: ${textOf(r)}`);
      const asked = s.sampled.slice(before);
      assert(asked.length === 1, `session ${s.name} was asked ${asked.length} times for sampling`);
      assert(JSON.stringify(asked[0].messages).includes(`from ${s.name}`), `session ${s.name} was asked another's prompt`);
      assert(textOf(r).includes(`sampled-by-session-${s.name}`),
        `session ${s.name}'s call got another answer: ${textOf(r).slice(0, 200)}`);
    }
  });

  // With calls of both sessions pending, the child's requests cannot be told apart: mcpvisor
  // refuses them (the child gets an error, server-everything's tool reports it), and neither
  // client may be asked the other's question or its call get the other's answer.
  await check(`${LABEL} concurrent sampling is refused or answered, never crossed`, async () => {
    const before = { a: a.sampled.length, b: b.sampled.length };
    const results = await Promise.all(both.map((s) =>
      s.client.callTool({ name: 'trigger-sampling-request', arguments: { prompt: `from ${s.name}`, maxTokens: 16 } })));
    both.forEach((s, i) => {
      const other = s === a ? 'b' : 'a';
      const text = textOf(results[i]);
      for (const q of s.sampled.slice(before[s.name])) {
        assert(!JSON.stringify(q.messages).includes(`from ${other}`), `session ${s.name} was asked session ${other}'s prompt`);
      }
      assert(!text.includes(`sampled-by-session-${other}`), `session ${s.name}'s call got session ${other}'s answer`);
      assert(text.includes(`sampled-by-session-${s.name}`) || /this child is shared/.test(text),
        `session ${s.name}: neither its answer nor the shared-child refusal: ${text.slice(0, 200)}`);
    });
  });

  await check(`${LABEL} one session's DELETE leaves the other working`, async () => {
    await a.transport.terminateSession();
    await a.client.close();
    a.closed = true;
    const message = 'still here after the other session ended';
    const r = await b.client.callTool({ name: 'echo', arguments: { message } });
    assert(textOf(r) === `Echo: ${message}`, `answered ${JSON.stringify(textOf(r))}`);
    await b.transport.terminateSession();
    await b.client.close();
    b.closed = true;
    for (const s of both) assert(s.errors.length === 0, `session ${s.name} transport errors: ${s.errors.join('; ')}`);
  });
} else {
  for (const name of ['both list the same tools', 'interleaved echo calls each get their own answer',
    'concurrent progress reaches only its own session', "sampling during one session's call goes to that session",
    'concurrent sampling is refused or answered, never crossed',
    "one session's DELETE leaves the other working"]) {
    console.log(`not ok ${LABEL} ${name}: not connected`);
    tally.failed++;
  }
  await Promise.all(both.map((s) => s.client.close().catch(() => {})));
}

console.log(`pool-client: ${tally.passed} passed, ${tally.failed} failed`);
process.exit(tally.failed > 0 ? 1 : 0);
