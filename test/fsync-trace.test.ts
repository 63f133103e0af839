// Every AA is preceded by a completed fsync of the buffer's WAL that made the message's row durable.
//
// A SIGKILL cannot catch a missing fsync (the kernel keeps the unsynced pages), so this test runs the
// agent under strace and checks the order of system calls. For every message it finds, in the trace:
//   R  the read() on the MLLP socket that brought in the frame's last byte,
//   T  the first WAL transaction after R whose pages hold the message's row (the control id is a
//      plaintext column, so it is visible in the page written to buffer.db-wal), ending with its
//      commit frame (a frame header whose "database size" field is non-zero),
//   S  the first fsync/fdatasync of buffer.db-wal that starts after T's last write,
//   W  the write() on the MLLP socket that carries the first byte of the message's ACK,
// and requires R < T < S(start) and S(completed, = 0) < W(start). Ordering in the trace file is
// causal: strace prints a call's completion before the thread continues, and the ACK write only
// happens after the worker thread has returned from fsync and woken the main thread.
// This is stricter than "some WAL fsync started after the frame was read": a sync belonging to an
// earlier group commit cannot stand in for the one that covers the message.
//
// Phase 1 sends 200 messages one at a time (one in flight), where each ACK also needs its own sync
// after the previous ACK; phase 2 sends 4 x 30 pipelined messages (6 in flight per connection, 4
// connections at once), where group commit lets several ACKs share one sync. The bytes strace saw
// on each socket must equal what the client sent and received, and the number of ACKs found in the
// trace must equal the number of messages sent, so the test cannot pass on an empty trace. A last
// check runs the same analysis on the trace with the WAL syncs removed and expects every ACK to be
// flagged, so the analysis itself is shown to fail when the fsync is missing.

import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MllpClient, readAck } from '../agent/sources/mllp/client.js';
import { frame } from '../agent/sources/mllp/decoder.js';
import { AGENT_MAIN, startAgent, type RunningAgent } from './helpers/agent-process.js';
import { readBufferRows } from './helpers/buffer-db.js';
import { realisticMessage } from './helpers/messages.js';
import { childPids, parseStrace, requireStrace, type Syscall } from './helpers/strace.js';

const SEQUENTIAL = 200;
const CONCURRENT_CONNECTIONS = 4;
const PER_CONNECTION = 30;
const IN_FLIGHT = 6;
const SOURCE = { id: 'test', type: 'mllp', listen: '127.0.0.1:0' };
const SOCKET_READS = new Set(['read', 'readv', 'recvfrom', 'recvmsg']);
const SOCKET_WRITES = new Set(['write', 'writev', 'sendto', 'sendmsg']);

/** What one client connection sent and got back, in wire order. */
interface ConnectionRecord {
  readonly localPort: number;
  readonly sequential: boolean;
  readonly ids: string[];
  /** Each frame as written (VT payload FS CR). */
  readonly sent: Buffer[];
  /** Each response frame as received (re-framed; the payload bytes are exactly what arrived). */
  readonly received: Buffer[];
}

