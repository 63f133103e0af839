// A peer with no durability: the npm package node-hl7-server (pinned 2.4.0) answering AA to every
// message, used exactly as its README shows. Runs as its own process; prints {"port": N} on stdout
// once listening.
//
// Known limits of the package, which the benchmark records rather than hides: it treats each TCP
// read as one message (a frame split across reads, or several frames in one read, is mis-handled),
// so pipelined senders get fewer responses than they sent.

import type { Server as NetServer } from 'node:net';
import { Server } from 'node-hl7-server';

const server = new Server({ bindAddress: '127.0.0.1' });
const inbound = server.createInbound({ port: Number(process.env.PORT ?? 0) }, async (_req, res) => {
  await res.sendResponse('AA');
});
let errors = 0;
inbound.on('data.error', () => {
  errors++;
});
inbound.on('client.error', () => {});
inbound.on('listen', () => {
  // The package has no accessor for the bound port; its listener is the internal `_socket`.
  const listener = (inbound as unknown as { _socket?: NetServer })._socket;
  const addr = listener?.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  process.stdout.write(JSON.stringify({ port }) + '\n');
});
const report = (): void => {
  process.stderr.write(JSON.stringify({ parse_errors: errors, reads: inbound.stats.received, messages: inbound.stats.totalMessage }) + '\n');
  process.exit(0);
};
process.on('SIGTERM', report);
process.on('SIGINT', report);
