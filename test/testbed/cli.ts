/**
 * A long-lived testbed for trying node-bootstrap by hand, in .testbed/ at the repo root.
 *
 *   tsx test/testbed/cli.ts up [--containerd 1.6|1.7] [--show-secrets]
 *   tsx test/testbed/cli.ts down
 *
 * `up` starts a detached holder process (`serve`) that owns the testbed (the ECR and IMDS emulators
 * live in it), waits until it is ready and prints its environment. `down` stops the holder, which
 * stops everything; leftovers are then killed and unmounted. Both are idempotent.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { demo } from './demo.js';
import { killShims, unmountUnder } from './host.js';
import { startTestbed } from './index.js';
import { isRunning, REPO, stopProcess, waitUntil } from './proc.js';

const DIR = join(REPO, '.testbed');
const STATE = join(DIR, 'testbed.json');
const PID_FILE = join(DIR, 'holder.pid');
const LOG = join(DIR, 'holder.log');

/** What `up` leaves for `down` and for other tools (mode 0600: it holds the registry password). */
export interface TestbedState {
  pid: number;
  dir: string;
  configFile: string;
  env: Record<string, string>;
  sandboxImage: string;
  containerd?: { version: string; socket: string; pid?: number; logFile: string };
  registry?: { host: string; username: string; password: string; caFile: string; pid?: number };
  ecr?: { url: string };
  imds?: { url: string };
}

function readState(): TestbedState | undefined {
  try {
    return JSON.parse(readFileSync(STATE, 'utf8')) as TestbedState;
  } catch {
    return undefined;
  }
}

/** `pid` if it still runs and its command line mentions `text` (guards against reused pids). */
function ours(pid: number | undefined, text: string): number | undefined {
  try {
    return isRunning(pid) && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(text) ? pid : undefined;
  } catch {
    return undefined;
  }
}

const holderPid = (): number | undefined =>
  ours(Number(existsSync(PID_FILE) ? readFileSync(PID_FILE, 'utf8') : 0), 'serve');

function print(state: TestbedState, showSecrets: boolean): void {
  const out = [`# testbed up (holder pid ${state.pid}), config: ${state.configFile}`];
  for (const [k, v] of Object.entries(state.env)) out.push(`export ${k}='${v}'`);
  if (state.containerd) out.push(`# containerd ${state.containerd.version}: ${state.containerd.socket}`);
  if (state.registry) {
    const pw = showSecrets ? state.registry.password : '<redacted: add --show-secrets>';
    out.push(
      `# registry https://${state.registry.host} (CA ${state.registry.caFile}), user AWS, password ${pw}`,
    );
  }
  out.push(`# sandbox image: ${state.sandboxImage}`);
  console.log(out.join('\n'));
}

async function up(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { containerd: { type: 'string' }, 'show-secrets': { type: 'boolean' } },
  });
  const version = values.containerd ?? '1.6';
  if (version !== '1.6' && version !== '1.7')
    throw new Error(`--containerd: expected 1.6 or 1.7, got ${version}`);
  const state = readState();
  if (holderPid() && state) {
    const running = state.containerd?.version ?? 'no containerd';
    if (values.containerd && running !== version)
      throw new Error(`already up with containerd ${running}; run \`tsx test/testbed/cli.ts down\` first`);
    print(state, values['show-secrets'] ?? false);
    return 0;
  }
  await down();
  mkdirSync(DIR, { recursive: true });
  const started = Date.now();
  const log = openSync(LOG, 'a');
  const self = fileURLToPath(import.meta.url);
  // execArgv carries tsx's loader: the holder runs this same file the same way.
  const holder = spawn(process.execPath, [...process.execArgv, self, 'serve', '--containerd', version], {
    detached: true,
    stdio: ['ignore', log, log],
  });
  holder.unref();
  writeFileSync(PID_FILE, String(holder.pid));
  await waitUntil('the testbed holder to be ready', () => existsSync(STATE), {
    timeoutMs: 60_000,
    failIf: () =>
      isRunning(holder.pid) ? undefined : `holder exited:\n${readFileSync(LOG, 'utf8').slice(-1500)}`,
  });
  print(readState()!, values['show-secrets'] ?? false);
  console.log(`# ready in ${Date.now() - started} ms; stop with: tsx test/testbed/cli.ts down`);
  return 0;
}

/** The holder: owns the testbed until SIGTERM/SIGINT. */
async function serve(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { containerd: { type: 'string' } } });
  const tb = await startTestbed({
    dir: DIR,
    containerd: { version: values.containerd === '1.7' ? '1.7' : '1.6' },
  });
  const c = tb.containerd;
  const r = tb.registry;
  const state: TestbedState = {
    pid: process.pid,
    dir: tb.dir,
    configFile: tb.configFile,
    env: tb.env,
    sandboxImage: tb.sandboxImage,
    containerd: c && { version: c.version, socket: c.socket, pid: c.pid(), logFile: c.logFile },
    registry: r && {
      host: r.host,
      username: r.username,
      password: r.password,
      caFile: r.caFile,
      pid: r.pid(),
    },
    ecr: tb.ecr && { url: tb.ecr.url },
    imds: tb.imds && { url: tb.imds.url },
  };
  writeFileSync(STATE, JSON.stringify(state, null, 2), { mode: 0o600 });
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  await tb.stop();
  return 0;
}

async function down(): Promise<number> {
  const state = readState();
  const pid = holderPid();
  if (pid) await stopProcess(pid, 30_000);
  // The holder normally cleans up; after a crash, take back what it left.
  for (const p of [state?.containerd?.pid, state?.registry?.pid]) await stopProcess(ours(p, DIR), 2_000);
  if (state?.containerd) killShims(state.containerd.socket);
  unmountUnder(DIR);
  rmSync(DIR, { recursive: true, force: true });
  if (pid || state) console.log('testbed down');
  return 0;
}

/** Subcommands. */
const commands: Record<string, (args: string[]) => Promise<number>> = { up, down, serve, demo };

const [name = '', ...rest] = process.argv.slice(2);
const command = commands[name];
if (!command) {
  console.error(`usage: tsx test/testbed/cli.ts <${Object.keys(commands).join('|')}> [options]`);
  process.exit(2);
}
command(rest).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`testbed ${name}: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
