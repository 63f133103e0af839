// Pieces the uplink tests share: a real MessageBuffer on a temp file, messages with unique control
// ids (and a canary patient name that must never reach a log), an Uplink with captured logs and a
// fresh metrics registry, and the bookkeeping for "sent / acknowledged / stored / lost / duplicated".

import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { AgentMetrics } from '../../agent/admin/index.js';
import { Keyring, MessageBuffer, type IncomingMessage } from '../../agent/buffer/index.js';
import { validateConfig, type UplinkConfig } from '../../agent/config/index.js';
import { createLogger } from '../../agent/log.js';
import { Uplink } from '../../agent/uplink/index.js';
import { realisticMessage } from './messages.js';
import { controlId } from './mllp-harness.js';
import type { ControlPlaneRow } from './ingest-server-process.js';

export const CANARY = 'CANARY^UPLINK^SECRETNAME';

export async function openTestBuffer(dir: string): Promise<MessageBuffer> {
  return MessageBuffer.open({ path: join(dir, 'buffer.db'), keyring: Keyring.loadOrCreate(join(dir, 'keys.json')), maxBytes: 1024 ** 3 });
}

export function testMessage(n: number, sourceId = 'src-a'): IncomingMessage {
  const payload = realisticMessage('U', n, { patientName: CANARY });
  const isAdt = n % 2 === 0;
  return {
    sourceId,
    payload,
    receivedAt: Date.now(),
    meta: { messageType: isAdt ? 'ADT' : 'ORU', triggerEvent: isAdt ? 'A01' : 'R01', controlId: controlId('U', n), sendingApplication: 'APP', sendingFacility: 'FAC', version: '2.5.1' },
  };
}

export function sha256Hex(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Appends messages n..n+count-1 in one commit; returns their control ids (all must commit). */
export async function appendMessages(buffer: MessageBuffer, first: number, count: number, sourceId = 'src-a'): Promise<string[]> {
  const messages = Array.from({ length: count }, (_, i) => testMessage(first + i, sourceId));
  const r = await buffer.append(messages);
  if (r.status !== 'committed') throw new Error(`append refused: ${r.status}`);
  return messages.map((m) => m.meta.controlId);
}

export function uplinkConfig(overrides: Partial<UplinkConfig> = {}): UplinkConfig {
  const r = validateConfig({ uplink: overrides });
  if (!r.ok) throw new Error(JSON.stringify(r.problems));
  return r.config.uplink;
}

export interface TestUplink {
  readonly uplink: Uplink;
  readonly metrics: AgentMetrics;
  readonly logs: string[];
}

export function createTestUplink(
  buffer: MessageBuffer,
  server: { port: number; agentId: string; secret: string },
  config: Partial<UplinkConfig> = {},
  target = `127.0.0.1:${server.port}`,
): TestUplink {
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logs.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  const metrics = new AgentMetrics(() => buffer.stats(), { processMetrics: false });
  const uplink = new Uplink(
    {
      credentials: { agent_id: server.agentId, secret: server.secret, control_plane_url: 'http://127.0.0.1:8080', grpc_target: target },
      config: uplinkConfig(config),
      agentVersion: 'test',
    },
    { buffer, log: createLogger('debug', sink), metrics },
  );
  return { uplink, metrics, logs };
}

export async function metricValue(metrics: AgentMetrics, name: string): Promise<number> {
  const m = await metrics.registry.getSingleMetric(name)?.get();
  return m?.values.reduce((a, v) => a + v.value, 0) ?? 0;
}

export interface DeliveryReport {
  readonly sent: number;
  readonly stored: number;
  readonly lost: number;
  readonly duplicated: number;
  readonly outOfOrder: number;
  readonly hashMismatches: number;
}

/**
 * Compares what was committed to the buffer (control ids, in commit order, with payload hashes)
 * with what the control plane stored. Control ids are unique per message, so a duplicate is a
 * control id stored twice (under any seq), a loss one never stored.
 */
export function deliveryReport(sent: readonly string[], rows: readonly ControlPlaneRow[], hashOf: (controlId: string) => string): DeliveryReport {
  const seen = new Map<string, number>();
  let outOfOrder = 0;
  let hashMismatches = 0;
  let lastSeq = 0;
  for (const r of rows) {
    seen.set(r.controlId, (seen.get(r.controlId) ?? 0) + 1);
    if (r.seq <= lastSeq) outOfOrder++;
    lastSeq = r.seq;
    if (r.sha256 !== hashOf(r.controlId)) hashMismatches++;
  }
  let lost = 0;
  let duplicated = 0;
  for (const id of sent) {
    const n = seen.get(id) ?? 0;
    if (n === 0) lost++;
    if (n > 1) duplicated += n - 1;
  }
  return { sent: sent.length, stored: rows.length, lost, duplicated, outOfOrder, hashMismatches };
}

/** The payload hash of message n by its control id (U + 10 digits). */
export function expectedHash(controlIdValue: string): string {
  return sha256Hex(realisticMessage('U', Number(controlIdValue.slice(1)), { patientName: CANARY }));
}
