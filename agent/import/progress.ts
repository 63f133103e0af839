// Import progress: a one-line bar redrawn on a TTY (files, messages, MB/s, ETA), nothing on other
// streams (the caller prints a plain summary at the end instead).

export interface ImportProgress {
  readonly filesDone: number;
  readonly filesTotal: number;
  readonly bytesDone: number;
  readonly bytesTotal: number;
  readonly messages: number;
  readonly failed: number;
  readonly elapsedMs: number;
}

const REDRAW_MS = 200;
const BAR_WIDTH = 24;

export class ProgressBar {
  private lastDraw = 0;
  private drawn = false;

  constructor(private readonly out: NodeJS.WriteStream) {}

  update(p: ImportProgress, force = false): void {
    const now = Date.now();
    if (!force && now - this.lastDraw < REDRAW_MS) return;
    this.lastDraw = now;
    this.drawn = true;
    this.out.write(`\r\x1b[K${formatProgress(p, this.out.columns ?? 100)}`);
  }

  /** Leaves the last state on screen and moves to a new line. */
  finish(p: ImportProgress): void {
    this.update(p, true);
    if (this.drawn) this.out.write('\n');
  }
}

export function formatProgress(p: ImportProgress, columns = 100): string {
  const ratio = p.bytesTotal > 0 ? p.bytesDone / p.bytesTotal : p.filesTotal > 0 ? p.filesDone / p.filesTotal : 1;
  const filled = Math.round(Math.min(1, ratio) * BAR_WIDTH);
  const seconds = p.elapsedMs / 1000;
  const mbps = seconds > 0 ? p.bytesDone / 1e6 / seconds : 0;
  const eta = ratio > 0 && ratio < 1 ? formatDuration((seconds / ratio) * (1 - ratio)) : ratio >= 1 ? '0s' : '-';
  const line =
    `[${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ${(ratio * 100).toFixed(1)}%  ` +
    `${p.filesDone}/${p.filesTotal} files  ${p.messages} msgs  ${mbps.toFixed(1)} MB/s  ETA ${eta}` +
    (p.failed > 0 ? `  ${p.failed} failed` : '');
  return line.length > columns - 1 ? line.slice(0, columns - 1) : line;
}

export function formatDuration(secs: number): string {
  const s = Math.max(0, Math.round(secs));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
