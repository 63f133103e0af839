// What the benchmark reads about the machine and its processes: /proc (RSS, CPU time), the disk's
// fsync rate, and the machine description printed with the results.

import { execFileSync } from 'node:child_process';
import { closeSync, fdatasyncSync, openSync, readFileSync, readdirSync, rmSync, writeSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';

let clockTicks: number | undefined;

/** Clock ticks per second for /proc/PID/stat times (USER_HZ, almost always 100). */
export function clockTicksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** VmRSS of a process in bytes, or undefined when it cannot be read (process gone). */
export function rssBytes(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** User + system CPU seconds a process has used so far. */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces; fields after it start after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    const utime = Number(rest[11]);
    const stime = Number(rest[12]);
    return (utime + stime) / clockTicksPerSecond();
  } catch {
    return undefined;
  }
}

/** Samples a process's RSS every intervalMs until stop(); peak() is the highest seen. */
export function sampleRss(pid: number, intervalMs = 100): { stop(): void; peak(): number } {
  let peak = rssBytes(pid) ?? 0;
  const sample = (): void => {
    const rss = rssBytes(pid);
    if (rss !== undefined && rss > peak) peak = rss;
  };
  const timer = setInterval(sample, intervalMs);
  let stopped = false;
  return {
    stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      sample();
    },
    peak: () => peak,
  };
}

export interface FsyncProbe {
  /** fdatasync calls per second. */
  readonly perSecond: number;
  readonly meanMs: number;
  readonly p99Ms: number;
  readonly count: number;
  readonly how: string;
}

/**
 * Small write + fdatasync in a loop for `seconds`, on a file in `dir`. `append` grows the file (the
 * size change makes each sync a metadata update as well, like SQLite's WAL before it wraps);
 * otherwise each write overwrites the same 4 KiB page (the WAL after a checkpoint reset).
 */
export function probeFsync(dir: string, seconds: number, append: boolean): FsyncProbe {
  const path = join(dir, `fsync-probe-${append ? 'append' : 'overwrite'}.bin`);
  const fd = openSync(path, 'w');
  const page = Buffer.alloc(4096, 0x5a);
  const times: number[] = [];
  try {
    if (!append) {
      writeSync(fd, page, 0, page.length, 0);
      fdatasyncSync(fd);
    }
    const end = performance.now() + seconds * 1000;
    let offset = 0;
    for (;;) {
      const t0 = performance.now();
      if (t0 >= end) break;
      page.writeUInt32LE(times.length, 0);
      writeSync(fd, page, 0, page.length, append ? offset : 0);
      offset += page.length;
      fdatasyncSync(fd);
      times.push(performance.now() - t0);
    }
  } finally {
    closeSync(fd);
    rmSync(path, { force: true });
  }
  const total = times.reduce((a, b) => a + b, 0);
  const sorted = Float64Array.from(times).sort();
  return {
    perSecond: times.length / (total / 1000),
    meanMs: total / times.length,
    p99Ms: sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))] ?? 0,
    count: times.length,
    how: append ? '4 KiB append + fdatasync' : '4 KiB overwrite + fdatasync',
  };
}

export interface MachineInfo {
  readonly cpuModel: string;
  readonly cores: number;
  readonly node: string;
  readonly date: string;
  readonly kernel: string;
  readonly memTotalGiB: number;
}

export function machineInfo(): MachineInfo {
  let cpuModel = cpus()[0]?.model ?? 'unknown';
  let memTotalGiB = 0;
  let kernel = 'unknown';
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) cpuModel = m[1]!.trim();
  } catch {
    /* not Linux: keep os.cpus() */
  }
  try {
    const m = /^MemTotal:\s+(\d+)\s+kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
    if (m) memTotalGiB = Number(m[1]) / 1024 / 1024;
    kernel = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  } catch {
    /* not Linux */
  }
  return { cpuModel, cores: cpus().length, node: process.version, date: new Date().toISOString(), kernel, memTotalGiB };
}

/** 1-minute load average, to show how noisy the machine was. */
export function loadAverage(): string {
  try {
    return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  } catch {
    return 'n/a';
  }
}

/**
 * CPU seconds per thread: "main" for the JS thread, "tid N" for the others (libuv pool threads,
 * where SQLite runs; V8 helper threads for GC and compilation). Node 20 leaves every thread named
 * "node", so threads are told apart by id only.
 */
