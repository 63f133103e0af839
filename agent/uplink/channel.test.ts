import { describe, expect, it } from 'vitest';
import { isLoopback } from '../../proto/policy/index.js';
import { hostOf, planChannel, takeWithin } from './index.js';

describe('planChannel: TLS unless the control plane is loopback over plain http/grpc', () => {
  it.each([
    ['http://127.0.0.1:8080', '127.0.0.1:50051', '127.0.0.1:50051', false],
    ['http://localhost:8080', 'localhost:50051', 'localhost:50051', false],
    ['http://[::1]:8080', '[::1]:50051', '[::1]:50051', false],
    ['https://127.0.0.1:8443', '127.0.0.1:50051', '127.0.0.1:50051', true],
    ['http://cp.example.org:8080', 'cp.example.org:50051', 'cp.example.org:50051', true],
    ['http://10.1.2.3:8080', '10.1.2.3:50051', '10.1.2.3:50051', true],
    ['http://127.0.0.1:8080', 'grpcs://127.0.0.1:50051', '127.0.0.1:50051', true],
    ['http://127.0.0.1:8080', 'grpc://127.0.0.1:50051/', '127.0.0.1:50051', false],
  ])('%s with target %s → %s, tls %s', (url, target, expected, tls) => {
    expect(planChannel(url, target)).toEqual({ target: expected, tls });
  });

  it('finds the host of a target and knows loopback addresses', () => {
    expect(hostOf('[::1]:50051')).toBe('::1');
    expect(hostOf('cp.example.org:50051')).toBe('cp.example.org');
    expect(hostOf('cp.example.org')).toBe('cp.example.org');
    expect(['127.0.0.1', '127.8.9.10', '::1', 'localhost', 'LOCALHOST', 'a.localhost'].every(isLoopback)).toBe(true);
    expect(['10.0.0.1', '0.0.0.0', '::', 'cp.example.org', '128.0.0.1', 'localhost.example.org'].some(isLoopback)).toBe(false);
  });
});

describe('takeWithin', () => {
  const row = (seq: number, size: number) => ({ seq, payload: Buffer.alloc(size) }) as Parameters<typeof takeWithin>[0][number];
  it('keeps rows in order while they fit, and always one (a large message goes alone)', () => {
    expect(takeWithin([row(1, 40), row(2, 40), row(3, 40)], 100).map((r) => r.seq)).toEqual([1, 2]);
    expect(takeWithin([row(1, 500), row(2, 1)], 100).map((r) => r.seq)).toEqual([1]);
    expect(takeWithin([], 100)).toEqual([]);
  });
});
