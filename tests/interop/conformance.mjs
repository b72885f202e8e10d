#!/usr/bin/env node
// Runs the server scenarios of @modelcontextprotocol/conformance one by one (each with its own
// time limit, so one hung scenario cannot stall the suite) and compares two runs.
//
//   node conformance.mjs run --node NODE22 --url URL --out DIR [--label NAME] [--timeout S] [--budget S]
//       Runs every server scenario of the suite ("all") against URL with the conformance CLI under
//       NODE22 (the CLI needs Node 22), keeps each scenario's checks.json under DIR, and writes
//       DIR/summary.json: {scenario: {passed, checks: {id: status}, errors: [..], note}}.
//       A scenario passes when it has no FAILURE check and produced results.
//       Prints "LABEL: N scenarios, P passed, F failed" and one line per failed scenario.
//
//   node conformance.mjs compare DIRECT/summary.json VIA/summary.json
//       One check line per scenario, as "ok conformance NAME" or "not ok conformance NAME: why".
//       A scenario fails the comparison when it passed directly but not through mcpvisor, or when
//       it failed directly (the reference server must pass everything). Check-level downgrades that
//       do not fail a scenario (SUCCESS -> WARNING, say) are listed as "#" notes.
//       Ends with "conformance: N passed, M failed"; exits 1 if M > 0.

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const CLI = join(HERE, 'node_modules', '@modelcontextprotocol', 'conformance', 'dist', 'index.js');

function die(msg) {
  process.stderr.write(`conformance.mjs: ${msg}\n`);
  process.exit(2);
}

function parseFlags(argv) {
  const flags = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) die(`bad argument ${argv[i]}`);
    flags[argv[i].slice(2)] = argv[i + 1];
  }
  return flags;
}

// Runs a command with a time limit; resolves {code, stdout, stderr, timedOut}.
function runCommand(cmd, args, { cwd, timeoutMs }) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL'); // the CLI is one process with no children of its own
    }, timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? signal, stdout, stderr, timedOut });
    });
  });
}

async function listScenarios(node) {
  const r = await runCommand(node, [CLI, 'list', '--server'], { cwd: HERE, timeoutMs: 30000 });
  const names = [...r.stdout.matchAll(/^\s*-\s+(\S+)/gm)].map((m) => m[1]);
  if (names.length === 0) die(`could not list the server scenarios:\n${r.stdout}${r.stderr}`);
  return names;
}

