// The agent's metric catalogue: every component records through this one object, passed in as a
// dependency, so names and labels stay consistent and tests get a fresh registry each.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { BufferStats } from '../buffer/index.js';

export class AgentMetrics {
  readonly registry = new Registry();
  readonly messagesReceived: Counter<'source'>;
  readonly messagesAcked: Counter<'source'>;
  readonly messagesDuplicate: Counter<'source'>;
  readonly framesRejected: Counter<'source' | 'code'>;
  readonly bytesReceived: Counter<'source'>;
  readonly responses: Counter<'source' | 'code'>;
  readonly connections: Gauge<'source'>;
  readonly connectionsRefused: Counter<'source' | 'reason'>;
  readonly commitSeconds: Histogram;
  readonly commitMessages: Histogram;
  readonly uplinkBatchesSent: Counter;
  readonly uplinkMessagesAcked: Counter;
  readonly uplinkReconnects: Counter;
  readonly uplinkConnected: Gauge;
  // file_drop sources (see agent/sources/file-drop/)
  readonly fileDropFiles: Counter<'source' | 'outcome'>;
  readonly fileDropPending: Gauge<'source'>;
  readonly fileDropPaused: Gauge<'source'>;

  constructor(bufferStats: () => BufferStats | undefined, options: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    this.messagesReceived = new Counter({ name: 'ferry_messages_received_total', help: 'HL7 messages received, by source', labelNames: ['source'], registers });
    this.messagesAcked = new Counter({ name: 'ferry_messages_acked_total', help: 'Messages durably committed and acknowledged (AA/CA), by source', labelNames: ['source'], registers });
    this.messagesDuplicate = new Counter({ name: 'ferry_messages_duplicate_total', help: 'Resent messages recognised inside the dedupe window (acknowledged, stored once)', labelNames: ['source'], registers });
    this.framesRejected = new Counter({ name: 'ferry_frames_rejected_total', help: 'Frames refused, by source and HL7 table 0357 error code', labelNames: ['source', 'code'], registers });
    this.bytesReceived = new Counter({ name: 'ferry_received_bytes_total', help: 'Payload bytes received, by source', labelNames: ['source'], registers });
    this.responses = new Counter({ name: 'ferry_mllp_responses_total', help: 'MLLP responses by acknowledgement code (none: no response owed)', labelNames: ['source', 'code'], registers });
    this.connections = new Gauge({ name: 'ferry_mllp_connections', help: 'Open MLLP connections', labelNames: ['source'], registers });
    this.connectionsRefused = new Counter({ name: 'ferry_mllp_connections_refused_total', help: 'MLLP connections refused, by reason', labelNames: ['source', 'reason'], registers });
    this.commitSeconds = new Histogram({
      name: 'ferry_buffer_commit_seconds',
      help: 'Time SQLite takes to write one group commit, fsync included',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.commitMessages = new Histogram({ name: 'ferry_buffer_commit_messages', help: 'Messages per group commit', buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096], registers });
    this.uplinkBatchesSent = new Counter({ name: 'ferry_uplink_batches_sent_total', help: 'Batches sent to the control plane (resends after a reconnect included)', registers });
    this.uplinkMessagesAcked = new Counter({ name: 'ferry_uplink_messages_acked_total', help: 'Messages the control plane acknowledged as durably stored', registers });
    this.uplinkReconnects = new Counter({ name: 'ferry_uplink_reconnects_total', help: 'Uplink streams that ended (or failed to open) and were retried', registers });
    this.uplinkConnected = new Gauge({ name: 'ferry_uplink_connected', help: '1 while the uplink stream to the control plane is open (Welcome received)', registers });
    this.fileDropFiles = new Counter({
      name: 'ferry_file_drop_files_total',
      help: 'Files of file_drop sources by outcome: seen, taken (committed), duplicate (same bytes taken before), archived, deleted, errored (moved to error_dir), refused (symlink, device)',
      labelNames: ['source', 'outcome'],
      registers,
    });
    this.fileDropPending = new Gauge({ name: 'ferry_file_drop_pending_files', help: 'Files seen in the watched folder and not yet taken (waiting to be complete, queued, or paused)', labelNames: ['source'], registers });
    this.fileDropPaused = new Gauge({ name: 'ferry_file_drop_paused', help: '1 while a file_drop source is paused because the buffer is full', labelNames: ['source'], registers });
    const gauge = (name: string, help: string, read: (s: BufferStats) => number): void => {
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const s = bufferStats();
          if (s) this.set(read(s));
        },
      });
    };
    gauge('ferry_buffer_messages', 'Messages in the buffer awaiting delivery', (s) => s.depth);
    gauge('ferry_buffer_bytes', 'Payload bytes in the buffer awaiting delivery', (s) => s.bytes);
    gauge('ferry_buffer_max_bytes', 'Configured buffer capacity (max_bytes)', (s) => s.maxBytes);
    gauge('ferry_buffer_full', '1 while the buffer is refusing messages because it is full', (s) => (s.full ? 1 : 0));
    gauge('ferry_buffer_oldest_age_seconds', 'Age of the oldest message awaiting delivery', (s) => (s.oldestReceivedAt === null ? 0 : (Date.now() - s.oldestReceivedAt) / 1000));
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'ferry_agent_' });
  }
}
