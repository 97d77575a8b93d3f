// Shared by the interop tests (tests/interop/*.mjs), run by ctest with Node:
// flag parsing, loading `ws` from the build tree's node_modules, starting an example server
// as a child process (parsing its "listening on HOST:PORT" line), bounded waits, and a tiny
// test runner that prints one line per case and exits 0 (all passed) or 1.

import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';

/// `--name value` pairs of process.argv → { name: value }.
export function parseArgs(argv = process.argv.slice(2)) {
  const args = {};
  for (let i = 0; i + 1 < argv.length; i += 2) {
    if (!argv[i].startsWith('--')) throw new Error(`unexpected argument ${argv[i]}`);
    args[argv[i].slice(2)] = argv[i + 1];
  }
  return args;
}

/// require() from a node_modules directory that is not next to the script (the build tree).
export function requireFrom(nodeModules, name) {
  return createRequire(path.join(path.resolve(nodeModules), '..', 'noop.js'))(name);
}

/// Rejects after `ms` with `what` unless `promise` settles first.
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const children = new Set();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

/// Starts `binary args...` and resolves to { child, host, port, url } (url = "HOST:PORT", IPv6 in brackets) once it printed
/// "listening on HOST:PORT" (within `ms`). The child is killed when this process exits.
export function startServer(binary, args, ms = 20000) {
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(child);
  child.on('exit', () => children.delete(child));
  let out = '';
  const started = new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code, sig) => reject(new Error(`${binary} exited (${code ?? sig}) before listening`)));
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const m = /listening on (\S+):(\d+)\n/.exec(out);
      if (m) resolve({ child, host: m[1], port: Number(m[2]), url: `${m[1]}:${m[2]}` });
    });
  });
  return withTimeout(started, ms, `${binary} to print 'listening on'`).catch((e) => {
    child.kill('SIGKILL');
    throw e;
  });
}

/// Stops a server started by startServer: SIGTERM, then SIGKILL if it has not exited in `ms`.
/// Resolves to its exit code (null if it had to be killed).
export async function stopServer(server, ms = 10000) {
  const { child } = server;
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  try {
    return await withTimeout(exited, ms, 'server exit after SIGTERM');
  } catch {
    child.kill('SIGKILL');
    return null;
  }
}

/// Runs `cases` ([name, async fn]) one after the other, each bounded by `ms`; prints
/// "ok NAME" or "FAIL NAME: error" and returns the number of failures.
export async function runCases(cases, ms = 30000) {
  let failed = 0;
  for (const [name, fn] of cases) {
    const t0 = Date.now();
    try {
      await withTimeout(Promise.resolve().then(fn), ms, name);
      console.log(`ok   ${name} (${Date.now() - t0} ms)`);
    } catch (e) {
      failed += 1;
      console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
    }
  }
  console.log(`${cases.length - failed} passed, ${failed} failed`);
  return failed;
}
