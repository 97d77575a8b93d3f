// ws_echo_node.mjs: the Node baseline of the WebSocket rows. A minimal echo server on the npm
// package `ws` (8.x), written the way its README writes one: every message goes back as
// received (binary as binary, text as text), one frame per message.
//
//   node ws_echo_node.mjs --port 0 --node-modules BUILD/node_ws/node_modules [--host 127.0.0.1]
//
// Prints "listening on HOST:PORT" once bound (what bench/run waits for). permessage-deflate is
// off, as in atoll-ws-echo without --deflate (bench/run starts it so): neither server
// compresses, whatever a client offers. SIGINT/SIGTERM stop it (exit 0).
import { createRequire } from 'node:module';
import path from 'node:path';

const args = { host: '127.0.0.1', port: '9002', 'node-modules': 'node_modules' };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const name = argv[i].replace(/^--/, '');
  if (!(name in args) || i + 1 >= argv.length) {
    console.error(`ws_echo_node: usage: --port N --node-modules DIR [--host ADDR] (got '${argv[i]}')`);
    process.exit(2);
  }
  args[name] = argv[i + 1];
}

// `ws` lives in the build tree, not next to this script.
const { WebSocketServer } = createRequire(path.join(path.resolve(args['node-modules']), '..', 'noop.js'))('ws');

const server = new WebSocketServer({
  host: args.host,
  port: Number(args.port),
  perMessageDeflate: false,
  maxPayload: 16 * 1024 * 1024, // atoll-ws-echo's default --max-message-size
});
server.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => ws.terminate());
});
server.on('listening', () => {
  const { address, port } = server.address();
  console.log(`listening on ${address}:${port}`);
});
server.on('error', (e) => {
  console.error(`ws_echo_node: ${e.message}`);
  process.exit(1);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
