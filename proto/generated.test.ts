import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { INGEST_SERVICE, loadIngestDefinition, loadIngestPackage } from './index.js';

const ROOT = resolve(import.meta.dirname, '..');
const tmp = mkdtempSync(join(tmpdir(), 'ferry-proto-gen-'));

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

describe('proto/generated', () => {
  it('matches what `npm run proto:gen` makes from the .proto files (run it and commit the result if this fails)', () => {
    const out = join(tmp, 'generated');
    execFileSync(process.execPath, [join(ROOT, 'scripts', 'proto-gen.js'), out], { cwd: ROOT, stdio: 'pipe' });
    const checkedIn = join(ROOT, 'proto', 'generated');
    const fresh = listFiles(out);
    expect(fresh.length).toBeGreaterThan(0);
    expect(listFiles(checkedIn)).toEqual(fresh);
    for (const f of fresh) {
      expect(readFileSync(join(checkedIn, f), 'utf8'), f).toBe(readFileSync(join(out, f), 'utf8'));
    }
  });

  it('loads the ingest service at run time', () => {
    const def = loadIngestDefinition();
    expect(Object.keys(def)).toContain(INGEST_SERVICE);
    const pkg = loadIngestPackage();
    expect(Object.keys(pkg.ferry.v1.Ingest.service)).toEqual(['Stream']);
    const stream = pkg.ferry.v1.Ingest.service.Stream;
    expect(stream.requestStream && stream.responseStream).toBe(true);
    expect(stream.path).toBe(`/${INGEST_SERVICE}/Stream`);
  });

  it('round-trips 64-bit seqs as numbers and bytes as Buffers', () => {
    const Ingest = loadIngestPackage().ferry.v1.Ingest.service.Stream;
    const payload = Buffer.from([0x0b, 0x00, 0xff, 0x0d]);
    const bytes = Ingest.requestSerialize({
      batch: { envelopes: [{ seq: 2 ** 40 + 1, sourceId: 's', receivedAtMs: 1_700_000_000_123, payload, sha256: Buffer.alloc(32, 1), metadata: { size: 4 } }] },
    });
    const frame = Ingest.requestDeserialize(bytes);
    expect(frame.frame).toBe('batch');
    const env = frame.batch?.envelopes[0];
    expect(env?.seq).toBe(2 ** 40 + 1);
    expect(env?.receivedAtMs).toBe(1_700_000_000_123);
    expect(Buffer.isBuffer(env?.payload)).toBe(true);
    expect(env?.payload.equals(payload)).toBe(true);
    expect(env?.metadata?.controlId).toBe('');
  });
});
