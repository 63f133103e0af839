import { describe, expect, it } from 'vitest';
import { validateConfig, validateYaml } from './index.js';

describe('control plane config', () => {
  it('fills every default from an empty file', () => {
    const r = validateConfig({});
    expect(r).toEqual({
      ok: true,
      config: {
        data_dir: '/var/lib/ferry-control-plane',
        log_level: 'info',
        http: { listen: '0.0.0.0:8080' },
        grpc: { listen: '0.0.0.0:50051' },
        mqtt: {},
        store: { type: 'sqlite' },
        shutdown_timeout_secs: 15,
      },
    });
  });

  it('reports every problem at once, by path', () => {
    const r = validateYaml('data_dir: ""\nhttp:\n  listen: nope\ngrpc:\n  listen: 1.2.3.4:99999\n  extra: 1\nmqtt:\n  listen: 0.0.0.0:1883\n  url: mqtt://broker\ncolour: red\n');
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.problems.map((p) => p.path).sort()).toEqual(['(root)', 'data_dir', 'grpc', 'grpc.listen', 'http.listen', 'mqtt'].sort());
  });

  it('checks the mqtt section: embedded-only and external-only keys, credentials that go together', () => {
    const ok = validateYaml('mqtt:\n  url: mqtts://broker:8883\n  username: cp\n  password_file: /etc/ferry/mqtt-password\n  mosquitto:\n    password_file: /etc/mosquitto/passwd\n    acl_file: /etc/mosquitto/acl\n');
    expect(ok.ok).toBe(true);
    const bad = validateYaml('mqtt:\n  tls:\n    cert_file: a\n    key_file: b\n  url: mqtt://x\n  username: cp\n');
    expect(bad.ok).toBe(false);
    if (bad.ok) return;
    expect(bad.problems.map((p) => p.path).sort()).toEqual(['mqtt.password_file', 'mqtt.tls']);
    const embeddedWithCreds = validateYaml('mqtt:\n  listen: 127.0.0.1:1884\n  ca_file: /x\n');
    expect(embeddedWithCreds.ok).toBe(false);
    if (!embeddedWithCreds.ok) expect(embeddedWithCreds.problems.map((p) => p.path)).toEqual(['mqtt.ca_file']);
  });

  it('reports YAML syntax errors with a line', () => {
    const r = validateYaml('http:\n  listen: [\n');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.problems[0]!.path).toMatch(/^line \d+$/);
  });
});