export function threadCpuSeconds(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(tid === String(pid) ? 'main' : `tid ${tid}`, (Number(rest[11]) + Number(rest[12])) / clockTicksPerSecond());
    } catch {
      /* thread ended */
    }
  }
  return out;
}

/** The difference of two threadCpuSeconds readings, busiest first. */
export function threadCpuDelta(before: Map<string, number>, after: Map<string, number>): [string, number][] {
  const out: [string, number][] = [];
  for (const [name, secs] of after) {
    const d = secs - (before.get(name) ?? 0);
    if (d > 0) out.push([name, d]);
  }
  return out.sort((a, b) => b[1] - a[1]);
}

/** Machine-wide busy CPU seconds (all cores; idle and iowait excluded), from /proc/stat. */
export function systemBusySeconds(): number | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already inside user)
    const busy = (v[0] ?? 0) + (v[1] ?? 0) + (v[2] ?? 0) + (v[5] ?? 0) + (v[6] ?? 0) + (v[7] ?? 0);
    return busy / clockTicksPerSecond();
  } catch {
    return undefined;
  }
}

export interface SchedSplit {
  /** Seconds the main thread ran / was runnable but waiting for a CPU. */
  readonly mainRun: number;
  readonly mainWait: number;
  /** The same summed over every other thread. */
  readonly otherRun: number;
  readonly otherWait: number;
}

/** Per-thread run and run-queue wait time (ns) from /proc/PID/task/TID/schedstat. */
export function threadSched(pid: number): Map<string, [number, number]> {
  const out = new Map<string, [number, number]>();
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const [run, wait] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ').map(Number);
      out.set(tid === String(pid) ? 'main' : tid, [run ?? 0, wait ?? 0]);
    } catch {
      /* thread ended */
    }
  }
  return out;
}

/** How long the process's threads ran and how long they waited for a CPU between two readings. */
export function schedDelta(before: Map<string, [number, number]>, after: Map<string, [number, number]>): SchedSplit {
  let mainRun = 0;
  let mainWait = 0;
  let otherRun = 0;
  let otherWait = 0;
  for (const [tid, [run, wait]] of after) {
    const [run0, wait0] = before.get(tid) ?? [0, 0];
    if (tid === 'main') {
      mainRun += run - run0;
      mainWait += wait - wait0;
    } else {
      otherRun += run - run0;
      otherWait += wait - wait0;
    }
  }
  return { mainRun: mainRun / 1e9, mainWait: mainWait / 1e9, otherRun: otherRun / 1e9, otherWait: otherWait / 1e9 };
}

/**
 * Where a process's resident memory lives, from /proc/PID/smaps (MiB of Rss): the brk heap (glibc's
 * main arena), anonymous mappings (V8's heap pages, glibc's per-thread arenas, native buffers),
 * shared memory (SQLite's -shm) and mapped files (the binary, libraries), plus the largest
 * anonymous mappings: enough to tell a V8 heap that grew from native memory that was never returned.
 */
export function memoryMap(pid: number): string | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/smaps`, 'utf8');
  } catch {
    return undefined;
  }
  const totals = { heap: 0, anon: 0, shmem: 0, file: 0 };
  const anon: { size: number; rss: number }[] = [];
  let kind: keyof typeof totals = 'anon';
  let size = 0;
  for (const line of text.split('\n')) {
    const header = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ (\d+)\s*(.*)$/.exec(line);
    if (header) {
      const name = header[2] ?? '';
      kind = name === '[heap]' ? 'heap' : name === '' || name.startsWith('[anon') ? 'anon' : name.startsWith('/dev/shm') || name.endsWith('-shm') ? 'shmem' : name.startsWith('[') ? 'anon' : 'file';
      const range = line.slice(0, line.indexOf(' ')).split('-');
      size = (parseInt(range[1]!, 16) - parseInt(range[0]!, 16)) / 1024;
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss) {
      const kb = Number(rss[1]);
      totals[kind] += kb;
      if (kind === 'anon') anon.push({ size, rss: kb });
    }
  }
  const mib = (kb: number): string => (kb / 1024).toFixed(1);
  const top = anon
    .sort((a, b) => b.rss - a.rss)
    .slice(0, 6)
    .map((m) => `${mib(m.rss)} of ${mib(m.size)}`)
    .join(', ');
  return `brk heap ${mib(totals.heap)} MiB, anonymous ${mib(totals.anon)} MiB (largest: ${top}), shm ${mib(totals.shmem)} MiB, files ${mib(totals.file)} MiB`;
}
