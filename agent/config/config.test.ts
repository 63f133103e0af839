import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseListen, parseSize, validateConfig, validateYaml } from './index.js';

describe('agent config', () => {
  it('fills every default from an empty file', () => {
    const r = validateYaml('');
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.config).toMatchObject({ data_dir: '/var/lib/ferry-agent', log_level: 'info', admin: { listen: '127.0.0.1:9575' }, buffer: { max_bytes: 10 * 1024 ** 3 }, sources: [] });
  });

  it('applies the documented MLLP defaults', () => {
    const r = validateYaml('sources:\n  - id: adt-main\n    type: mllp\n');
    expect(r.ok && r.config.sources[0]).toEqual({
      id: 'adt-main',
      type: 'mllp',
      listen: '0.0.0.0:2575',
      max_message_bytes: 16 * 1024 * 1024,
      max_connections: 256,
      partial_frame_timeout_secs: 60,
      idle_timeout_secs: 600,
      dedupe_window_secs: 300,
      max_in_flight_per_connection: 1024,
    });
  });

  it('applies the uplink defaults and checks its settings', () => {
    const r = validateYaml('');
    expect(r.ok && r.config.uplink).toEqual({
      enabled: true,
      retry_initial_delay_secs: 0.25,
      retry_max_delay_secs: 30,
      ack_timeout_secs: 30,
      keepalive_time_secs: 30,
      keepalive_timeout_secs: 10,
    });
    const bad = validateYaml('uplink: { retry_initial_delay_secs: 60, retry_max_delay_secs: 30, ack_timeout_secs: 0, url: x }');
    expect(bad.ok).toBe(false);
    if (bad.ok) return;
    expect(bad.problems.map((p) => p.path).sort()).toEqual(['uplink', 'uplink.ack_timeout_secs', 'uplink.retry_initial_delay_secs']);
    const refine = validateYaml('uplink: { retry_initial_delay_secs: 60, retry_max_delay_secs: 30 }');
    expect(!refine.ok && refine.problems.map((p) => p.path)).toEqual(['uplink.retry_initial_delay_secs']);
  });

  it('reports every problem at once, each with its path', () => {
    const r = validateYaml(
      [
        'data_dir: 7',
        'buffer: { max_bytes: "lots" }',
        'sources:',
        '  - { id: "bad id!", type: mllp, listen: "nowhere", max_connections: -1 }',
        '  - { id: ok, type: mllp, allow_ips: ["10.0.0.0/33", "not-an-ip"], tls: { cert_file: c.pem } }',
        'unknown_key: 1',
      ].join('\n'),
    );
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const paths = r.problems.map((p) => p.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        'data_dir',
        'buffer.max_bytes',
        'sources[0].id',
        'sources[0].listen',
        'sources[0].max_connections',
        'sources[1].allow_ips[0]',
        'sources[1].allow_ips[1]',
        'sources[1].tls.key_file',
        '(root)',
      ]),
    );
    expect(r.problems.find((p) => p.path === '(root)')?.message).toMatch(/unknown_key/);
  });

  it('rejects duplicate source ids', () => {
    const r = validateConfig({ sources: [{ id: 'a', type: 'mllp' }, { id: 'a', type: 'mllp', listen: '0.0.0.0:2576' }] });
    expect(r.ok).toBe(false);
    expect(!r.ok && r.problems).toEqual([{ path: 'sources[1].id', message: 'duplicate source id "a" (also sources[0])' }]);
  });

  it('reports YAML syntax errors with a line', () => {
    const r = validateYaml('sources:\n  - id: [unclosed\n');
    expect(r.ok).toBe(false);
    expect(!r.ok && r.problems[0]!.path).toMatch(/^line \d+$/);
  });

  it('parses sizes with units and listen addresses', () => {
    expect(parseSize('16MiB')).toBe(16 * 1024 * 1024);
    expect(parseSize('10 GiB')).toBe(10 * 1024 ** 3);
    expect(parseSize('1.5KB')).toBe(1500);
    expect(parseSize(1500)).toBe(1500);
    expect(parseSize('12 furlongs')).toBeUndefined();
    expect(parseListen('0.0.0.0:2575')).toEqual({ host: '0.0.0.0', port: 2575 });
    expect(parseListen('[::1]:9575')).toEqual({ host: '::1', port: 9575 });
    expect(parseListen(':2575')).toEqual({ host: '0.0.0.0', port: 2575 });
    expect(parseListen('host:99999')).toBeUndefined();
  });
});

describe('packaging/agent.example.yaml', () => {
  const text = readFileSync(new URL('../../packaging/agent.example.yaml', import.meta.url), 'utf8');

  it('is valid as shipped', () => {
    expect(validateYaml(text)).toMatchObject({ ok: true });
  });

  it('stays valid with its commented trust settings switched on', () => {
    const uncommented = text.replace(/^# (uplink|fleet):$/gm, '$1:').replace(/^# ( {2}ca_file: .*)$/gm, '$1');
    expect(uncommented).toContain('\nuplink:\n  ca_file: /etc/ferry/ca.crt');
    const result = validateYaml(uncommented);
    expect(result).toMatchObject({ ok: true, config: { uplink: { ca_file: '/etc/ferry/ca.crt' }, fleet: { ca_file: '/etc/ferry/ca.crt' } } });
  });
});
