// Worker thread of `ferry-agent import`: reads, hashes and parses files (see prepare.ts) and hands
// the bytes back without copying them.

import { parentPort, workerData } from 'node:worker_threads';
import { prepareFile, type WorkerReply, type WorkerRequest } from './prepare.js';

const { sourceId, maxFileBytes } = workerData as { sourceId: string; maxFileBytes: number };

parentPort!.on('message', (request: WorkerRequest) => {
  const prepared = prepareFile(request.entry, sourceId, maxFileBytes, request.receivedAt);
  if (prepared.kind === 'failed') {
    parentPort!.postMessage({ id: request.id, kind: 'failed', failure: prepared.failure } satisfies WorkerReply);
    return;
  }
  const { bytes } = prepared;
  const spans = prepared.messages.map((m) => ({ start: m.payload.byteOffset - bytes.byteOffset, end: m.payload.byteOffset - bytes.byteOffset + m.payload.length, meta: m.meta }));
  const reply: WorkerReply = { id: request.id, kind: 'ok', bytes, sha256: prepared.sha256, spans };
  // The file's bytes have their own ArrayBuffer (readSettledFile): transfer it, no copy.
  parentPort!.postMessage(reply, bytes.byteOffset === 0 && bytes.buffer.byteLength === bytes.length ? [bytes.buffer as ArrayBuffer] : []);
});
