// Reading a child process's output as lines (its JSON logs, start-up lines), whatever way the
// bytes are chunked.

import type { ChildProcess } from 'node:child_process';

/** Calls onLine with every non-empty line the child writes to stdout or stderr. */
export function onChildLines(child: ChildProcess, onLine: (line: string) => void): void {
  for (const stream of [child.stdout, child.stderr]) {
    if (!stream) continue;
    let rest = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      const parts = (rest + chunk).split('\n');
      rest = parts.pop() ?? '';
      for (const line of parts) if (line.trim() !== '') onLine(line);
    });
  }
}

/** The line as a JSON object, or undefined when it is not one. */
export function parseJsonLine(line: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(line);
    return value !== null && typeof value === 'object' ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
