#!/usr/bin/env node
// Drives @modelcontextprotocol/server-filesystem (behind mcpvisor, in its sandbox) with the official
// TypeScript SDK client over Streamable HTTP. The server was started with DATA as its only allowed
// directory, and the sandbox binds DATA read-write; this client runs on the host, so it also checks
// that what the server wrote really landed in DATA.
//
// Checks: connect (initialize), tools/list (read_text_file, write_file, list_directory), list_directory
// of DATA, read_text_file of a seeded file, write_file of a new file read back through the server and
// on the host, write_file over a seeded file (temp file + rename), reads outside DATA (/etc/hostname
// and a ../ escape) refused by the server, and close (DELETE).
//
//   node fs-client.mjs --url URL --data DIR [--token KEY]
//
// DIR must hold hello.txt (its content "hello from the host\n") and notes.md, as run.sh creates them.
// --token (or MCP_INTEROP_TOKEN) is sent as "Authorization: Bearer KEY".
// Prints "ok NAME" or "not ok NAME: REASON" per check, then "fs: N passed, M failed"; exits 1 if any
// check failed, 2 on a usage error.

import fs from 'node:fs';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { assert, check, reason, tally, textOf } from './checks.mjs';

const HELLO = 'hello from the host\n';

function usage(msg) {
  if (msg) process.stderr.write(`fs-client.mjs: ${msg}\n`);
  process.stderr.write('usage: node fs-client.mjs --url URL --data DIR [--token KEY]\n');
  process.exit(2);
}

const opts = { token: process.env.MCP_INTEROP_TOKEN || undefined, url: undefined, data: undefined };
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i].replace(/^--/, '');
    if (!(key in opts) || argv[i + 1] === undefined) usage(`bad argument ${argv[i]}`);
    opts[key] = argv[++i];
  }
  if (!opts.url || !opts.data) usage('give --url URL and --data DIR');
  if (!path.isAbsolute(opts.data)) usage('--data must be an absolute path');
}
const DATA = opts.data;


const CHECKS = ['connect', 'tools/list', 'list_directory', 'read_text_file', 'write_file new',
  'write_file overwrite', 'read outside DATA refused', 'read ../ escape refused', 'close'];

// No roots capability: the server then keeps the directory it was started with (DATA) and does
// not ask this client for roots.
const client = new Client({ name: 'mcpvisor-interop-fs-client', version: '1.0.0' }, { capabilities: {} });
const transport = new StreamableHTTPClientTransport(new URL(opts.url), {
  requestInit: { headers: opts.token ? { Authorization: `Bearer ${opts.token}` } : {} }
});
const clientErrors = [];
client.onerror = (err) => clientErrors.push(reason(err));

const connected = await check('fs connect', async () => {
  await client.connect(transport);
  const info = client.getServerVersion();
  assert(info?.name, 'initialize answered without serverInfo.name');
  assert(client.getServerCapabilities()?.tools, 'server does not declare the tools capability');
});
if (!connected) {
  for (const name of CHECKS.slice(1)) {
    console.log(`not ok fs ${name}: not connected`);
    tally.failed++;
  }
  await client.close().catch(() => {});
  console.log(`fs: ${tally.passed} passed, ${tally.failed} failed`);
  process.exit(1);
}

// read_text_file in current versions; read_file (deprecated, same handler) in older ones.
let readTool = 'read_text_file';
await check('fs tools/list', async () => {
  const names = ((await client.listTools()).tools ?? []).map((t) => t.name);
  if (!names.includes('read_text_file') && names.includes('read_file')) readTool = 'read_file';
  for (const want of [readTool, 'write_file', 'list_directory']) {
    assert(names.includes(want), `no ${want} tool among ${names.join(', ')}`);
  }
});

const call = (name, args) => client.callTool({ name, arguments: args });

async function readViaServer(file) {
  const r = await call(readTool, { path: file });
  assert(!r.isError, `${readTool} ${file}: isError: ${textOf(r)}`);
  return textOf(r);
}

await check('fs list_directory', async () => {
  const r = await call('list_directory', { path: DATA });
  assert(!r.isError, `isError: ${textOf(r)}`);
  const lines = textOf(r).split('\n');
  for (const f of ['hello.txt', 'notes.md']) {
    assert(lines.includes(`[FILE] ${f}`), `${f} not listed: ${JSON.stringify(textOf(r))}`);
  }
});

await check(`fs ${readTool}`, async () => {
  const got = await readViaServer(path.join(DATA, 'hello.txt'));
  assert(got === HELLO, `hello.txt read as ${JSON.stringify(got)}`);
});

await check('fs write_file new', async () => {
  const file = path.join(DATA, 'written-by-server.txt');
  const content = `written through mcpvisor ✓ ${Date.now()}\nsecond line\n`;
  const r = await call('write_file', { path: file, content });
  assert(!r.isError, `isError: ${textOf(r)}`);
  const back = await readViaServer(file);
  assert(back === content, `read back ${JSON.stringify(back)}, wrote ${JSON.stringify(content)}`);
  assert(fs.existsSync(file), `${file} does not exist on the host`);
  const onHost = fs.readFileSync(file, 'utf8');
  assert(onHost === content, `on the host ${file} holds ${JSON.stringify(onHost)}`);
  console.log(`# ${path.basename(file)} on the host: uid ${fs.statSync(file).uid}`);
});

// An existing file is replaced through a temporary file and rename(2), then chmod(2).
await check('fs write_file overwrite', async () => {
  const file = path.join(DATA, 'notes.md');
  const content = `# notes\nreplaced by the server at ${Date.now()}\n`;
  const r = await call('write_file', { path: file, content });
  assert(!r.isError, `isError: ${textOf(r)}`);
  assert(fs.readFileSync(file, 'utf8') === content, `on the host ${file} was not replaced`);
  const left = fs.readdirSync(DATA).filter((f) => f.endsWith('.tmp'));
  assert(left.length === 0, `temporary files left behind: ${left.join(', ')}`);
});

// The server must refuse by its own allowed-directory rule ("Access denied"), not merely fail to
// find the file in its private root.
async function refused(file) {
  let r;
  try {
    r = await call(readTool, { path: file });
  } catch (err) {
    assert(/access denied|outside allowed/i.test(reason(err)), `refused, but not by the server's rule: ${reason(err)}`);
    return;
  }
  assert(r.isError, `${file} was read: ${JSON.stringify(textOf(r).slice(0, 100))}`);
  assert(/access denied|outside allowed/i.test(textOf(r)), `refused, but not by the server's rule: ${textOf(r)}`);
}

await check('fs read outside DATA refused', () => refused('/etc/hostname'));
await check('fs read ../ escape refused', () => refused(`${DATA}/../outside.txt`));

await check('fs close', async () => {
  assert(transport.sessionId, 'server gave no Mcp-Session-Id');
  await transport.terminateSession();
  await client.close();
  assert(clientErrors.length === 0, `client transport errors: ${clientErrors.join('; ')}`);
});

console.log(`fs: ${tally.passed} passed, ${tally.failed} failed`);
process.exit(tally.failed > 0 ? 1 : 0);
