import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { mosquittoPasswordHash, SqliteMessageStore } from '../../store/index.js';
import { MosquittoFiles } from './mosquitto-files.js';
import { capturingLogger } from './test-fixtures.js';

let dir: string | undefined;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

describe('Mosquitto files', () => {
  it('hashes exactly as mosquitto_passwd 2.0 does ($7$, PBKDF2-SHA512, 101 iterations, 12-byte salt)', () => {
    // Written by `mosquitto_passwd -c -b pw alice s3cret` (mosquitto 2.0.11).
    const line = 'alice:$7$101$2OUpHgXVgfv6oYJI$QKvMply6Q94h0RSJTQ2/DzWElDZo40C7pYWQEUl2XXRKn40uSREDSywUYLynWV3HJJi9NyYO2fwOgi/SAp8I5g==';
    expect(`alice:${mosquittoPasswordHash('s3cret', Buffer.from('2OUpHgXVgfv6oYJI', 'base64'))}`).toBe(line);
    expect(mosquittoPasswordHash('s3cret')).toMatch(/^\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==$/);
  });

  it('lists every non-revoked agent and the control plane user, owner-only, with per-agent ACL patterns', async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-mosq-files-'));
    const store = await SqliteMessageStore.open({ dataDir: join(dir, 'cp') });
    try {
      const a = await store.createAgent({ name: 'a', policyId: 'default' });
      const b = await store.createAgent({ name: 'b', policyId: 'default' });
      await store.revokeAgent(b.id);
      writeFileSync(join(dir, 'cp-pass'), 'cp-secret\n', { mode: 0o600 });
      const files = new MosquittoFiles(
        { passwordFile: join(dir, 'passwd'), aclFile: join(dir, 'acl'), pidFile: undefined, controlPlaneUser: 'ferry-cp', controlPlanePasswordFile: join(dir, 'cp-pass') },
        { store, log: capturingLogger().log },
      );
      await files.sync('test');
      const passwd = readFileSync(join(dir, 'passwd'), 'utf8').trim().split('\n');
      expect(passwd.map((l) => l.split(':')[0])).toEqual(['ferry-cp', a.id]);
      expect(passwd.join('\n')).not.toContain(a.secret);
      expect(passwd.join('\n')).not.toContain('cp-secret');
      expect(statSync(join(dir, 'passwd')).mode & 0o777).toBe(0o600);
      expect(statSync(join(dir, 'acl')).mode & 0o777).toBe(0o600);
      const acl = readFileSync(join(dir, 'acl'), 'utf8');
      expect(acl).toContain('pattern read ferry/v1/agents/%u/policy');
      expect(acl).toContain('pattern write ferry/v1/agents/%u/status');
      expect(acl).not.toMatch(/^pattern (read|write|readwrite) .*#/m);
      expect(acl).toMatch(/^user ferry-cp\ntopic readwrite ferry\/v1\/agents\/#$/m);
    } finally {
      await store.close();
    }
  });
});
