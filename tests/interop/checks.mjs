// Shared by the interop clients: one check per line ("ok NAME" / "not ok NAME: REASON"), with a
// time limit each, and the running tally the caller prints at the end.

export const CHECK_TIMEOUT_MS = 20000;

// The root every client of a shared child gives (client.mjs --shared-child, pool-client.mjs): such
// a server may ask any one of them, once, and keep the answer for all.
export const SHARED_ROOT = { uri: 'file:///tmp/mcpvisor-interop/shared-child', name: 'interop-shared-child' };

export const tally = { passed: 0, failed: 0 };

export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    })
  ]).finally(() => clearTimeout(timer));
}

export function reason(err) {
  if (err instanceof Error) {
    const code = err.code !== undefined ? ` (code ${err.code})` : '';
    return `${err.message}${code}`.replace(/\s+/g, ' ');
  }
  return String(err);
}

// Runs one check; a check that throws fails. Returns the check's value, or undefined on failure.
export async function check(name, fn) {
  try {
    const value = await withTimeout(Promise.resolve().then(fn), CHECK_TIMEOUT_MS, name);
    console.log(`ok ${name}`);
    tally.passed++;
    return value ?? true;
  } catch (err) {
    console.log(`not ok ${name}: ${reason(err)}`);
    tally.failed++;
    return undefined;
  }
}

export function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

export function textOf(result) {
  return (result?.content ?? [])
    .filter((c) => c.type === 'text')
    .map((c) => c.text)
    .join('\n');
}
