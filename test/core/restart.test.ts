import { describe, expect, it } from 'vitest';
import { restartVerdict } from '../../src/core/restart.js';

const T = Date.parse('2026-12-01T10:00:00.000Z');
const f = (path: string, offsetMs: number) => ({ path, mtimeMs: T + offsetMs });

describe('restartVerdict', () => {
  it.each([
    [
      'not running: no restart (it reads the files when it starts)',
      undefined,
      [f('/c.toml', 5)],
      false,
      /is not running/,
    ],
    ['no config file found', T, [], false, /no config file/],
    [
      'files older than the start',
      T,
      [f('/c.toml', -1_000), f('/imp.toml', -1)],
      false,
      /started at 2026-12-01T10:00:00\.000Z, after its config last changed/,
    ],
    [
      'written the same instant it started: not newer',
      T,
      [f('/c.toml', 0)],
      false,
      /after its config last changed/,
    ],
    [
      'an import changed after the start',
      T,
      [f('/c.toml', -1_000), f('/imp.toml', 2_000)],
      true,
      /^\/imp\.toml changed at 2026-12-01T10:00:02\.000Z, after containerd\.service started at 2026-12-01T10:00:00\.000Z$/,
    ],
  ] as const)('%s', (_n, started, files, restart, why) => {
    const v = restartVerdict('containerd.service', started, files);
    expect(v.restart).toBe(restart);
    expect(v.why).toMatch(why);
  });

  it('names every newer file, newest first', () => {
    const v = restartVerdict('kubelet.service', T, [f('/a', 1_000), f('/b', 3_000), f('/c', -5)]);
    expect(v.restart && v.newer.map((x) => x.path)).toEqual(['/b', '/a']);
  });
});
