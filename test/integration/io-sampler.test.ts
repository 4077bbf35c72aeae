/**
 * The I/O sampler against the real kernel: /proc/pressure/io and the block-layer counters of the
 * device under a real filesystem. Figures are not asserted (that is the bench's job), only that the
 * signals are read, windowed and attributed to the right device.
 */
import { closeSync, fsyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { blockStatFile, createIoSampler } from '../../src/adapters/psi.js';

const dir = mkdtempSync(join(tmpdir(), 'nb-io-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('io sampler (real /proc/pressure/io and /sys/dev/block)', () => {
  it('finds the block device under a disk filesystem, none under tmpfs or procfs', () => {
    expect(blockStatFile(dir)).toMatch(/^\/sys\/dev\/block\/\d+:\d+\/stat$/);
    expect(blockStatFile('/dev/shm')).toBeUndefined();
    expect(blockStatFile('/proc')).toBeUndefined();
    expect(blockStatFile(join(dir, 'missing'))).toBeUndefined();
  });

  it('avg10 first, then the window; the volume write rate sees fsync-ed writes', async () => {
    const s = createIoSampler({ volume: dir, windowMs: 500, intervalMs: 100 });
    try {
      expect(s.warmInMs()).toBeGreaterThan(0);
      const first = s.read();
      expect(first.psiSource).toBe('avg10');
      expect(first.deviceMBps).toBeUndefined();
      const fd = openSync(join(dir, 'data'), 'w');
      const buf = Buffer.alloc(1 << 20, 1);
      for (let i = 0; i < 16; i++) writeSync(fd, buf);
      fsyncSync(fd);
      closeSync(fd);
      await sleep(300);
      expect(s.warmInMs()).toBe(0);
      const after = s.read();
      expect(after.psiSource).toBe('window');
      expect(after.psi!.some).toBeGreaterThanOrEqual(0);
      expect(after.psi!.some).toBeLessThanOrEqual(100);
      expect(after.deviceMBps).toBeGreaterThan(0);
    } finally {
      s.stop();
    }
  });

  it('window 0: avg10 only, no write-rate signal', async () => {
    const s = createIoSampler({ volume: dir, windowMs: 0, intervalMs: 50 });
    try {
      await sleep(300);
      expect(s.read()).toMatchObject({ psiSource: 'avg10', deviceMBps: undefined });
    } finally {
      s.stop();
    }
  });
});
