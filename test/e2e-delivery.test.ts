// End to end across real processes: a control plane (`ferry-control-plane serve`), an agent enrolled
// through the real API (`ferry-agent enroll`, the token on stdin) and running (`ferry-agent run`)
// with two MLLP sources. Every file of the shared corpus (../shared/hl7-samples) goes in as one
// MLLP frame on each source; once the agent reports nothing pending, the control plane's message
// list (paged with the cursor) and payloads must hold every message of every file byte for byte,
// once, and in sending order per source (seq strictly increasing).

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MllpClient, readAck } from '../agent/sources/mllp/client.js';
import { startAgent, type RunningAgent } from './helpers/agent-process.js';
import type { ControlPlaneProcess, StoredMessageMeta } from './helpers/control-plane-process.js';
import { agentOptions, agentStatus, cleanUpProcesses, mllpFrame, sha256hex, startFleet, waitDrained } from './helpers/e2e.js';
import { loadManifest, readSample, type SampleEntry } from './helpers/samples.js';

let dir: string | undefined;
let agent: RunningAgent | undefined;
let cp: ControlPlaneProcess | undefined;

afterEach(async () => {
  await cleanUpProcesses(agent, cp, dir);
  agent = cp = dir = undefined;
});

/**
 * The messages of a block, as the contract describes them (written here independently of the
 * agent's splitter): a message starts at an MSH segment and runs to the end of its last non-blank
 * segment, terminator included; FHS/BHS/BTS/FTS segments and blank lines belong to no message; a
 * leading UTF-8 BOM belongs to the first message.
 */
function expectedMessages(bytes: Buffer): Buffer[] {
  const bom = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0;
  const spans: { start: number; end: number }[] = [];
  let current: { start: number; end: number } | undefined;
  const segment = /([^\r\n]*)(\r\n|\r|\n|$)/g;
  segment.lastIndex = bom;
  const text = bytes.toString('latin1');
  for (let m = segment.exec(text); m && m.index < bytes.length; m = segment.exec(text)) {
    const line = m[1]!;
    const start = m.index;
    const end = start + m[0].length;
    segment.lastIndex = end;
    if (line.trim() === '') continue;
    const name = line.slice(0, 3);
    if (name === 'MSH' && line.length > 3) {
      if (current) spans.push(current);
      current = { start, end };
    } else if (['FHS', 'BHS', 'BTS', 'FTS'].includes(name)) {
      if (current) spans.push(current);
      current = undefined;
    } else if (current) {
      current.end = end;
    }
  }
  if (current) spans.push(current);
  if (bom && spans[0]?.start === bom) spans[0] = { start: 0, end: spans[0].end };
  return spans.map((s) => bytes.subarray(s.start, s.end));
}

/** MSH fields of a message (index i is MSH-(i+1); MSH-1 is the separator itself). */
function mshFields(message: Buffer): string[] {
  const text = message.toString('latin1').replace(/^\xEF\xBB\xBF/, '');
  const field = text.charAt(3);
  return [field, ...text.split(/\r\n|\r|\n/)[0]!.slice(4).split(field)];
}

/**
 * The response the contract promises for a frame whose messages were all committed: none when
 * every message is an ACK; otherwise for the first message that is not an ACK, AA in original
 * mode, and in enhanced mode (MSH-15 or MSH-16 valued) CA unless MSH-15 is NE or ER.
 */
function expectedResponse(messages: readonly Buffer[]): 'AA' | 'CA' | undefined {
  const first = messages.map(mshFields).find((f) => !(f[8] ?? '').startsWith('ACK'));
  if (!first) return undefined;
  const accept = (first[14] ?? '').trim().toUpperCase();
  const application = (first[15] ?? '').trim();
  if (accept === '' && application === '') return 'AA';
  return accept === 'NE' || accept === 'ER' ? undefined : 'CA';
}

interface Sent {
  readonly file: string;
  readonly bytes: Buffer;
}

interface SourceRun {
  /** Messages the agent must keep, in sending order. */
  readonly kept: Sent[];
  /** Messages in frames answered AA or CA. */
  readonly acknowledged: number;
  /** Messages in frames that are stored but not answered (inbound ACKs, MSH-15 NE or ER). */
  readonly unanswered: number;
  /** Messages in frames refused by contract (a message without MSH-10: AE, nothing of the frame stored). */
  readonly refused: number;
  /** file: response code, for every frame whose response was not the expected one. */
  readonly wrong: string[];
}

/**
 * Sends the corpus on one connection, one frame at a time: each file as one frame (the agent
 * splits it), or each message of each file as its own frame.
 */