describe('fsync before ACK (strace)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-fsync-'));
  let agent: RunningAgent | undefined;
  let agentPid: number | undefined;
  let passed = false;

  afterAll(async () => {
    if (agentPid !== undefined) {
      try {
        process.kill(agentPid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    if (agent) await agent.stop('SIGKILL');
    if (passed) rmSync(dir, { recursive: true, force: true });
    else console.log(`fsync trace test data kept for inspection in ${dir}`);
  });

  it('writes every ACK only after a completed fsync of the WAL holding the message', async () => {
    // No skip: without strace this test fails, with the install command in the message.
    const straceVersion = requireStrace();
    expect(existsSync(AGENT_MAIN), `${AGENT_MAIN} is missing: run "npm run build" first`).toBe(true);
    const started = Date.now();
    const tracePath = join(dir, 'strace.txt');
    const walPath = join(dir, 'data', 'buffer.db-wal');
    agent = await startAgent(
      {
        dir,
        sources: [SOURCE],
        wrapper: [
          'strace',
          '-f', // every thread: SQLite runs on libuv's worker threads
          '-qq',
          '-yy', // fd paths and TCP endpoints, so MLLP sockets and buffer.db-wal can be told apart
          '-x', // non-printable bytes as \xNN
          '-s',
          '4096', // a whole WAL page, so a row's control id is visible
          '-e',
          'signal=none',
          '-e',
          'trace=read,readv,recvfrom,recvmsg,write,writev,sendto,sendmsg,pwrite64,fsync,fdatasync',
          '-o',
          tracePath,
        ],
      },
      60_000,
    );
    const tracees = childPids(agent.child.pid!);
    expect(tracees, 'strace should run exactly one agent process').toHaveLength(1);
    agentPid = tracees[0]!;
    const port = agent.mllpPorts.test!;

    // Phase 1: one connection, one message in flight.
    const records: ConnectionRecord[] = [];
    let n = 0;
    const seq = await openConnection(port, true);
    records.push(seq.record);
    for (let i = 0; i < SEQUENTIAL; i++) await seq.send(realisticMessage('FSQ', n++));
    await seq.client.close();

    // Phase 2: several connections at once, each pipelining.
    const conns = await Promise.all(Array.from({ length: CONCURRENT_CONNECTIONS }, () => openConnection(port, false)));
    for (const c of conns) records.push(c.record);
    await Promise.all(
      conns.map(async (c) => {
        const messages = Array.from({ length: PER_CONNECTION }, () => realisticMessage('FCC', n++));
        const lane = async (): Promise<void> => {
          for (let m = messages.shift(); m; m = messages.shift()) await c.send(m);
        };
        await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
        await c.client.close();
      }),
    );

    // Stop the agent itself (a signal to strace would only detach it); strace exits with it.
    process.kill(agentPid, 'SIGTERM');
    const exit = await agent.exited;
    agent = undefined;
    agentPid = undefined;
    expect(exit.code, 'agent (under strace) should stop cleanly').toBe(0);

    const total = SEQUENTIAL + CONCURRENT_CONNECTIONS * PER_CONNECTION;
    expect(records.reduce((s, r) => s + r.received.length, 0), 'every message got an AA').toBe(total);
    const rows = await readBufferRows(join(dir, 'data', 'buffer.db'));
    expect(rows.length, 'every message is in the buffer once').toBe(total);

    const text = readFileSync(tracePath, 'utf8');
    const calls = parseStrace(text);
    const result = analyse(calls, { walPath, mllpPort: port, records });
    const syncCount = calls.filter((c) => isWalSync(c, walPath)).length;
    console.log(
      `fsync trace: ${straceVersion}; trace ${(text.length / 1e6).toFixed(1)} MB, ${calls.length} calls; ` +
        `acks_in_trace=${result.acks} (sent ${total}); wal_syncs=${syncCount}, wal_transactions=${result.transactions}; ` +
        `sequential: ${result.sequentialAcks} ACKs, ${result.sequentialGapsWithOneSync} gaps with exactly one WAL sync, min ${result.minSyncsPerGap} max ${result.maxSyncsPerGap}; ` +
        `concurrent: ${result.concurrentAcks} ACKs covered by ${result.concurrentDistinctSyncs} distinct syncs; ` +
        `violations=${result.violations.length}; secs=${((Date.now() - started) / 1000).toFixed(1)}`,
    );
    expect(result.violations.slice(0, 20)).toEqual([]);
    expect(result.acks, 'ACK frames found in the trace').toBe(total);
    expect(result.sequentialAcks).toBe(SEQUENTIAL);
    expect(result.concurrentAcks).toBe(CONCURRENT_CONNECTIONS * PER_CONNECTION);

    // The analysis must be able to fail: without the WAL syncs every ACK is a violation.
    const withoutSyncs = analyse(
      calls.filter((c) => !isWalSync(c, walPath)),
      { walPath, mllpPort: port, records },
    );
    expect(withoutSyncs.flagged.size, 'every ACK flagged once the syncs are removed from the trace').toBe(total);
    passed = true;
  }, 120_000);
});

describe('strace output parsing', () => {
  it('joins -f interleaved calls and decodes data, fds and results', () => {
    const wal = '/d/buffer.db-wal';
    const sock = 'TCP:[127.0.0.1:2575->127.0.0.1:40000]';
    const calls = parseStrace(
      [
        `100 fsync(19<${wal}> <unfinished ...>`,
        `101 writev(24<${sock}>, [{iov_base="\\x0bMSH|", iov_len=5}, {iov_base="a\\"b\\\\\\r\\x1c\\x0d", iov_len=6}], 2 <unfinished ...>`,
        '100 <... fsync resumed>)              = 0',
        '101 <... writev resumed>)             = 11',
        `102 read(24<${sock}>,  <unfinished ...>`,
        '103 +++ exited with 0 +++',
        '102 <... read resumed>"\\x0b\\x4d"..., 65536) = 1500',
        `102 pwrite64(19<${wal}>, "\\x00\\x00\\x00\\x02\\x00\\x00\\x00\\x08", 24, 4128) = 24`,
        `102 write(24<${sock}>, "x\\n\\0", 3) = -1 EAGAIN (Resource temporarily unavailable)`,
        '102 fdatasync(7</d/other>) = ?',
      ].join('\n'),
    );
    expect(calls.map((c) => [c.name, c.tid, c.start, c.end, c.ret])).toEqual([
      ['fsync', 100, 0, 2, 0],
      ['writev', 101, 1, 3, 11],
      ['read', 102, 4, 6, 1500],
      ['pwrite64', 102, 7, 7, 24],
      ['write', 102, 8, 8, -1],
      ['fdatasync', 102, 9, 9, null],
    ]);
    expect(calls[0]!.fdDesc).toBe(wal);
    expect(calls[1]!.fdDesc).toBe(sock);
    expect(calls[1]!.data).toEqual(Buffer.from('\x0bMSH|a"b\\\r\x1c\r', 'latin1'));
    expect(calls[2]!.data).toEqual(Buffer.from([0x0b, 0x4d]));
    expect(calls[2]!.truncated).toBe(true);
    expect(calls[3]!.numbers).toEqual([24, 4128]);
    expect(calls[3]!.data!.readUInt32BE(4)).toBe(8);
    expect(calls[4]!.data).toEqual(Buffer.from('x\n\0', 'latin1'));
  });
});

async function openConnection(port: number, sequential: boolean): Promise<{ client: MllpClient; record: ConnectionRecord; send(payload: Buffer): Promise<void> }> {
  const client = await MllpClient.connect({ host: '127.0.0.1', port, responseTimeoutMs: 30_000 });
  const record: ConnectionRecord = { localPort: client.raw.localPort!, sequential, ids: [], sent: [], received: [] };
  return {
    client,
    record,
    async send(payload: Buffer): Promise<void> {
      const id = /^MSH\|[^|]*\|(?:[^|]*\|){7}([^|]*)\|/.exec(payload.toString('latin1'))![1]!;
      // Recorded before send(): the client writes the frame synchronously, so this is wire order.
      record.ids.push(id);
      record.sent.push(frame(payload));
      const response = await client.send(payload);
      const ack = readAck(response);
      expect(`${ack.code} ${ack.controlId}`).toBe(`AA ${id}`);
      record.received.push(frame(response));
    },
  };
}

function isWalSync(c: Syscall, walPath: string): boolean {
  return (c.name === 'fsync' || c.name === 'fdatasync') && c.fdDesc === walPath;
}

interface WalTransaction {
  /** Line where its first frame write started, and where its commit frame's page write completed. */
  readonly start: number;
  readonly end: number;
  readonly pages: Buffer[];
}

interface Analysis {
  readonly violations: string[];
  /** Control ids with at least one violation. */
  readonly flagged: Set<string>;
  readonly acks: number;
  readonly transactions: number;
  readonly sequentialAcks: number;
  readonly sequentialGapsWithOneSync: number;
  readonly minSyncsPerGap: number;
  readonly maxSyncsPerGap: number;
  readonly concurrentAcks: number;
  readonly concurrentDistinctSyncs: number;
}

/** Checks the rule described at the top of this file; returns every violation found. */
function analyse(calls: readonly Syscall[], opts: { walPath: string; mllpPort: number; records: readonly ConnectionRecord[] }): Analysis {
  const violations: string[] = [];
  const flagged = new Set<string>();
  const { walPath } = opts;

  // WAL frames are written as a 24-byte header then the page; a header whose bytes 4-7 (database
  // size after commit) are non-zero marks the last frame of a transaction. 32-byte writes at offset
  // 0 are the WAL file header (written when the WAL restarts after a checkpoint).
  const transactions: WalTransaction[] = [];
  let open: { start: number; pages: Buffer[] } | undefined;
  let header: Syscall | undefined;
  for (const c of calls) {
    if (c.name !== 'pwrite64' || c.fdDesc !== walPath) continue;
    const count = c.numbers[0];
    if (c.ret !== count) violations.push(`WAL write at line ${c.start + 1} returned ${c.ret} of ${count} bytes`);
    if (count === 32 && c.numbers[1] === 0) continue;
    if (count === 24) {
      header = c;
      open ??= { start: c.start, pages: [] };
      continue;
    }
    if (!header || !c.data) {
      violations.push(`WAL page write at line ${c.start + 1} without a frame header before it`);
      continue;
    }
    if (c.truncated) violations.push(`WAL page write at line ${c.start + 1} was cut short by strace -s; raise -s to the page size`);
    open ??= { start: c.start, pages: [] };
    open.pages.push(c.data);
    if (header.data && header.data.length === 24 && header.data.readUInt32BE(4) !== 0) {
      transactions.push({ start: open.start, end: c.end, pages: open.pages });
      open = undefined;
    }
    header = undefined;
  }
  const syncs = calls.filter((c) => isWalSync(c, walPath));

  let acks = 0;
  let sequentialAcks = 0;
  let concurrentAcks = 0;
  const concurrentSyncs = new Set<number>();
  const gapCounts: number[] = [];
  for (const rec of opts.records) {
    const desc = `TCP:[127.0.0.1:${opts.mllpPort}->127.0.0.1:${rec.localPort}]`;
    const label = `connection from port ${rec.localPort}`;
    const reads = calls.filter((c) => SOCKET_READS.has(c.name) && c.fdDesc === desc && (c.ret ?? 0) > 0).sort((a, b) => a.end - b.end);
    const writes = calls.filter((c) => SOCKET_WRITES.has(c.name) && c.fdDesc === desc && (c.ret ?? 0) > 0).sort((a, b) => a.start - b.start);

    // Where each inbound frame was complete: the read that brought its last byte.
    const inbound = Buffer.concat(rec.sent);
    const frameReadLine: number[] = [];
    let offset = 0;
    let k = 0;
    let frameEnd = rec.sent[0]?.length ?? 0;
    for (const r of reads) {
      const shown = r.data!.subarray(0, Math.min(r.ret!, r.data!.length));
      if (!shown.equals(inbound.subarray(offset, offset + shown.length))) violations.push(`${label}: bytes read at line ${r.start + 1} differ from what the client sent`);
      offset += r.ret!;
      while (k < rec.sent.length && frameEnd <= offset) {
        frameReadLine.push(r.end);
        k++;
        frameEnd += rec.sent[k]?.length ?? 0;
      }
    }
    if (offset !== inbound.length) violations.push(`${label}: the trace shows ${offset} bytes read, the client sent ${inbound.length}`);

    // Where each ACK started to go out: the write holding its first byte (VT).
    const outbound = Buffer.concat(rec.received);
    const ackWriteLine: number[] = [];
    offset = 0;
    k = 0;
    let ackStart = 0;
    for (const w of writes) {
      const shown = w.data!.subarray(0, Math.min(w.ret!, w.data!.length));
      if (!shown.equals(outbound.subarray(offset, offset + shown.length))) violations.push(`${label}: bytes written at line ${w.start + 1} differ from what the client received`);
      while (k < rec.received.length && ackStart < offset + w.ret!) {
        const at = ackStart - offset;
        if (at < shown.length && shown[at] !== 0x0b) violations.push(`${label}: ACK ${k} does not start with VT at line ${w.start + 1}`);
        ackWriteLine.push(w.start);
        ackStart += rec.received[k]!.length;
        k++;
      }
      offset += w.ret!;
    }
    if (offset !== outbound.length) violations.push(`${label}: the trace shows ${offset} bytes written, the client received ${outbound.length}`);
    acks += ackWriteLine.length;

    let previousAck = -1;
    for (let i = 0; i < rec.ids.length; i++) {
      const id = rec.ids[i]!;
      const readLine = frameReadLine[i];
      const ackLine = ackWriteLine[i];
      if (readLine === undefined || ackLine === undefined) {
        violations.push(`${label}: ${id}: frame read or ACK write missing from the trace`);
        continue;
      }
      const idBytes = Buffer.from(id, 'latin1');
      const tx = transactions.find((t) => t.start > readLine && t.pages.some((p) => p.includes(idBytes)));
      const sync = tx ? syncs.find((s) => s.start > tx.end) : undefined;
      if (!tx) violations.push(`${id}: no WAL transaction holding its row after its frame was read (line ${readLine + 1})`);
      else if (tx.end > ackLine) violations.push(`${id}: ACK written (line ${ackLine + 1}) before its WAL commit completed (line ${tx.end + 1})`);
      else if (!sync || sync.end > ackLine) violations.push(`${id}: ACK written (line ${ackLine + 1}) before the WAL fsync after its commit (line ${tx.end + 1}) completed${sync ? ` (line ${sync.end + 1})` : ''}`);
      else if (sync.ret !== 0) violations.push(`${id}: the WAL sync before its ACK failed (line ${sync.end + 1}: ${sync.ret})`);
      else if (sync.start < readLine) violations.push(`${id}: the WAL sync before its ACK started before the frame was read`);
      if (rec.sequential) {
        sequentialAcks++;
        // Its own sync: one completed after the previous ACK (for the first, after its frame was read).
        const from = previousAck >= 0 ? previousAck : readLine;
        gapCounts.push(syncs.filter((s) => s.end > from && s.end < ackLine && s.ret === 0).length);
        if (gapCounts.at(-1) === 0) violations.push(`${id}: no completed WAL sync between the previous ACK (line ${from + 1}) and this one (line ${ackLine + 1})`);
      } else {
        concurrentAcks++;
        if (sync) concurrentSyncs.add(sync.start);
      }
      previousAck = ackLine;
      if (violations.some((v) => v.startsWith(`${id}:`))) flagged.add(id);
    }
  }
  return {
    violations,
    flagged,
    acks,
    transactions: transactions.length,
    sequentialAcks,
    sequentialGapsWithOneSync: gapCounts.filter((g) => g === 1).length,
    minSyncsPerGap: gapCounts.length > 0 ? Math.min(...gapCounts) : 0,
    maxSyncsPerGap: gapCounts.length > 0 ? Math.max(...gapCounts) : 0,
    concurrentAcks,
    concurrentDistinctSyncs: concurrentSyncs.size,
  };
}
