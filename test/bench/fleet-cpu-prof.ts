// Preloaded into the control plane by the fleet benchmark (BENCH_FLEET_CPU_PROF=<dir>, via
// NODE_OPTIONS=--import, where --cpu-prof itself is not allowed): profiles the whole process with
// the inspector and writes a .cpuprofile into the folder when the process exits.

import { Session } from 'node:inspector';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.env.FERRY_BENCH_CPU_PROF_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.start');
  process.on('exit', () => {
    // An in-process inspector session answers synchronously, so this completes before exit.
    session.post('Profiler.stop', (err, result) => {
      if (!err) writeFileSync(join(dir, `control-plane-${process.pid}.cpuprofile`), JSON.stringify(result.profile));
    });
  });
}
