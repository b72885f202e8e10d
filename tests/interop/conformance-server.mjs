#!/usr/bin/env node
// An MCP server, written with the official TypeScript SDK, that offers every tool, resource and
// prompt the server scenarios of @modelcontextprotocol/conformance call.
//
//   node conformance-server.mjs               stdio (newline-delimited JSON-RPC), as mcpvisor runs it
//   node conformance-server.mjs --http PORT   Streamable HTTP at http://127.0.0.1:PORT/mcp, with
//                                             sessions, an event store (resumability) and DNS-rebinding
//                                             protection; PORT 0 picks a free port. Prints
//                                             "listening http://127.0.0.1:PORT/mcp" on stdout.
//
// Running the suite against both (directly over HTTP, and through mcpvisor over stdio) tells which
// differences mcpvisor introduces. Diagnostics go to stderr only: stdout is the protocol in stdio mode.

import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { z } from 'zod';
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import { completable } from '@modelcontextprotocol/sdk/server/completable.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import {
  CreateMessageResultSchema,
  ElicitResultSchema,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
  ListToolsRequestSchema,
  isInitializeRequest
} from '@modelcontextprotocol/sdk/types.js';

// A valid 1x1 PNG (one red pixel).
const PNG_1X1 =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC';

// A valid WAV file: 8 kHz, mono, 16-bit PCM, 80 samples of silence (10 ms).
function tinyWav() {
  const samples = 80;
  const data = samples * 2;
  const b = Buffer.alloc(44 + data);
  b.write('RIFF', 0);
  b.writeUInt32LE(36 + data, 4);
  b.write('WAVE', 8);
  b.write('fmt ', 12);
  b.writeUInt32LE(16, 16); // fmt chunk size
  b.writeUInt16LE(1, 20); // PCM
  b.writeUInt16LE(1, 22); // channels
  b.writeUInt32LE(8000, 24); // sample rate
  b.writeUInt32LE(8000 * 2, 28); // byte rate
  b.writeUInt16LE(2, 32); // block align
  b.writeUInt16LE(16, 34); // bits per sample
  b.write('data', 36);
  b.writeUInt32LE(data, 40);
  return b.toString('base64');
}
const WAV_TINY = tinyWav();

// The inputSchema json-schema-2020-12 expects verbatim ($schema, $defs, additionalProperties).
const JSON_SCHEMA_2020_12_INPUT = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  type: 'object',
  $defs: {
    address: {
      type: 'object',
      properties: { street: { type: 'string' }, city: { type: 'string' } }
    }
  },
  properties: {
    name: { type: 'string' },
    address: { $ref: '#/$defs/address' }
  },
  additionalProperties: false
};

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const text = (t) => ({ content: [{ type: 'text', text: t }] });
const log = (...a) => process.stderr.write(`conformance-server: ${a.join(' ')}\n`);

