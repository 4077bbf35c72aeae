/**
 * argv → command; SIGTERM/SIGINT → abort; error → exit code. Commands load lazily so that
 * `--version`, `--help` and `resolve-image` never pay for the AWS SDK, gRPC or D-Bus.
 */
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { BootError, EXIT, toBootError } from './errors.js';
import { heavy } from './lazy.js';
import { VERSION } from './version.js';

type Options = NonNullable<ParseArgsConfig['options']>;
interface Command {
  summary: string;
  usage: string;
  options: Options;
  /** Returns the exit code. */
  run(values: Record<string, string | boolean | undefined>, signal: AbortSignal): Promise<number>;
}

const json = { json: { type: 'boolean' } } as const;
const config = { config: { type: 'string' } } as const;

const COMMANDS: Record<string, Command> = {
  run: {
    summary:
      'run the boot sequence: containerd, sandbox image, resolv.conf, then kubelet (--observe: verify and report only, change nothing)',
    usage: 'run [--config FILE] [--skip PHASE[,PHASE]] [--state-dir DIR] [--observe]',
    options: {
      ...config,
      skip: { type: 'string' },
      'state-dir': { type: 'string' },
      observe: { type: 'boolean' },
    },
    run: async (v, signal) => (await heavy()).run(v, signal),
  },
  check: {
    summary: 'read-only preflight of this node or image (exit 1 when a check fails)',
    usage: 'check [--config FILE] [--resolv-conf FILE] [--root DIR] [--json]',
    options: { ...config, ...json, 'resolv-conf': { type: 'string' }, root: { type: 'string' } },
    run: async (v, signal) => (await heavy()).check(v, signal),
  },
  'resolve-image': {
    summary: "print the region's sandbox (pause) image",
    usage: 'resolve-image --region REGION [--fips] [--dualstack] [--tag TAG] [--json]',
    options: {
      ...json,
      region: { type: 'string' },
      tag: { type: 'string' },
      fips: { type: 'boolean' },
      dualstack: { type: 'boolean' },
    },
    run: async (v) => (await import('./commands/resolve-image.js')).resolveImage(v),
  },
  prefetch: {
    summary: 'pull the configured images, staggered and I/O-aware',
    usage: 'prefetch [--config FILE] [--state-dir DIR]',
    options: { ...config, 'state-dir': { type: 'string' } },
    run: async (v, signal) => (await heavy()).prefetch(v, signal),
  },
  guard: {
    summary: 'verify the sandbox image is present and pinned; restore it if not',
    usage: 'guard [--config FILE] [--state-dir DIR]',
    options: { ...config, 'state-dir': { type: 'string' } },
    run: async (v, signal) => (await heavy()).guard(v, signal),
  },
  report: {
    summary: "print the last boot's timeline",
    usage: 'report [--state-dir DIR] [--source status|journal] [--json]',
    options: { ...json, 'state-dir': { type: 'string' }, source: { type: 'string' } },
    run: async (v) => (await import('./commands/report.js')).report(v),
  },
  install: {
    summary: 'install the systemd units into a root (e.g. an image being built) and enable them',
    usage: 'install [--root DIR] [--bin PATH] [--mode standalone|nodeadm|observe]',
    options: { root: { type: 'string' }, bin: { type: 'string' }, mode: { type: 'string' } },
    run: async (v) => (await import('./commands/install.js')).install(v),
  },
};

function help(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  const lines = Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(width)}  ${c.summary}`);
  return [
    `node-bootstrap ${VERSION}: ordered, observable boot of a Kubernetes worker node`,
    '',
    'usage: node-bootstrap COMMAND [options]   (node-bootstrap COMMAND --help for its options)',
    '',
    'commands:',
    ...lines,
    '',
    'exit codes: 0 ok, 1 check failed, 2 usage, 69 unavailable, 70 internal error, 75 temporary failure (retry),',
    '            78 configuration error',
  ].join('\n');
}

export async function main(argv: string[], signal: AbortSignal): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${help()}\n`);
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  if (name === '--version' || name === '-V') {
    process.stdout.write(`${VERSION}\n`);
    return EXIT.ok;
  }
  const cmd = COMMANDS[name];
  if (!cmd) throw new BootError('USAGE', `unknown command \`${name}\``);
  const { values } = (() => {
    try {
      return parseArgs({
        args: rest,
        options: { ...cmd.options, help: { type: 'boolean', short: 'h' } },
        strict: true,
        allowPositionals: false,
      });
    } catch (err) {
      throw new BootError('USAGE', `${name}: ${(err as Error).message}`, {
        hint: `usage: node-bootstrap ${cmd.usage}`,
      });
    }
  })();
  if (values.help) {
    process.stdout.write(`usage: node-bootstrap ${cmd.usage}\n\n${cmd.summary}\n`);
    return EXIT.ok;
  }
  return cmd.run(values as Record<string, string | boolean | undefined>, signal);
}

/** Prints an error an operator can act on; returns its exit code. */
export function reportError(err: unknown): number {
  const e = toBootError(err);
  process.stderr.write(`node-bootstrap: ${e.code}: ${e.message}\n  fix: ${e.hint}\n`);
  if (e.code === 'INTERNAL' && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
  return e.exitCode;
}
