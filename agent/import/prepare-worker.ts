// Worker thread of `ferry-agent import`: reads, parses, hashes and seals files (see prepare.ts) and
// hands the sealed rows back as two transferred blocks, without copying them.

import { parentPort, workerData } from 'node:worker_threads';
import { FileSealer, toReply, type SealSettings, type WorkerReply, type WorkerRequest } from './prepare.js';

const sealer = new FileSealer(workerData as SealSettings);

parentPort!.on('message', (request: WorkerRequest) => {
  let prepared;
  try {
    prepared = sealer.prepare(request.id, request.entry);
  } catch (err) {
    parentPort!.postMessage({ id: request.id, kind: 'error', message: err instanceof Error ? err.message : String(err) } satisfies WorkerReply);
    return;
  }
  const { reply, transfer } = toReply(request.id, prepared);
  parentPort!.postMessage(reply, transfer);
});