// One McpServer per connection (stdio: one; HTTP: one per session).
function buildServer() {
  const mcp = new McpServer(
    { name: 'mcpvisor-conformance-server', version: '1.0.0' },
    {
      capabilities: {
        tools: { listChanged: true },
        resources: { subscribe: true, listChanged: true },
        prompts: { listChanged: true },
        logging: {},
        completions: {}
      },
      instructions: 'Conformance test server for mcpvisor interoperability tests.'
    }
  );
  const server = mcp.server;
  const subscriptions = new Set();

  // Sends a log message related to the current request, honouring logging/setLevel.
  const relatedLog = async (extra, level, data) => {
    if (server.isMessageIgnored?.(level, extra.sessionId)) return;
    await extra.sendNotification({ method: 'notifications/message', params: { level, logger: 'conformance', data } });
  };

  // ---- tools ------------------------------------------------------------------------------------

  mcp.registerTool(
    'test_simple_text',
    { description: 'Returns a simple text content block' },
    async () => text('This is a simple text response for testing.')
  );

  mcp.registerTool(
    'test_image_content',
    { description: 'Returns an image content block (1x1 PNG)' },
    async () => ({ content: [{ type: 'image', data: PNG_1X1, mimeType: 'image/png' }] })
  );

  mcp.registerTool(
    'test_audio_content',
    { description: 'Returns an audio content block (a short WAV)' },
    async () => ({ content: [{ type: 'audio', data: WAV_TINY, mimeType: 'audio/wav' }] })
  );

  mcp.registerTool(
    'test_embedded_resource',
    { description: 'Returns an embedded resource content block' },
    async () => ({
      content: [
        {
          type: 'resource',
          resource: {
            uri: 'test://embedded-resource',
            mimeType: 'text/plain',
            text: 'This is an embedded resource content.'
          }
        }
      ]
    })
  );

  mcp.registerTool(
    'test_multiple_content_types',
    { description: 'Returns text, image and embedded resource content blocks' },
    async () => ({
      content: [
        { type: 'text', text: 'Multiple content types test:' },
        { type: 'image', data: PNG_1X1, mimeType: 'image/png' },
        {
          type: 'resource',
          resource: {
            uri: 'test://mixed-content-resource',
            mimeType: 'application/json',
            text: JSON.stringify({ test: 'data', value: 123 })
          }
        }
      ]
    })
  );

  mcp.registerTool(
    'test_tool_with_logging',
    { description: 'Sends three info log notifications while it runs', inputSchema: {} },
    async (_args, extra) => {
      await relatedLog(extra, 'info', 'Tool execution started');
      await sleep(50);
      await relatedLog(extra, 'info', 'Tool processing data');
      await sleep(50);
      await relatedLog(extra, 'info', 'Tool execution completed');
      return text('Tool with logging executed successfully');
    }
  );

  mcp.registerTool(
    'test_error_handling',
    { description: 'Always fails with isError: true' },
    async () => ({
      isError: true,
      content: [{ type: 'text', text: 'This tool intentionally returns an error for testing' }]
    })
  );

  mcp.registerTool(
    'test_tool_with_progress',
    { description: 'Reports progress 0/100, 50/100, 100/100 when given a progressToken', inputSchema: {} },
    async (_args, extra) => {
      const progressToken = extra._meta?.progressToken;
      for (const progress of [0, 50, 100]) {
        if (progressToken !== undefined) {
          await extra.sendNotification({
            method: 'notifications/progress',
            params: { progressToken, progress, total: 100, message: `step ${progress}` }
          });
        }
        if (progress < 100) await sleep(50);
      }
      return text('Tool with progress executed successfully');
    }
  );

  mcp.registerTool(
    'test_sampling',
    {
      description: 'Asks the client for an LLM completion (sampling/createMessage)',
      inputSchema: { prompt: z.string().describe('The prompt to send to the LLM') }
    },
    async ({ prompt }, extra) => {
      if (!server.getClientCapabilities()?.sampling) {
        return { isError: true, content: [{ type: 'text', text: 'Client does not support sampling' }] };
      }
      const result = await extra.sendRequest(
        {
          method: 'sampling/createMessage',
          params: { messages: [{ role: 'user', content: { type: 'text', text: prompt } }], maxTokens: 100 }
        },
        CreateMessageResultSchema
      );
      const reply = result.content?.type === 'text' ? result.content.text : JSON.stringify(result.content);
      return text(`LLM response: ${reply}`);
    }
  );

  const elicit = async (extra, params) => {
    if (!server.getClientCapabilities()?.elicitation) {
      return { isError: true, content: [{ type: 'text', text: 'Client does not support elicitation' }] };
    }
    const r = await extra.sendRequest({ method: 'elicitation/create', params }, ElicitResultSchema);
    return text(`Elicitation completed: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`);
  };

  mcp.registerTool(
    'test_elicitation',
    {
      description: 'Asks the user for input (elicitation/create)',
      inputSchema: { message: z.string().describe('The message to show the user') }
    },
    async ({ message }, extra) =>
      elicit(extra, {
        message,
        requestedSchema: {
          type: 'object',
          properties: {
            username: { type: 'string', description: "User's response" },
            email: { type: 'string', description: "User's email address" }
          },
          required: ['username', 'email']
        }
      })
  );

  mcp.registerTool(
    'test_elicitation_sep1034_defaults',
    { description: 'Elicitation whose schema has a default for every primitive type (SEP-1034)', inputSchema: {} },
    async (_args, extra) =>
      elicit(extra, {
        message: 'Please review and update the form fields with defaults',
        requestedSchema: {
          type: 'object',
          properties: {
            name: { type: 'string', description: 'User name', default: 'John Doe' },
            age: { type: 'integer', description: 'User age', default: 30 },
            score: { type: 'number', description: 'User score', default: 95.5 },
            status: {
              type: 'string',
              description: 'User status',
              enum: ['active', 'inactive', 'pending'],
              default: 'active'
            },
            verified: { type: 'boolean', description: 'Verification status', default: true }
          }
        }
      })
  );

  mcp.registerTool(
    'test_elicitation_sep1330_enums',
    { description: 'Elicitation with all five enum schema variants (SEP-1330)', inputSchema: {} },
    async (_args, extra) =>
      elicit(extra, {
        message: 'Please select options from the enum fields',
        requestedSchema: {
          type: 'object',
          properties: {
            untitledSingle: {
              type: 'string',
              description: 'Untitled single-select',
              enum: ['option1', 'option2', 'option3']
            },
            titledSingle: {
              type: 'string',
              description: 'Titled single-select',
              oneOf: [
                { const: 'value1', title: 'First Option' },
                { const: 'value2', title: 'Second Option' },
                { const: 'value3', title: 'Third Option' }
              ]
            },
            legacyEnum: {
              type: 'string',
              description: 'Legacy titled enum',
              enum: ['opt1', 'opt2', 'opt3'],
              enumNames: ['Option One', 'Option Two', 'Option Three']
            },
            untitledMulti: {
              type: 'array',
              description: 'Untitled multi-select',
              items: { type: 'string', enum: ['option1', 'option2', 'option3'] }
            },
            titledMulti: {
              type: 'array',
              description: 'Titled multi-select',
              items: {
                anyOf: [
                  { const: 'value1', title: 'First Choice' },
                  { const: 'value2', title: 'Second Choice' },
                  { const: 'value3', title: 'Third Choice' }
                ]
              }
            }
          }
        }
      })
  );

  mcp.registerTool(
    'json_schema_2020_12_tool',
    {
      description: 'Tool with JSON Schema 2020-12 features',
      inputSchema: {
        name: z.string().optional(),
        address: z.object({ street: z.string().optional(), city: z.string().optional() }).optional()
      }
    },
    async (args) => text(`json_schema_2020_12_tool called with ${JSON.stringify(args)}`)
  );

  mcp.registerTool(
    'test_reconnection',
    { description: 'Closes the SSE stream of its own request mid-call, then answers (SEP-1699)', inputSchema: {} },
    async (_args, extra) => {
      await sleep(100);
      // Only the HTTP transport with an event store can close a request's stream; over stdio the
      // supervisor in front owns the HTTP side, so the tool just answers.
      extra.closeSSEStream?.();
      await sleep(200);
      return text('Reconnection test completed successfully.');
    }
  );

  // registerTool converts zod to JSON Schema, which loses $schema/$defs/additionalProperties; the
  // listing of json_schema_2020_12_tool carries the schema verbatim instead.
  const sdkListTools = server._requestHandlers.get('tools/list');
  server.setRequestHandler(ListToolsRequestSchema, async (request, extra) => {
    const result = await sdkListTools(request, extra);
    for (const tool of result.tools) {
      if (tool.name === 'json_schema_2020_12_tool') tool.inputSchema = structuredClone(JSON_SCHEMA_2020_12_INPUT);
    }
    return result;
  });

  // ---- resources --------------------------------------------------------------------------------

  mcp.registerResource(
    'static-text',
    'test://static-text',
    { description: 'A static text resource', mimeType: 'text/plain' },
    async (uri) => ({
      contents: [{ uri: uri.href, mimeType: 'text/plain', text: 'This is the content of the static text resource.' }]
    })
  );

  mcp.registerResource(
    'static-binary',
    'test://static-binary',
    { description: 'A static binary resource (1x1 PNG)', mimeType: 'image/png' },
    async (uri) => ({ contents: [{ uri: uri.href, mimeType: 'image/png', blob: PNG_1X1 }] })
  );

  mcp.registerResource(
    'watched-resource',
    'test://watched-resource',
    { description: 'A resource clients may subscribe to', mimeType: 'text/plain' },
    async (uri) => ({ contents: [{ uri: uri.href, mimeType: 'text/plain', text: 'Watched resource content.' }] })
  );

  mcp.registerResource(
    'template-data',
    new ResourceTemplate('test://template/{id}/data', { list: undefined }),
    { description: 'A resource template with an id parameter', mimeType: 'application/json' },
    async (uri, { id }) => ({
      contents: [
        {
          uri: uri.href,
          mimeType: 'application/json',
          text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` })
        }
      ]
    })
  );

  server.setRequestHandler(SubscribeRequestSchema, async (request) => {
    subscriptions.add(request.params.uri);
    return {};
  });
  server.setRequestHandler(UnsubscribeRequestSchema, async (request) => {
    subscriptions.delete(request.params.uri);
    return {};
  });

  // ---- prompts ----------------------------------------------------------------------------------

  mcp.registerPrompt(
    'test_simple_prompt',
    { description: 'A simple prompt without arguments' },
    () => ({ messages: [{ role: 'user', content: { type: 'text', text: 'This is a simple prompt for testing.' } }] })
  );

  const ARG1_VALUES = ['paris', 'park', 'party', 'test', 'testing'];
  mcp.registerPrompt(
    'test_prompt_with_arguments',
    {
      description: 'A prompt with two required arguments',
      argsSchema: {
        arg1: completable(z.string().describe('First test argument'), (value) =>
          ARG1_VALUES.filter((v) => v.startsWith(value ?? ''))
        ),
        arg2: z.string().describe('Second test argument')
      }
    },
    ({ arg1, arg2 }) => ({
      messages: [
        { role: 'user', content: { type: 'text', text: `Prompt with arguments: arg1='${arg1}', arg2='${arg2}'` } }
      ]
    })
  );

  mcp.registerPrompt(
    'test_prompt_with_embedded_resource',
    {
      description: 'A prompt that embeds a resource',
      argsSchema: { resourceUri: z.string().describe('URI of the resource to embed') }
    },
    ({ resourceUri }) => ({
      messages: [
        {
          role: 'user',
          content: {
            type: 'resource',
            resource: { uri: resourceUri, mimeType: 'text/plain', text: 'Embedded resource content for testing.' }
          }
        },
        { role: 'user', content: { type: 'text', text: 'Please process the embedded resource above.' } }
      ]
    })
  );

  mcp.registerPrompt('test_prompt_with_image', { description: 'A prompt with an image' }, () => ({
    messages: [
      { role: 'user', content: { type: 'image', data: PNG_1X1, mimeType: 'image/png' } },
      { role: 'user', content: { type: 'text', text: 'Please analyze the image above.' } }
    ]
  }));

  return mcp;
}

// ---- stdio ------------------------------------------------------------------------------------

async function runStdio() {
  const mcp = buildServer();
  const transport = new StdioServerTransport();
  transport.onclose = () => process.exit(0);
  process.stdin.on('end', () => process.exit(0));
  await mcp.connect(transport);
  log('stdio ready');
}

// ---- Streamable HTTP ----------------------------------------------------------------------------

// A small in-memory event store, so streams can be resumed with Last-Event-ID.
class MemoryEventStore {
  constructor() {
    this.events = []; // {id, streamId, message}
    this.seq = 0;
  }
  async storeEvent(streamId, message) {
    const id = `${streamId}.${++this.seq}`;
    this.events.push({ id, streamId, message });
    if (this.events.length > 10000) this.events.splice(0, this.events.length - 10000);
    return id;
  }
  async getStreamIdForEventId(eventId) {
    return this.events.find((e) => e.id === eventId)?.streamId;
  }
  async replayEventsAfter(lastEventId, { send }) {
    const at = this.events.findIndex((e) => e.id === lastEventId);
    if (at < 0) return '';
    const streamId = this.events[at].streamId;
    for (const e of this.events.slice(at + 1)) {
      if (e.streamId === streamId && e.message && Object.keys(e.message).length > 0) await send(e.id, e.message);
    }
    return streamId;
  }
}

const LOCAL_HOSTNAMES = new Set(['localhost', '127.0.0.1', '[::1]']);

// DNS-rebinding protection: Host (and Origin, when sent) must name this machine's loopback.
function localRequest(req) {
  const hostname = (value) => {
    try {
      return new URL(`http://${value}`).hostname.toLowerCase();
    } catch {
      return '';
    }
  };
  if (!LOCAL_HOSTNAMES.has(hostname(req.headers.host ?? ''))) return false;
  const origin = req.headers.origin;
  if (origin !== undefined) {
    try {
      if (!LOCAL_HOSTNAMES.has(new URL(origin).hostname.toLowerCase())) return false;
    } catch {
      return false;
    }
  }
  return true;
}

function jsonError(res, status, code, message) {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }));
}

