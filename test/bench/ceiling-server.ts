// The benchmark's ceiling: the least work an MLLP peer can do and still answer correctly. Streaming
// MLLP decode (any split across reads, many frames per read), one minimal AA ACK per frame whose
// MSA-2 is the inbound MSH-10, responses written once per read. No parsing beyond MSH-10, no storage,
// no durability. Runs as its own process; prints {"port": N} on stdout once listening.

import { createServer, type Socket } from 'node:net';

const VT = 0x0b;
const FS = 0x1c;
const CR = 0x0d;

/** MSH-10 of a message (bytes between the 9th and 10th field separators of the first segment). */
function controlIdOf(payload: Buffer): Buffer {
  // MSH|^~\&|... : the field separator is the 4th byte; MSH-1 is the separator itself, so MSH-10
  // follows the 9th separator counted from offset 3.
  if (payload.length < 8) return Buffer.alloc(0);
  const sep = payload[3]!;
  let count = 0;
  let start = -1;
  for (let i = 3; i < payload.length; i++) {
    const b = payload[i]!;
    if (b === CR || b === 0x0a) break;
    if (b === sep) {
      count++;
      if (count === 9) start = i + 1;
      else if (count === 10) return payload.subarray(start, i);
    }
  }
  return start >= 0 ? payload.subarray(start) : Buffer.alloc(0);
}

const ACK_HEAD = Buffer.from('\x0bMSH|^~\\&|CEILING|BENCH|||||ACK|', 'latin1');
const ACK_MID = Buffer.from('|P|2.5\rMSA|AA|', 'latin1');
const ACK_TAIL = Buffer.from('\r\x1c\r', 'latin1');

function ackFor(payload: Buffer): Buffer[] {
  const id = controlIdOf(payload);
  return [ACK_HEAD, id, ACK_MID, id, ACK_TAIL];
}

function serve(socket: Socket): void {
  socket.setNoDelay(true);
  let held: Buffer | null = null; // bytes of an unfinished frame, from its VT
  socket.on('data', (chunk: Buffer) => {
    const buf = held ? Buffer.concat([held, chunk]) : chunk;
    held = null;
    const out: Buffer[] = [];
    let pos = 0;
    for (;;) {
      const vt = buf.indexOf(VT, pos);
      if (vt === -1) break;
      let fs = buf.indexOf(FS, vt + 1);
      while (fs !== -1 && fs + 1 < buf.length && buf[fs + 1] !== CR) fs = buf.indexOf(FS, fs + 1);
      if (fs === -1 || fs + 1 >= buf.length) {
        held = Buffer.from(buf.subarray(vt));
        break;
      }
      // A VT inside the frame restarts it.
      const restart = buf.lastIndexOf(VT, fs);
      out.push(...ackFor(buf.subarray(restart + 1, fs)));
      pos = fs + 2;
    }
    if (out.length > 0) socket.write(Buffer.concat(out));
  });
  socket.on('error', () => socket.destroy());
}

const server = createServer(serve);
server.listen({ host: '127.0.0.1', port: Number(process.env.PORT ?? 0) }, () => {
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  process.stdout.write(JSON.stringify({ port }) + '\n');
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
