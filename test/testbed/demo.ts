/**
 * `npm run demo`: a local demo boot. Starts a private testbed (real containerd, TLS registry with the
 * ECR-named pause image, ECR API and IMDS emulators), runs the built node-bootstrap against it as a
 * node would, then prints the boot timeline with `node-bootstrap report`. Cleans up after itself.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startTestbed } from './index.js';
import { REPO } from './proc.js';

const BIN = join(REPO, 'dist', 'node-bootstrap.mjs');

export async function demo(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { containerd: { type: 'string', default: '1.7' } } });
  const version = values.containerd === '1.6' ? '1.6' : '1.7';
  process.stdout.write(`demo: starting the testbed (containerd ${version}, registry, ECR API, IMDS)...\n`);
  // No baked archive: the demo shows the regional pull (IMDSv2 credentials, an ECR token, a CRI pull, the pin).
  const tb = await startTestbed({ containerd: { version } });
  try {
    const stateDir = join(tb.dir, 'state');
    // Asynchronous on purpose: the ECR and IMDS emulators answer from this very process.
    const node = (...a: string[]) =>
      new Promise<{ status: number; stdout: string; stderr: string }>((resolve) => {
        execFile(process.execPath, [BIN, ...a], { env: tb.env, encoding: 'utf8' }, (err, stdout, stderr) =>
          resolve({ status: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
        );
      });
    process.stdout.write(
      `demo: node-bootstrap resolve-image --region eu-west-1\n${(await node('resolve-image', '--region', 'eu-west-1')).stdout}`,
    );
    process.stdout.write(
      `\ndemo: node-bootstrap run --config ${tb.configFile} --skip containerd-unit,kubelet\n`,
    );
    const run = await node(
      'run',
      '--config',
      tb.configFile,
      '--state-dir',
      stateDir,
      '--skip',
      'containerd-unit,kubelet',
    );
    for (const line of run.stderr.split('\n').filter(Boolean)) {
      try {
        const e = JSON.parse(line) as { level: string; msg: string };
        process.stdout.write(`  ${e.level.padEnd(5)} ${e.msg}\n`);
      } catch {
        process.stdout.write(`  ${line}\n`);
      }
    }
    process.stdout.write(run.stdout);
    process.stdout.write(
      `\ndemo: node-bootstrap report\n${(await node('report', '--state-dir', stateDir)).stdout}`,
    );
    process.stdout.write('\ndemo: a second run is idempotent (image present, already pinned)\n');
    process.stdout.write(
      (
        await node(
          'run',
          '--config',
          tb.configFile,
          '--state-dir',
          stateDir,
          '--skip',
          'containerd-unit,kubelet',
        )
      ).stdout,
    );
    return run.status;
  } finally {
    await tb.stop();
    process.stdout.write('demo: testbed stopped and cleaned up\n');
  }
}
