// Is another process holding the buffer file open (a running agent)? Two writers would hand out
// the same seqs, so import refuses to run beside one. Linux: a look through /proc/*/fd, the way
// fuser does it; elsewhere, or without permission to look, the answer is "unknown".

import { readdirSync, readlinkSync, realpathSync } from 'node:fs';

export function processesHolding(file: string): number[] | 'unknown' {
  let target: string;
  try {
    target = realpathSync(file);
  } catch {
    return []; // no buffer yet: nobody holds it
  }
  const names = new Set([target, `${target}-wal`, `${target}-shm`]);
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  } catch {
    return 'unknown';
  }
  const holders: number[] = [];
  for (const pid of pids) {
    if (Number(pid) === process.pid) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // gone, or another user's process we may not inspect
    }
    for (const fd of fds) {
      try {
        if (names.has(readlinkSync(`/proc/${pid}/fd/${fd}`))) {
          holders.push(Number(pid));
          break;
        }
      } catch {
        // closed meanwhile
      }
    }
  }
  return holders;
}