async function readBody(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

async function runHttp(port) {
  const sessions = new Map(); // session id -> transport

  const httpServer = http.createServer(async (req, res) => {
    try {
      const url = new URL(req.url, 'http://localhost');
      if (url.pathname !== '/mcp') return jsonError(res, 404, -32000, 'Not found');
      if (!localRequest(req)) return jsonError(res, 403, -32000, 'Forbidden: Host/Origin not allowed');

      let body;
      if (req.method === 'POST') {
        const raw = await readBody(req);
        try {
          body = JSON.parse(raw);
        } catch {
          return jsonError(res, 400, -32700, 'Parse error');
        }
      }

      const sid = req.headers['mcp-session-id'];
      if (sid !== undefined) {
        const transport = sessions.get(sid);
        if (!transport) return jsonError(res, 404, -32001, 'Session not found');
        return await transport.handleRequest(req, res, body);
      }
      if (req.method === 'POST' && isInitializeRequest(body)) {
        const transport = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          eventStore: new MemoryEventStore(),
          retryInterval: 500,
          onsessioninitialized: (id) => sessions.set(id, transport)
        });
        transport.onclose = () => {
          if (transport.sessionId) sessions.delete(transport.sessionId);
        };
        await buildServer().connect(transport);
        return await transport.handleRequest(req, res, body);
      }
      return jsonError(res, 400, -32000, 'Bad Request: no valid session ID provided');
    } catch (err) {
      log('error', err?.stack ?? err);
      if (!res.headersSent) jsonError(res, 500, -32603, 'Internal error');
    }
  });

  await new Promise((resolve) => httpServer.listen(port, '127.0.0.1', resolve));
  const actual = httpServer.address().port;
  process.stdout.write(`listening http://127.0.0.1:${actual}/mcp\n`);

  const stop = async () => {
    for (const t of sessions.values()) await t.close().catch(() => {});
    httpServer.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

const argv = process.argv.slice(2);
const httpAt = argv.indexOf('--http');
if (httpAt >= 0) {
  const port = Number(argv[httpAt + 1] ?? 0);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    log('usage: conformance-server.mjs [--http PORT]');
    process.exit(2);
  }
  await runHttp(port);
} else {
  await runStdio();
}
