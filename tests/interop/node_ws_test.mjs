// Interop with an independent client: the Node `ws` library (npm, installed into the build
// tree by the ctest fixture node_ws_install) against atoll-ws-echo on loopback.
//
//   node node_ws_test.mjs --ws-echo PATH/atoll-ws-echo --node-modules BUILD/node/node_modules
//
// Text and binary echo at 0, 125, 126, 65535, 65536 and 1 MiB (the three length encodings and
// their edges), fragmented sends, ping/pong, close codes (echoed 1000/4000, 1007 for invalid
// UTF-8, 1009 over --max-message-size), each with permessage-deflate off and on.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { parseArgs, requireFrom, runCases, startServer, stopServer } from './support.mjs';

const args = parseArgs();
const WebSocket = requireFrom(args['node-modules'], 'ws');
const sizes = [0, 125, 126, 65535, 65536, 1 << 20];

/// Opens a client; resolves once open. `deflate`: offer permessage-deflate (compressing every
/// message, however small) or not.
function connect(server, deflate) {
  const ws = new WebSocket(`ws://${server.url}/`, {
    perMessageDeflate: deflate ? { threshold: 0 } : false,
    maxPayload: 64 << 20,
  });
  const messages = [];
  const waiters = [];
  ws.on('message', (data, isBinary) => {
    messages.push({ data, isBinary });
    while (waiters.length && messages.length) waiters.shift()(messages.shift());
  });
  ws.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  // The next message, or a rejection naming the close code if the connection closes first.
  ws.nextMessage = () =>
    Promise.race([
      new Promise((resolve) => (messages.length ? resolve(messages.shift()) : waiters.push(resolve))),
      ws.closed.then(({ code, reason }) => {
        throw new Error(`closed (${code} '${reason}') while waiting for a message`);
      }),
    ]);
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

/// `size` bytes of ASCII text, not repetitive (echoes are compared byte for byte).
function text(size) {
  return randomBytes(Math.ceil((size * 3) / 4) + 3).toString('base64').slice(0, size);
}

async function closeNormally(ws) {
  ws.close(1000, 'done');
  const { code } = await ws.closed;
  assert.equal(code, 1000);
}

function casesFor(server, deflate, label) {
  const cases = [];
  cases.push([`${label}: extension negotiated as configured`, async () => {
    const ws = await connect(server, true);
    assert.equal(ws.extensions.includes('permessage-deflate'), deflate, `extensions: '${ws.extensions}'`);
    await closeNormally(ws);
  }]);
  for (const size of sizes) {
    cases.push([`${label}: text echo of ${size} bytes`, async () => {
      const ws = await connect(server, deflate);
      const msg = text(size);
      ws.send(msg);
      const { data, isBinary } = await ws.nextMessage();
      assert.equal(isBinary, false);
      assert.ok(data.toString('utf8') === msg, `echo differs (got ${data.length} bytes)`);
      await closeNormally(ws);
    }]);
    cases.push([`${label}: binary echo of ${size} bytes`, async () => {
      const ws = await connect(server, deflate);
      const msg = randomBytes(size);
      ws.send(msg, { binary: true });
      const { data, isBinary } = await ws.nextMessage();
      assert.equal(isBinary, true);
      assert.ok(Buffer.compare(data, msg) === 0, `echo differs (got ${data.length} bytes)`);
      await closeNormally(ws);
    }]);
  }
  cases.push([`${label}: multi-byte UTF-8 text echo`, async () => {
    const ws = await connect(server, deflate);
    const msg = 'héllo wörld — 你好 🌍 '.repeat(1000);
    ws.send(msg);
    const { data, isBinary } = await ws.nextMessage();
    assert.equal(isBinary, false);
    assert.equal(data.toString('utf8'), msg);
    await closeNormally(ws);
  }]);
  cases.push([`${label}: fragmented text and binary sends arrive as one message each`, async () => {
    const ws = await connect(server, deflate);
    // A text message in 4 frames, split inside a multi-byte character ("é" = c3 a9).
    const whole = Buffer.from('frag-é-mented text message', 'utf8');
    const cut = whole.indexOf(0xa9);
    ws.send(whole.subarray(0, 4), { binary: false, fin: false });
    ws.send(whole.subarray(4, cut), { fin: false });
    ws.send(whole.subarray(cut, cut + 3), { fin: false });
    ws.send(whole.subarray(cut + 3), { fin: true });
    const t = await ws.nextMessage();
    assert.equal(t.isBinary, false);
    assert.equal(t.data.toString('utf8'), whole.toString('utf8'));
    // A 200 KiB binary message in 3 frames, with a ping in between (control frames may
    // interleave with a fragmented message).
    const bin = randomBytes(200 * 1024);
    const pong = new Promise((resolve) => ws.once('pong', resolve));
    ws.send(bin.subarray(0, 70000), { binary: true, fin: false });
    ws.ping(Buffer.from('mid-message'));
    ws.send(bin.subarray(70000, 140000), { fin: false });
    ws.send(bin.subarray(140000), { fin: true });
    const b = await ws.nextMessage();
    assert.equal(b.isBinary, true);
    assert.ok(Buffer.compare(b.data, bin) === 0, 'fragmented binary echo differs');
    assert.equal((await pong).toString(), 'mid-message');
    await closeNormally(ws);
  }]);
  cases.push([`${label}: ping gets a pong with the same payload`, async () => {
    const ws = await connect(server, deflate);
    for (const payload of [Buffer.alloc(0), Buffer.from('ping!'), randomBytes(125)]) {
      const pong = new Promise((resolve) => ws.once('pong', resolve));
      ws.ping(payload);
      assert.ok(Buffer.compare(await pong, payload) === 0, 'pong payload differs');
    }
    await closeNormally(ws);
  }]);
  cases.push([`${label}: the server echoes the client's close code`, async () => {
    // RFC 6455 §5.5.1: the answer typically echoes the code; the reason is not echoed.
    for (const [code, reason] of [[1000, ''], [1001, 'going'], [4000, 'application code'], [3001, 'é']]) {
      const ws = await connect(server, deflate);
      ws.close(code, reason);
      const closed = await ws.closed;
      assert.equal(closed.code, code, `close ${code}`);
    }
  }]);
  cases.push([`${label}: a close code that must not be sent gets 1002`, async () => {
    const ws = await connect(server, deflate);
    // ws refuses to send 1005 itself: write the close frame by hand (masked, code 1005).
    const mask = randomBytes(4);
    const payload = Buffer.from([0x03, 0xed]);
    for (let i = 0; i < payload.length; ++i) payload[i] ^= mask[i % 4];
    ws._socket.write(Buffer.concat([Buffer.from([0x88, 0x82]), mask, payload]));
    const { code } = await ws.closed;
    assert.equal(code, 1002);
  }]);
  cases.push([`${label}: invalid UTF-8 in a text message is closed with 1007`, async () => {
    const ws = await connect(server, deflate);
    ws.send(Buffer.from([0x68, 0x69, 0xc3, 0x28]), { binary: false });  // ws does not check
    const { code } = await ws.closed;
    assert.equal(code, 1007);
  }]);
  return cases;
}

const plain = await startServer(args['ws-echo'], ['--port', '0', '--threads', '2']);
const deflating = await startServer(args['ws-echo'], ['--port', '0', '--threads', '2', '--deflate']);
const small = await startServer(args['ws-echo'], ['--port', '0', '--threads', '1', '--max-message-size', '1000']);
const big = await startServer(args['ws-echo'], ['--port', '0', '--threads', '1', '--max-message-size', '67108864']);

const cases = [...casesFor(plain, false, 'deflate off'), ...casesFor(deflating, true, 'deflate on')];
// Issue 9, item 7: no inflate-ratio cap by default; max_message_size bounds a message.
cases.push(['deflate on: 1 MiB of one letter (~1000:1) is echoed', async () => {
  const ws = await connect(deflating, true);
  const msg = 'a'.repeat(1 << 20);
  ws.send(msg);
  const { data } = await ws.nextMessage();
  assert.ok(data.toString('utf8') === msg, `echo differs (got ${data.length} bytes)`);
  await closeNormally(ws);
}]);
// Issue 9, item 6: one message far above max_write_buffer (4 MiB) goes out whole.
cases.push(['one 16 MiB binary message is echoed whole by a server allowing 64 MiB', async () => {
  const ws = await connect(big, false);
  const msg = Buffer.alloc(16 << 20);
  for (let i = 0; i < msg.length; ++i) msg[i] = i % 251;
  ws.send(msg);
  const { data } = await ws.nextMessage();
  assert.ok(Buffer.compare(data, msg) === 0, `echo differs (got ${data.length} bytes)`);
  await closeNormally(ws);
}]);
cases.push(['a message over --max-message-size is closed with 1009', async () => {
  const ws = await connect(small, false);
  ws.send(text(999));
  assert.equal((await ws.nextMessage()).data.length, 999);
  ws.send(text(2000));
  const { code } = await ws.closed;
  assert.equal(code, 1009);
}]);
cases.push(['the servers exit 0 on SIGTERM', async () => {
  for (const s of [plain, deflating, small, big]) assert.equal(await stopServer(s), 0);
}]);

const failed = await runCases(cases);
process.exit(failed ? 1 : 0);
