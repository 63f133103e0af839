// Reading `strace -f -yy -x -o FILE` output, for tests that check the order of system calls
// (fsync before ACK). Understands the -f interleaving: a call split into "<unfinished ...>" and
// "<... NAME resumed>" lines is joined, and it counts as started at its first line and completed
// at its last. Also finds the process strace runs, so a test can signal the agent rather than
// strace (strace detaches from its tracee when it gets a signal, leaving the agent running).

import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

export interface Syscall {
  readonly tid: number;
  readonly name: string;
  /** First argument when it is a file descriptor. */
  readonly fd: number | null;
  /** What -y/-yy printed for that descriptor: a path, or e.g. "TCP:[127.0.0.1:2575->127.0.0.1:40000]". */
  readonly fdDesc: string | null;
  /** The data argument (read/write/pwrite64/sendto) or the iovecs joined (writev/readv/sendmsg/recvmsg), as far as -s showed it. */
  readonly data: Buffer | null;
  /** True when strace cut the data short (-s). */
  readonly truncated: boolean;
  /** The numeric arguments after the data, in order (e.g. count and offset of pwrite64). */
  readonly numbers: readonly number[];
  /** Return value; null when strace printed "?" (the process died inside the call) or no result. */
  readonly ret: number | null;
  /** Index (0-based) of the line where the call started. */
  readonly start: number;
  /** Index of the line where the call completed (same as start unless it was unfinished). */
  readonly end: number;
}

/** Throws a clear error when strace cannot run here (the tests need it: CI installs it with apt). */
export function requireStrace(): string {
  const probe = spawnSync('strace', ['-V'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    throw new Error(
      `strace is required by this test and is not runnable here (${probe.error?.message ?? `exit ${probe.status}`}). ` +
        'Install it: apt-get update && apt-get install -y strace',
    );
  }
  return probe.stdout.split('\n')[0] ?? 'strace';
}

/** Pids whose parent is `pid` (from /proc; Linux only). */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue;
    }
    // "pid (comm) state ppid ...": comm may hold spaces or parentheses, so read after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[1]) === pid) out.push(Number(entry));
  }
  return out;
}

const DATA_CALLS = new Set(['read', 'write', 'pread64', 'pwrite64', 'sendto', 'recvfrom']);
const IOV_CALLS = new Set(['readv', 'writev', 'preadv', 'pwritev', 'sendmsg', 'recvmsg']);

/** Parses a whole strace output file (one process tree, -f, one output file). */
export function parseStrace(text: string): Syscall[] {
  const lines = text.split('\n');
  const unfinished = new Map<number, { head: string; line: number }>();
  const calls: Syscall[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = /^(\d+)\s+(.*)$/.exec(lines[i]!);
    if (!m) continue;
    const tid = Number(m[1]);
    let body = m[2]!;
    let start = i;
    const resumed = /^<\.\.\. [\w]+ resumed>(.*)$/.exec(body);
    if (resumed) {
      const head = unfinished.get(tid);
      unfinished.delete(tid);
      if (!head) continue; // its start was before tracing began
      body = head.head + resumed[1]!;
      start = head.line;
    } else if (body.endsWith(' <unfinished ...>')) {
      unfinished.set(tid, { head: body.slice(0, -' <unfinished ...>'.length), line: i });
      continue;
    }
    const call = parseCall(tid, body, start, i);
    if (call) calls.push(call);
  }
  return calls;
}

function parseCall(tid: number, body: string, start: number, end: number): Syscall | undefined {
  const head = /^([a-z_0-9]+)\(/.exec(body);
  if (!head) return undefined; // "+++ exited", "--- SIG", and the like
  const name = head[1]!;
  let pos = head[0].length;
  let fd: number | null = null;
  let fdDesc: string | null = null;
  const fdMatch = /^(-?\d+)/.exec(body.slice(pos));
  if (fdMatch) {
    fd = Number(fdMatch[1]);
    pos += fdMatch[1]!.length;
    if (body[pos] === '<') {
      // The description may itself hold '>' ("127.0.0.1:1->127.0.0.1:2"); it ends at '>' before ',' or ')'.
      let close = pos + 1;
      while (close < body.length && !(body[close] === '>' && (body[close + 1] === ',' || body[close + 1] === ')'))) close++;
      fdDesc = body.slice(pos + 1, close);
      pos = close + 1;
    }
  }
  // Walk the rest: quoted strings are decoded (never searched for syntax), everything else kept.
  const pieces: Buffer[] = [];
  let truncated = false;
  let rest = '';
  let firstString = true;
  while (pos < body.length) {
    const ch = body[pos]!;
    if (ch === '"') {
      const { bytes, next } = readQuoted(body, pos);
      const isIov = /iov_base=$/.test(body.slice(Math.max(0, pos - 9), pos));
      let cut = false;
      pos = next;
      if (body.startsWith('...', pos)) {
        cut = true;
        pos += 3;
      }
      if ((DATA_CALLS.has(name) && firstString) || (IOV_CALLS.has(name) && isIov)) {
        pieces.push(bytes);
        truncated ||= cut;
      }
      firstString = false;
      rest += '""';
      continue;
    }
    rest += ch;
    pos++;
  }
  const retMatch = /\)\s*=\s*(-?\d+|\?)(?:\s|$)[^=]*$/.exec(rest);
  const ret = retMatch && retMatch[1] !== '?' ? Number(retMatch[1]) : null;
  const argText = retMatch ? rest.slice(0, retMatch.index) : rest;
  const numbers = [...argText.matchAll(/,\s*(-?\d+)(?=\s*(?:,|$))/g)].map((n) => Number(n[1]));
  const data = DATA_CALLS.has(name) || IOV_CALLS.has(name) ? Buffer.concat(pieces) : null;
  return { tid, name, fd, fdDesc, data, truncated, numbers, ret, start, end };
}

/** Decodes one C-style string as strace prints it, starting at the opening quote. */
function readQuoted(s: string, open: number): { bytes: Buffer; next: number } {
  const out: number[] = [];
  let i = open + 1;
  while (i < s.length) {
    const ch = s[i]!;
    if (ch === '"') return { bytes: Buffer.from(out), next: i + 1 };
    if (ch !== '\\') {
      // strace prints non-ASCII bytes escaped, so every literal character is one byte.
      out.push(ch.charCodeAt(0) & 0xff);
      i++;
      continue;
    }
    const e = s[i + 1]!;
    if (e === 'x') {
      out.push(parseInt(s.slice(i + 2, i + 4), 16));
      i += 4;
    } else if (e >= '0' && e <= '7') {
      let j = i + 1;
      while (j < i + 4 && s[j]! >= '0' && s[j]! <= '7') j++;
      out.push(parseInt(s.slice(i + 1, j), 8) & 0xff);
      i = j;
    } else {
      const simple: Record<string, number> = { n: 10, r: 13, t: 9, v: 11, f: 12, a: 7, b: 8, '"': 34, '\\': 92 };
      out.push(simple[e] ?? e.charCodeAt(0));
      i += 2;
    }
  }
  throw new Error(`unterminated string in strace line: ${s.slice(0, 120)}`);
}