// Reads the checks.json the CLI wrote under dir for each scenario ("server-NAME-TIMESTAMP/").
function collectChecks(dir, scenarios) {
  const found = {};
  if (!existsSync(dir)) return found;
  for (const entry of readdirSync(dir)) {
    const m = /^server-(.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$/.exec(entry);
    const f = join(dir, entry, 'checks.json');
    if (m && scenarios.includes(m[1]) && existsSync(f)) found[m[1]] = JSON.parse(readFileSync(f, 'utf8'));
  }
  return found;
}

function summarise(checks) {
  const rank = { FAILURE: 4, WARNING: 3, SKIPPED: 2, INFO: 1, SUCCESS: 0 };
  // Traffic records ("outgoing-request", "incoming-sse-event", ...) are not outcomes.
  const traffic = new Set(['outgoing-request', 'incoming-response', 'incoming-sse-event', 'stream-closed']);
  const statuses = {};
  for (const c of checks) {
    if (traffic.has(c.id)) continue;
    // A scenario may repeat an id; keep the worst status.
    if (!(c.id in statuses) || (rank[c.status] ?? 0) > (rank[statuses[c.id]] ?? 0)) statuses[c.id] = c.status;
  }
  const errors = checks
    .filter((c) => c.status === 'FAILURE')
    .map((c) => {
      // Where the scenario recorded the HTTP answer, show it: it is usually the whole story.
      const d = c.details ?? {};
      const http = d.statusCode !== undefined ? ` [HTTP ${d.statusCode}${d.body ? ` ${JSON.stringify(d.body).slice(0, 200)}` : ''}]` : '';
      return `${c.id}: ${c.errorMessage ?? 'failed'}${http}`.replace(/\s+/g, ' ');
    });
  return { passed: errors.length === 0, checks: statuses, errors, note: '' };
}

async function cmdRun(flags) {
  for (const k of ['node', 'url', 'out']) if (!flags[k]) die(`run needs --${k}`);
  const label = flags.label ?? 'run';
  const timeoutMs = Number(flags.timeout ?? 30) * 1000;
  const budgetMs = Number(flags.budget ?? 240) * 1000;
  const deadline = Date.now() + budgetMs;
  mkdirSync(flags.out, { recursive: true });
  const scenarios = await listScenarios(flags.node);

  // First the whole suite in one CLI run (fast: one process); a scenario that hangs stops it at
  // half the budget, and whatever it did not finish is then run alone with its own time limit.
  const suiteDir = join(flags.out, 'suite');
  const suite = await runCommand(
    flags.node,
    [CLI, 'server', '--url', flags.url, '--suite', 'all', '-o', suiteDir],
    { cwd: flags.out, timeoutMs: Math.max(budgetMs / 2, 1000) }
  );
  writeFileSync(join(flags.out, 'suite.log'), `${suite.stdout}\n--- stderr\n${suite.stderr}`);
  const results = collectChecks(suiteDir, scenarios);

  const summary = {};
  for (const name of scenarios) {
    if (results[name]) {
      summary[name] = summarise(results[name]);
      continue;
    }
    const left = deadline - Date.now();
    if (left <= 1000) {
      summary[name] = { passed: false, checks: {}, errors: [], note: 'not run: the time budget was spent' };
      continue;
    }
    const dir = join(flags.out, name);
    const limit = Math.min(timeoutMs, left);
    const r = await runCommand(flags.node, [CLI, 'server', '--url', flags.url, '--scenario', name, '-o', dir], {
      cwd: flags.out,
      timeoutMs: limit
    });
    writeFileSync(join(flags.out, `${name}.log`), `${r.stdout}\n--- stderr\n${r.stderr}`);
    const checks = collectChecks(dir, [name])[name];
    summary[name] = checks
      ? summarise(checks)
      : {
          passed: false,
          checks: {},
          errors: [],
          note: r.timedOut ? `no result: timed out after ${Math.round(limit / 1000)} s` : `no result (exit ${r.code})`
        };
  }
  writeFileSync(join(flags.out, 'summary.json'), JSON.stringify(summary, null, 2));

  const names = Object.keys(summary);
  const ok = names.filter((n) => summary[n].passed);
  console.log(`${label}: ${names.length} scenarios, ${ok.length} passed, ${names.length - ok.length} failed`);
  for (const n of names) {
    if (!summary[n].passed) console.log(`  failed ${n}: ${summary[n].note || summary[n].errors.join('; ')}`);
  }
}

function cmdCompare([directFile, viaFile]) {
  if (!directFile || !viaFile) die('compare needs DIRECT/summary.json VIA/summary.json');
  const direct = JSON.parse(readFileSync(directFile, 'utf8'));
  const via = JSON.parse(readFileSync(viaFile, 'utf8'));
  let passed = 0;
  let failed = 0;
  const notes = [];
  const why = (s) => (s ? s.note || s.errors.join('; ') || 'failed' : 'not run');
  for (const name of new Set([...Object.keys(direct), ...Object.keys(via)])) {
    const d = direct[name];
    const v = via[name];
    if (!d?.passed) {
      console.log(`not ok conformance ${name}: fails directly against conformance-server.mjs: ${why(d)}`);
      failed++;
    } else if (!v?.passed) {
      console.log(`not ok conformance ${name}: passes directly, fails through mcpvisor: ${why(v)}`);
      failed++;
    } else {
      console.log(`ok conformance ${name}`);
      passed++;
    }
    if (d && v) {
      for (const [id, status] of Object.entries(d.checks)) {
        const other = v.checks[id] ?? 'absent';
        if (other !== status) notes.push(`${name}/${id}: ${status} directly, ${other} through mcpvisor`);
      }
      for (const [id, status] of Object.entries(v.checks)) {
        if (!(id in d.checks)) notes.push(`${name}/${id}: absent directly, ${status} through mcpvisor`);
      }
    }
  }
  for (const n of notes) console.log(`# difference ${n}`);
  console.log(`conformance: ${passed} passed, ${failed} failed`);
  process.exit(failed > 0 ? 1 : 0);
}

const [cmd, ...rest] = process.argv.slice(2);
if (cmd === 'run') await cmdRun(parseFlags(rest));
else if (cmd === 'compare') cmdCompare(rest);
else die('usage: conformance.mjs run ... | compare DIRECT VIA');
