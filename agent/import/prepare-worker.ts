// Worker thread of `ferry-agent import`: reads, parses, hashes and seals files (see prepare.ts) and
// hands the sealed rows back as two transferred blocks, without copying them.

import { parentPort, workerData } from 'node:worker_threads';
import { FileSealer, META_SEPARATOR, type SealSettings, type WorkerReply, type WorkerRequest } from './prepare.js';

const sealer = new FileSealer(workerData as SealSettings);

parentPort!.on('message', (request: WorkerRequest) => {
  let prepared;
  try {
    prepared = sealer.prepare(request.id, request.entry);
  } catch (err) {
    parentPort!.postMessage({ id: request.id, kind: 'error', message: err instanceof Error ? err.message : String(err) } satisfies WorkerReply);
    return;
  }
  if (prepared.kind !== 'sealed') {
    parentPort!.postMessage({ id: request.id, ...prepared } satisfies WorkerReply);
    return;
  }
  const block = prepared.sealed[0]!.buffer;
  const hashBlock = prepared.hashes[0]!.buffer;
  const meta: string[] = [];
  for (const m of prepared.meta) meta.push(m.messageType, m.triggerEvent, m.controlId, m.sendingApplication, m.sendingFacility, m.version);
  const reply: WorkerReply = {
    id: request.id,
    kind: 'sealed',
    size: prepared.size,
    sha256: prepared.sha256,
    firstSeq: prepared.firstSeq,
    receivedAt: prepared.receivedAt,
    block: new Uint8Array(block),
    hashBlock: new Uint8Array(hashBlock),
    sizes: prepared.sizes,
    meta: meta.some((f) => f.includes(META_SEPARATOR)) ? meta : meta.join(META_SEPARATOR),
  };
  // Both blocks have their own ArrayBuffer (FileSealer allocates them outside the pool): transfer.
  parentPort!.postMessage(reply, [block as ArrayBuffer, hashBlock as ArrayBuffer]);
});