async function sendCorpus(port: number, entries: readonly SampleEntry[], mode: 'file' | 'message'): Promise<SourceRun> {
  const client = await MllpClient.connect({ host: '127.0.0.1', port, responseTimeoutMs: 15_000 });
  const run = { kept: [] as Sent[], acknowledged: 0, unanswered: 0, refused: 0, wrong: [] as string[] };
  try {
    for (const entry of entries) {
      const bytes = readSample(entry.file);
      const all = expectedMessages(bytes);
      expect(all.length, entry.file).toBe(entry.messages);
      for (const frame of mode === 'file' ? [bytes] : all) {
        // A frame that is one message and nothing else is stored exactly as it came (trailing
        // blank lines included); a frame of several messages or a batch is stored as its slices.
        const messages = mode === 'message' ? [frame] : entry.messages === 1 && entry.batchSegments.length === 0 ? [bytes] : all;
        if (messages.some((m) => (mshFields(m)[9] ?? '').trim() === '')) {
          const ack = readAck(await client.send(frame));
          if (ack.code === 'AE') run.refused += messages.length;
          else run.wrong.push(`${entry.file}:${ack.code} (want AE)`);
          continue;
        }
        run.kept.push(...messages.map((m) => ({ file: entry.file, bytes: m })));
        const want = expectedResponse(messages);
        if (want === undefined) {
          client.writeRaw(mllpFrame(frame));
          run.unanswered += messages.length;
          continue;
        }
        const ack = readAck(await client.send(frame));
        if (ack.code === want) run.acknowledged += messages.length;
        else run.wrong.push(`${entry.file}:${ack.code} (want ${want})`);
      }
    }
  } finally {
    await client.close();
  }
  return run;
}

describe('end to end: MLLP in, control-plane store out', () => {
  it('delivers every message of the corpus on two sources byte-identical, once, in sending order per source', async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-e2e-delivery-'));
    // Dedupe off: the corpus repeats messages byte for byte (the 124-message Mirth file), and here
    // every message sent must be stored (dedupe has its own tests, and the crash tests rely on it).
    const sources = ['src-a', 'src-b'].map((id) => ({ id, type: 'mllp', listen: '127.0.0.1:0', dedupe_window_secs: 0 }));
    const fleet = await startFleet(join(dir), agentOptions(join(dir, 'agent'), sources));
    cp = fleet.cp;
    agent = await startAgent(fleet.agentOptions);
    const started = Date.now();

    const manifest = loadManifest();
    // Source A: each file as one frame, in manifest order. Source B: each message as its own
    // frame, files in reverse order. Both at once, each on its own connection.
    const [a, b] = await Promise.all([sendCorpus(agent.mllpPorts['src-a']!, manifest, 'file'), sendCorpus(agent.mllpPorts['src-b']!, [...manifest].reverse(), 'message')]);
    expect([...a.wrong, ...b.wrong]).toEqual([]);
    const runs: Record<string, SourceRun> = { 'src-a': a, 'src-b': b };

    await waitDrained(agent.adminPort, 30_000);
    expect((await agentStatus(agent.adminPort)).uplink).toMatchObject({ state: 'connected', last_error: null });

    const stored = await fleet.api.listMessages({ agent: fleet.agentId });
    let lost = 0;
    let duplicated = 0;
    let identical = 0;
    let outOfOrder = 0;
    const mismatches: string[] = [];
    for (const [source, run] of Object.entries(runs)) {
      // The list is in arrival order at the control plane; per source that must be sending order.
      const rows: StoredMessageMeta[] = stored.filter((r) => r.source_id === source);
      const want = new Map<string, number>();
      for (const m of run.kept) want.set(sha256hex(m.bytes), (want.get(sha256hex(m.bytes)) ?? 0) + 1);
      const got = new Map<string, number>();
      for (const r of rows) got.set(r.sha256.toLowerCase(), (got.get(r.sha256.toLowerCase()) ?? 0) + 1);
      for (const [sha, n] of want) lost += Math.max(0, n - (got.get(sha) ?? 0));
      for (const [sha, n] of got) duplicated += Math.max(0, n - (want.get(sha) ?? 0));
      for (let i = 0; i < rows.length; i++) {
        const row = rows[i]!;
        if (i > 0 && row.seq <= rows[i - 1]!.seq) outOfOrder++;
        const expected = run.kept[i];
        const payload = await fleet.api.payload(row.id);
        if (expected && payload.equals(expected.bytes) && row.sha256.toLowerCase() === sha256hex(payload) && row.size === payload.length) identical++;
        else mismatches.push(`${source} #${i} seq ${row.seq}: expected ${expected?.file ?? 'nothing'}`);
      }
    }

    const sent = a.kept.length + a.refused + b.kept.length + b.refused;
    console.log(
      `[e2e-delivery] files=${manifest.length} sources=2 sent=${sent} acknowledged=${a.acknowledged + b.acknowledged} unanswered_by_contract=${a.unanswered + b.unanswered} refused_by_contract=${a.refused + b.refused} ` +
        `stored=${stored.length} byte_identical_in_order=${identical} lost=${lost} duplicated=${duplicated} out_of_order=${outOfOrder} wall_ms=${Date.now() - started}`,
    );
    expect(mismatches).toEqual([]);
    expect(lost).toBe(0);
    expect(duplicated).toBe(0);
    expect(outOfOrder).toBe(0);
    expect(identical).toBe(a.kept.length + b.kept.length);
    expect(stored.length).toBe(identical);
    expect(stored.every((r) => r.agent_id === fleet.agentId)).toBe(true);
  });
});
