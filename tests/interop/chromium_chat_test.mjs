// Interop with a browser: headless Chromium (Debian `chromium`) opens atoll-chat's page, its
// JavaScript connects over WebSocket, the test types a message into the page's form and waits
// for it to come back through the broadcast; a second participant (the Node `ws` client) sees
// the browser's message, and the browser sees the second participant's. Chromium is driven
// over the DevTools protocol (Runtime.evaluate), started with a fresh profile, bounded in time
// and always killed (its whole process group) at the end.
//
//   node chromium_chat_test.mjs --chat PATH/atoll-chat --node-modules BUILD/node/node_modules
//        [--chromium /usr/bin/chromium]
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, requireFrom, runCases, startServer, stopServer, withTimeout } from './support.mjs';

const args = parseArgs();
const WebSocket = requireFrom(args['node-modules'], 'ws');
const chromiumPath = args.chromium ?? '/usr/bin/chromium';
const step = 20000;  // ms for any one step

/// Starts headless Chromium on `url` with a fresh profile; resolves to { child, devtools }
/// once it printed its DevTools endpoint.
function startChromium(url, profile) {
  const child = spawn(chromiumPath, [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--disable-dev-shm-usage', '--disable-extensions', '--no-default-browser-check',
    '--disable-breakpad',
    `--user-data-dir=${profile}`, '--remote-debugging-port=0', url,
  ], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });  // own process group
  let err = '';
  const ready = new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code, sig) => reject(new Error(`chromium exited (${code ?? sig}): ${err}`)));
    child.stderr.on('data', (chunk) => {
      err += chunk;
      const m = /DevTools listening on (ws:\/\/\S+)/.exec(err);
      if (m) resolve({ child, devtools: new URL(m[1]) });
    });
  });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  // Kills the browser and its helpers (one process group); resolves once the browser is gone.
  const kill = () => {
    try { process.kill(-child.pid, 'SIGKILL'); } catch { /* already gone */ }
    return withTimeout(exited, 5000, 'chromium to exit').catch(() => {});
  };
  process.on('exit', kill);
  return { kill, ready: withTimeout(ready, step, 'chromium to start').catch((e) => { kill(); throw e; }) };
}

/// A minimal DevTools protocol client for one page target.
async function attachToPage(devtools, pageUrl) {
  const base = `http://${devtools.host}`;
  let target;
  await withTimeout((async () => {
    while (!target) {
      const list = await (await fetch(`${base}/json/list`)).json();
      target = list.find((t) => t.type === 'page' && t.url.startsWith(pageUrl));
      if (!target) await new Promise((r) => setTimeout(r, 100));
    }
  })(), step, `a page target for ${pageUrl}`);
  const ws = new WebSocket(target.webSocketDebuggerUrl, { perMessageDeflate: false });
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  let nextId = 1;
  const pending = new Map();
  ws.on('message', (data) => {
    const msg = JSON.parse(data.toString());
    if (msg.id && pending.has(msg.id)) {
      pending.get(msg.id)(msg);
      pending.delete(msg.id);
    }
  });
  // Evaluates `expression` in the page (awaiting a returned promise); resolves to its value.
  const evaluate = (expression) => new Promise((resolve, reject) => {
    const id = nextId++;
    pending.set(id, (msg) => {
      if (msg.error) return reject(new Error(JSON.stringify(msg.error)));
      if (msg.result.exceptionDetails) {
        return reject(new Error(`page exception: ${JSON.stringify(msg.result.exceptionDetails)}`));
      }
      resolve(msg.result.result.value);
    });
    ws.send(JSON.stringify({ id, method: 'Runtime.evaluate',
                             params: { expression, returnByValue: true, awaitPromise: true } }));
  });
  // The target can be listed before the navigation to `pageUrl` commits: until then
  // expressions run in the initial empty document (or fail as its context is destroyed).
  await withTimeout((async () => {
    for (;;) {
      const loaded = await evaluate(
        `location.href === ${JSON.stringify(pageUrl)} && document.readyState === 'complete'`,
      ).catch(() => false);
      if (loaded) return;
      await new Promise((r) => setTimeout(r, 50));
    }
  })(), step, `${pageUrl} to load`);
  return { evaluate, close: () => ws.terminate() };
}

/// A page-side promise that resolves once `condition` (a JS expression) is true.
const until = (condition) =>
  `new Promise((resolve) => { const f = () => (${condition}) ? resolve(true) : setTimeout(f, 20); f(); })`;
const logHas = (line) => `[...document.querySelectorAll('#log li')].some((li) => li.textContent === ${JSON.stringify(line)})`;

/// The Node participant: a `ws` client on /ws that records every message.
async function joinAsNode(url) {
  const ws = new WebSocket(`ws://${url}/ws`);
  const seen = [];
  const waiters = [];
  ws.on('message', (data) => {
    seen.push(data.toString());
    for (const w of [...waiters]) w();
  });
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  ws.waitFor = (line) => new Promise((resolve) => {
    const check = () => {
      if (seen.includes(line)) {
        waiters.splice(waiters.indexOf(check), 1);
        resolve();
      }
    };
    waiters.push(check);
    check();
  });
  return ws;
}

if (!fs.existsSync(chromiumPath)) {
  console.log(`FAIL ${chromiumPath} not found: run scripts/setup-deps (Debian package chromium)`);
  process.exit(1);
}

const server = await startServer(args.chat, ['--port', '0', '--threads', '2']);
const pageUrl = `http://${server.url}/`;
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-chromium-'));
let chromium;
let page;
let node;

const cases = [
  ['the page is served over plain HTTP on the same port', async () => {
    const res = await fetch(pageUrl);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^text\/html/);
    assert.match(await res.text(), /new WebSocket\(/);
    assert.equal((await fetch(`http://${server.url}/nope`)).status, 404);
  }],
  ['headless chromium opens the page and its WebSocket connects', async () => {
    node = await joinAsNode(server.url);  // the second participant, there first
    chromium = startChromium(pageUrl, profile);
    const { devtools } = await chromium.ready;
    page = await attachToPage(devtools, pageUrl);
    await withTimeout(page.evaluate(until("document.getElementById('status').textContent === 'connected'")),
                      step, 'the page to say connected');
  }],
  ['a message sent from the page comes back to it and reaches the other participant', async () => {
    assert.ok(page, 'no page');
    const line = `chromium: hello from the browser ${process.pid}`;
    await page.evaluate(`(() => {
      document.getElementById('name').value = 'chromium';
      document.getElementById('text').value = ${JSON.stringify(`hello from the browser ${process.pid}`)};
      document.getElementById('form').requestSubmit();
      return true;
    })()`);
    await withTimeout(page.evaluate(until(logHas(line))), step, 'the broadcast back to the page');
    await withTimeout(node.waitFor(line), step, 'the broadcast to the Node participant');
  }],
  ['a message from the other participant shows up in the page', async () => {
    assert.ok(page && node, 'no page or participant');
    const line = 'node: hello, browser 👋';
    node.send(line);
    await withTimeout(page.evaluate(until(logHas(line))), step, 'the Node message in the page');
    await withTimeout(node.waitFor(line), step, 'the Node message back to itself');
  }],
];

let failed;
try {
  failed = await runCases(cases, 2 * step);
} finally {
  page?.close();
  node?.terminate();
  await chromium?.kill();
  fs.rmSync(profile, { recursive: true, force: true });
}
const code = await stopServer(server);
if (code !== 0) {
  console.log(`FAIL atoll-chat exited with ${code} after SIGTERM`);
  failed += 1;
}
process.exit(failed ? 1 : 0);
