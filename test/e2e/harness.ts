/**
 * e2e harness: boots a REAL systemd (PID 1 of its own namespaces, real system bus, journald) with
 * systemd-nspawn, on an overlay of the host's own tree, so host binaries (node, containerd, runc)
 * run inside and node-bootstrap can be tested as a real unit.
 *
 *   const c = await bootSystemd({
 *     units: { 'containerd.service': UNIT }, files: { '/etc/containerd/config.toml': TOML },
 *     enable: ['containerd.service'], tmpfs: ['/var/lib/containerd'],
 *     prepare: 'rpm --root "$R" -i /srv/pkg.rpm',   // optional: an image-build step on the root
 *     binds: [{ host: REPO, inside: '/srv/node-bootstrap', readOnly: true }],
 *   });                                   // ~0.5 s; afterAll(() => c.stop())
 *   await c.systemctl('is-active', 'containerd');           // {code, stdout, stderr}
 *   await c.runUnit(['/usr/bin/node', '/srv/node-bootstrap/dist/node-bootstrap.mjs', 'check']);
 *   await c.waitJournal(['-u', 'node-bootstrap.service'], (e) => e.MESSAGE === '…');
 *   dbus.sessionBus({ busAddress: c.busAddress });         // host-side D-Bus client
 *   c.path('/run/containerd/containerd.sock');              // host path of a path inside
 *
 * Run long-lived or unit-attributed work AS A UNIT (opts.units, runUnit): a process started by
 * exec() belongs to no unit (no _SYSTEMD_UNIT) and is not a descendant of the container's PID 1.
 *
 * How (see /work/shared/TESTBED.md for why each piece is there):
 *   - the test's process spawns `bash` into a dedicated cgroup, then `unshare --mount
 *     --propagation private`: every mount below lives only in that namespace and vanishes with it;
 *   - there: a tmpfs over /run/systemd (nspawn leaves state under /run/systemd/nspawn*), a tmpfs
 *     holding a read-only bind of `/` as the lower layer, an empty upper layer and an overlay of
 *     both as the container root (what `--volatile=overlay` does, but we can write into it BEFORE
 *     PID 1 starts: units, files, enablement);
 *   - the host's enabled units (`/etc/systemd/system/*.wants/*`) are removed in the overlay, so the
 *     container boots only distro defaults plus what the test enables;
 *   - `systemd-nspawn --boot --register=no --keep-unit --private-network --link-journal=no`;
 *     the harness talks to PID 1 with `nsenter` (no machined on this host, so no `-M`).
 *
 * Everything is cleaned up by stop(): the container powers off (SIGTERM → nspawn sends
 * SIGRTMIN+4 to PID 1), and whatever remains in the cgroup is killed; the cgroup and the temp
 * folder are removed. A container left behind by a crashed test process is swept by the next boot.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { constants as osConstants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { cgroupHierarchies, createCgroup, killCgroupSync, removeCgroup } from './lib/cgroup.js';
import { killGroupExcept, procParent, procStartTime } from './lib/proc.js';

export interface Bind {
  host: string;
  inside: string;
  readOnly?: boolean;
}

/** A file written into the root before boot: text, or bytes with a mode, or a symlink. */
export type FileSpec = string | { content: string | Uint8Array; mode?: number } | { symlink: string };

export interface BootOptions {
  /** Short label in the machine name (letters, digits, `-`); default `e2e`. */
  name?: string;
  /** Unit files present before PID 1 starts. Key: a path inside, or a bare unit name (→ /etc/systemd/system/). */
  units?: Record<string, string>;
  /** Other files present before boot (configs, drop-ins, scripts: `#!` content gets mode 0755). */
  files?: Record<string, FileSpec>;
  /** Units enabled at boot (their [Install] section, applied with `systemctl --root enable`). */
  enable?: string[];
  /**
   * A bash snippet run before boot, after `files` and `units` are written and before `enable`, with
   * `$R` the container's root (host paths are visible): what an image build does to the image,
   * e.g. `rpm --root "$R" -i …`. Its output goes to the console log; a failure fails the boot.
   */
  prepare?: string;
  /** Units masked at boot (`systemd.mask=` arguments to PID 1). */
  mask?: string[];
  /** Host paths bound inside, e.g. the project at /srv/node-bootstrap (not /tmp: PrivateTmp hides it). */
  binds?: Bind[];
  /** Extra tmpfs mounts, e.g. /var/lib/containerd (overlayfs snapshots cannot sit on an overlay root). */
  tmpfs?: string[];
  /**
   * Default true: only `lo`, isolated from the host. false shares the host's network namespace, so
   * units inside reach the testbed's servers on 127.0.0.1 (registry, ECR and IMDS stand-ins);
   * then ports bound inside are bound on the host too.
   */
  privateNetwork?: boolean;
  /** More arguments for PID 1 (kernel command line style), e.g. `systemd.log_level=debug`. */
  kernelArgs?: string[];
  /**
   * Default true: also mask default units a worker-node test does not need (logind, utmp, journal
   * flush, sysusers, hugepages), ~1/3 faster boot. false boots the full default set.
   */
  lean?: boolean;
  /** Keep the host's enabled units (`/etc/systemd/system/*.wants`); default false. */
  keepHostUnits?: boolean;
  /** Fail instead of accepting `degraded` (some unit failed during boot); default false. */
  requireRunning?: boolean;
  /** Deadline for boot to `running`/`degraded`; default 30 s. */
  bootTimeoutMs?: number;
  /** Deadline for the clean poweroff before everything is SIGKILLed; default 10 s. */
  stopTimeoutMs?: number;
  /** Abandons the boot (and removes what it made), e.g. when a test hook times out. */
  signal?: AbortSignal;
}

export interface ExecOptions {
  input?: string;
  /** Default 30 s; the command is SIGKILLed and exec rejects when it passes. */
  timeoutMs?: number;
  /** Added to the clean default environment (PATH, LANG=C.UTF-8, no pager, no colours). */
  env?: Record<string, string>;
  /** Reject when the exit code is not 0. */
  check?: boolean;
  /** Kills the command and rejects with the signal's reason. */
  signal?: AbortSignal;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** One `journalctl -o json` entry. Binary fields are byte arrays; repeated fields are arrays. */
export type JournalEntry = Record<string, string | number[] | (string | number[])[] | null | undefined> & {
  MESSAGE?: string | number[] | null;
};

export interface BootTimings {
  /** spawn → PID 1 of the container exists. */
  leaderMs: number;
  /** spawn → `systemctl is-system-running --wait` answered running/degraded. */
  runningMs: number;
  /** stop() → everything removed (0 until stopped). */
  stopMs: number;
}

export interface SystemdContainer {
  /** Machine name (also the hostname inside); unique per container. */
  readonly name: string;
  /** Host pid of the container's PID 1. */
  readonly leaderPid: number;
  /** Host temp folder of this container (console log, layer); removed by stop(). */
  readonly stateDir: string;
  /** `/proc/<leaderPid>/root`: the container's root seen from the host. */
  readonly rootPath: string;
  /** For host-side D-Bus clients: `unix:path=/proc/<leaderPid>/root/run/dbus/system_bus_socket`. */
  readonly busAddress: string;
  /** `running` or `degraded` at the end of boot. */
  readonly bootState: string;
  /** Units failed at the end of boot (empty when `running`). */
  readonly failedUnits: string[];
  readonly timings: BootTimings;
  /** Host path of a path inside: `path('/run/x')` → `/proc/<pid>/root/run/x`. */
  path(inside: string): string;
  /** Run a command in PID 1's namespaces (mount, pid, uts, ipc, net). Not attributed to any unit. */
  exec(cmd: string[], opts?: ExecOptions): Promise<ExecResult>;
  systemctl(...args: string[]): Promise<ExecResult>;
  /**
   * Run a command as a transient service (`systemd-run --wait --pipe --collect`): attributed to
   * the unit in the journal, in its cgroup, with its properties (`-p KEY=VALUE`). Output is piped
   * back; the code is the command's.
   */
  runUnit(cmd: string[], opts?: ExecOptions & { unit?: string; properties?: string[] }): Promise<ExecResult>;
  /** `journalctl -o json -a --no-pager <args>` parsed; `--sync` first so recent lines are in. */
  journal(args: string[], opts?: { sync?: boolean; timeoutMs?: number }): Promise<JournalEntry[]>;
  /** Poll journal(args) until `match` holds for an entry; returns the matching entries. */
  waitJournal(
    args: string[],
    match?: (e: JournalEntry) => boolean,
    opts?: { timeoutMs?: number },
  ): Promise<JournalEntry[]>;
  /** nspawn's console output (the boot log), colours stripped. */
  console(): string;
  /** Power off and remove every trace. Idempotent; never rejects for a container already gone. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const STATE_PREFIX = 'nb-e2e-';
/** systemd: SIGRTMIN+4 = poweroff. glibc's SIGRTMIN is 34 on Linux; Node has no name for it. */
const SIGRTMIN_PLUS_4 = 38;
const ANSI = /\x1b\[[0-9;?]*[A-Za-z]/g;
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** Units of a host tree that have no business in a test container. */
const DEFAULT_MASKS = ['console-getty.service', 'systemd-firstboot.service'];
/**
 * Default units a worker-node test does not need (logins, utmp, journal flush to disk, hugepages,
 * users already in the host's /etc/passwd): masking them takes boot from ~570 to ~380 ms here.
 */
const LEAN_MASKS = [
  'systemd-logind.service',
  'systemd-user-sessions.service',
  'systemd-update-utmp.service',
  'systemd-update-utmp-runlevel.service',
  'systemd-journal-flush.service',
  'systemd-sysusers.service',
  'dev-hugepages.mount',
];

export class HarnessError extends Error {
  override name = 'HarnessError';
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Poll `probe` until it returns a value other than undefined/false; throws after the deadline. */
export async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  opts: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 5_000);
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      const why = last instanceof Error ? ` (last error: ${last.message})` : '';
      throw new HarnessError(`timed out after ${opts.timeoutMs ?? 5_000} ms waiting for ${what}${why}`);
    }
    await sleep(opts.intervalMs ?? 25);
  }
}

// ---------------------------------------------------------------------------------------------
// The root-preparation script, run by bash inside `unshare --mount --propagation private`.
// $1: the host temp dir; $2…: nspawn arguments. Env: KEEP_HOST_UNITS, ENABLE (unit names),
// PREPARE_ROOT (opts.prepare).
const PREPARE = String.raw`
set -Eeuo pipefail
D=$1; shift
trap 'echo "harness: FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR
mount -t tmpfs -o mode=0755 nb-e2e-run-systemd /run/systemd
mount -t tmpfs -o mode=0755 nb-e2e "$D/mnt"
mkdir "$D/mnt/lower" "$D/mnt/upper" "$D/mnt/work" "$D/mnt/root"
mount --bind / "$D/mnt/lower"
mount -o remount,bind,ro "$D/mnt/lower"
mount -t overlay nb-e2e-root -o "lowerdir=$D/mnt/lower,upperdir=$D/mnt/upper,workdir=$D/mnt/work" "$D/mnt/root"
R=$D/mnt/root
if [[ $KEEP_HOST_UNITS != 1 ]]; then
  shopt -s nullglob
  rm -f -- "$R"/etc/systemd/system/*.wants/* "$R"/etc/systemd/system/*.requires/*
  shopt -u nullglob
fi
while IFS=$'\t' read -r kind a b; do
  case $kind in
    F) install -D -m "$b" -- "$D/layer/$a" "$R/$(cat "$D/layer/$a.path")" ;;
    L) mkdir -p -- "$(dirname -- "$R$a")"; ln -sfn -- "$b" "$R$a" ;;
  esac
done < "$D/layer/manifest"
if [[ -n $PREPARE_ROOT ]]; then
  eval "$PREPARE_ROOT"
fi
if [[ -n $ENABLE ]]; then
  # shellcheck disable=SC2086
  systemctl --root="$R" --quiet --no-reload enable -- $ENABLE
fi
exec systemd-nspawn --directory="$R" "$@"
`;

interface Instance {
  cgroups: string[];
  dir: string;
}
const live = new Set<Instance>();
let exitHookInstalled = false;

/** Last resort when the test process exits without stop(): kill the containers (mounts go with them). */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const inst of live) killCgroupSync(inst.cgroups);
  });
}

/** Remove what a crashed test process left: temp dirs whose owner is gone, and their cgroups. */
export async function sweepStale(): Promise<void> {
  const base = tmpdir();
  let names: string[] = [];
  try {
    names = readdirSync(base).filter((n) => n.startsWith(STATE_PREFIX));
  } catch {
    return;
  }
  for (const n of names) {
    const dir = join(base, n);
    let owner: { pid: number; start: string; cgroups: string[] };
    try {
      owner = JSON.parse(readFileSync(join(dir, 'owner.json'), 'utf8'));
    } catch {
      continue; // being created right now, or not ours
    }
    if (procStartTime(owner.pid) === owner.start) continue; // owner alive
    try {
      await removeCgroup(owner.cgroups, 3_000);
      rmSync(dir, { recursive: true, force: true });
    } catch {}
  }
}

/** What this harness needs on the host; a clear message instead of a confusing failure later. */
function preflight(): void {
  if (process.getuid?.() !== 0) throw new HarnessError('bootSystemd needs root (nspawn, mounts, cgroups)');
  const need: [string, string][] = [
    ['/usr/bin/systemd-nspawn', 'systemd-container'],
    ['/usr/lib/systemd/systemd', 'systemd'],
    ['/usr/bin/dbus-daemon', "dbus (the container boots the host tree: its system bus is the host's dbus)"],
    ['/usr/bin/nsenter', 'util-linux'],
    ['/usr/bin/unshare', 'util-linux'],
  ];
  const missing = need.filter(([bin]) => !existsSync(bin));
  if (missing.length) {
    throw new HarnessError(
      `bootSystemd: missing ${missing.map(([b, pkg]) => `${b} (package ${pkg})`).join(', ')}; run scripts/setup.sh`,
    );
  }
}

function validatePath(kind: string, p: string): void {
  if (!p.startsWith('/') || p.includes('\n') || p.includes('\t') || /(^|\/)\.\.(\/|$)/.test(p)) {
    throw new HarnessError(
      `${kind}: ${JSON.stringify(p)} must be an absolute path without '..', tabs or newlines`,
    );
  }
}

function validateNspawnPath(kind: string, p: string): void {
  validatePath(kind, p);
  if (p.includes(':') || p.includes(','))
    throw new HarnessError(`${kind}: ${JSON.stringify(p)} must not contain ':' or ','`);
}

const UNIT_NAME = /^[\w@.:\\-]+\.(service|socket|target|timer|path|mount|automount|slice|scope|swap|device)$/;

/** Write the layer: one numbered file per entry plus a tab-separated manifest for PREPARE. */
async function writeLayer(layer: string, files: Map<string, FileSpec>): Promise<void> {
  await mkdir(layer, { recursive: true });
  const lines: string[] = [];
  let n = 0;
  for (const [path, spec] of files) {
    if (typeof spec === 'object' && 'symlink' in spec) {
      if (spec.symlink.includes('\n') || spec.symlink.includes('\t')) {
        throw new HarnessError(`files: symlink target of ${path} has a tab or newline`);
      }
      lines.push(`L\t${path}\t${spec.symlink}`);
      continue;
    }
    const content = typeof spec === 'string' ? spec : spec.content;
    const mode =
      typeof spec === 'object' && spec.mode !== undefined
        ? spec.mode
        : typeof content === 'string' && content.startsWith('#!')
          ? 0o755
          : 0o644;
    const id = String(n++);
    await writeFile(join(layer, id), content);
    await writeFile(join(layer, `${id}.path`), path.slice(1));
    lines.push(`F\t${id}\t${mode.toString(8)}`);
  }
  await writeFile(join(layer, 'manifest'), lines.map((l) => `${l}\n`).join(''));
}

/** PID 1 of the container: nspawn's child whose innermost pid is 1, once it runs systemd. */
function findLeader(nspawnPid: number | undefined): number | undefined {
  if (!nspawnPid) return undefined;
  let kids: string[] = [];
  try {
    kids = readFileSync(`/proc/${nspawnPid}/task/${nspawnPid}/children`, 'utf8').trim().split(/\s+/);
  } catch {
    // Kernels without CONFIG_PROC_CHILDREN: scan for processes whose parent is nspawn.
    kids = readdirSync('/proc').filter((p) => /^\d+$/.test(p) && procParent(Number(p)) === nspawnPid);
  }
  for (const k of kids) {
    try {
      const nspid = /^NSpid:\s+(.*)$/m
        .exec(readFileSync(`/proc/${k}/status`, 'utf8'))?.[1]
        ?.trim()
        .split(/\s+/);
      const comm = readFileSync(`/proc/${k}/comm`, 'utf8').trim();
      if (nspid && nspid.length > 1 && nspid.at(-1) === '1' && comm === 'systemd') return Number(k);
    } catch {}
  }
  return undefined;
}

let counter = 0;

/**
 * Boot a container and wait until systemd reports `running` (or `degraded`, see failedUnits).
 * Always pair with stop() (e.g. in afterAll / `await using`).
 */
export async function bootSystemd(opts: BootOptions = {}): Promise<SystemdContainer> {
  const label = (opts.name ?? 'e2e')
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .slice(0, 20);
  const name = `nb-${label}-${process.pid}-${++counter}-${randomBytes(2).toString('hex')}`;
  const bootTimeoutMs = opts.bootTimeoutMs ?? 30_000;
  const stopTimeoutMs = opts.stopTimeoutMs ?? 10_000;

  // Validate everything before touching the machine.
  const files = new Map<string, FileSpec>();
  files.set('/etc/machine-id', `${randomBytes(16).toString('hex')}\n`); // own journal, no first boot
  files.set('/etc/hostname', `${name}\n`);
  for (const [key, content] of Object.entries(opts.units ?? {})) {
    const path = key.startsWith('/') ? key : `/etc/systemd/system/${key}`;
    validatePath('units', path);
    files.set(path, content);
  }
  for (const [path, spec] of Object.entries(opts.files ?? {})) {
    validatePath('files', path);
    files.set(path, spec);
  }
  for (const u of [...(opts.enable ?? []), ...(opts.mask ?? [])]) {
    if (!UNIT_NAME.test(u)) throw new HarnessError(`enable/mask: ${JSON.stringify(u)} is not a unit name`);
  }
  for (const u of opts.enable ?? []) {
    const own = Object.entries(opts.units ?? {}).find(([k]) => k === u || k.endsWith(`/${u}`));
    if (own && !/^\s*(WantedBy|RequiredBy|Alias|Also|UpheldBy)\s*=/m.test(own[1])) {
      throw new HarnessError(
        `enable: unit ${u} has no [Install] WantedBy=/RequiredBy=/Alias=: nothing to enable`,
      );
    }
  }
  const nspawnArgs = [
    '--quiet',
    `--machine=${name}`,
    '--register=no',
    '--keep-unit',
    ...(opts.privateNetwork === false ? [] : ['--private-network']),
    '--link-journal=no',
    '--console=read-only',
    '--resolv-conf=off', // keep the tree's /etc/resolv.conf: a plain, replaceable file
    '--timezone=off',
    '--kill-signal=SIGRTMIN+4', // SIGTERM to nspawn → poweroff of the container
  ];
  for (const b of opts.binds ?? []) {
    validateNspawnPath('binds.host', b.host);
    validateNspawnPath('binds.inside', b.inside);
    if (!existsSync(b.host)) throw new HarnessError(`binds: host path ${b.host} does not exist`);
    nspawnArgs.push(`${b.readOnly ? '--bind-ro' : '--bind'}=${b.host}:${b.inside}`);
  }
  for (const t of opts.tmpfs ?? []) {
    validateNspawnPath('tmpfs', t);
    const hidden = [...files.keys()].find((f) => f === t || f.startsWith(`${t.replace(/\/+$/, '')}/`));
    if (hidden)
      throw new HarnessError(`files: ${hidden} would be hidden by the tmpfs mounted on ${t} at boot`);
    nspawnArgs.push(`--tmpfs=${t}`);
  }
  const lean = opts.lean === false ? [] : LEAN_MASKS.filter((u) => !opts.enable?.includes(u));
  const masks = [...new Set([...DEFAULT_MASKS, ...lean, ...(opts.mask ?? [])])];
  nspawnArgs.push(
    '--boot',
    '--',
    'systemd.firstboot=off',
    'systemd.log_color=0',
    ...masks.map((m) => `systemd.mask=${m}`),
    ...(opts.kernelArgs ?? []),
  );

  preflight();
  await sweepStale();
  installExitHook();

  const dir = await mkdtemp(join(tmpdir(), `${STATE_PREFIX}${label}-`));
  const consolePath = join(dir, 'console.log');
  const inst: Instance = { cgroups: [], dir };
  live.add(inst);
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let exitInfo: string | undefined;
  let leaderPid = 0;
  let stopping: Promise<void> | undefined;
  const timings: BootTimings = { leaderMs: 0, runningMs: 0, stopMs: 0 };
  /** Aborts of the exec() calls still running: stop() ends them before powering off. */
  const running = new Set<() => Promise<void>>();

  const consoleText = (): string => {
    try {
      return readFileSync(consolePath, 'utf8').replace(ANSI, '').replace(/\r/g, '');
    } catch {
      return '';
    }
  };
  const tail = (n = 40) => consoleText().trimEnd().split('\n').slice(-n).join('\n');

  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      const t0 = Date.now();
      const errors: string[] = [];
      // A command still running through nsenter is not a descendant of the container's PID 1:
      // systemd-shutdown would wait its full 10 s timeout for it (see killGroupExcept).
      await Promise.all([...running].map((abort) => abort()));
      if (child && exitInfo === undefined) {
        // Poweroff: SIGRTMIN+4 to PID 1. Repeat it: a PID 1 ignores signals it has no handler
        // for yet (pid namespace init), so one sent early in boot is lost. Before PID 1 exists,
        // SIGTERM ends the preparation script (or nspawn, which forwards it as --kill-signal).
        const until = Date.now() + stopTimeoutMs;
        let clean = false;
        while (!clean && Date.now() < until) {
          try {
            const leader = leaderPid || findLeader(child.pid);
            if (leader) process.kill(leader, SIGRTMIN_PLUS_4);
            else process.kill(child.pid!, 'SIGTERM');
          } catch {}
          const wait = Math.max(1, Math.min(500, until - Date.now()));
          clean = await Promise.race([exited.then(() => true), sleep(wait).then(() => false)]);
        }
        if (!clean) {
          errors.push(`no clean poweroff within ${stopTimeoutMs} ms (killed); console:\n${tail(25)}`);
          killCgroupSync(inst.cgroups);
          try {
            process.kill(child.pid!, 'SIGKILL');
          } catch {}
          await Promise.race([exited, sleep(5_000)]);
        }
      }
      try {
        await removeCgroup(inst.cgroups);
      } catch (err) {
        errors.push((err as Error).message);
      }
      if (exitInfo === undefined && child) errors.push(`nspawn (pid ${child.pid}) did not exit`);
      else rmSync(dir, { recursive: true, force: true });
      live.delete(inst);
      timings.stopMs = Date.now() - t0;
      if (errors.length) throw new HarnessError(`stop ${name}: ${errors.join('; ')}`);
    })();
    return stopping;
  };

  const fail = async (step: string, detail?: string): Promise<never> => {
    const out = tail();
    const died = exitInfo ? ` (nspawn ${exitInfo})` : ''; // before stop() ends it
    await stop().catch(() => {});
    throw new HarnessError(
      `boot ${name}: ${step}${detail ? `: ${detail}` : ''}${died}\n--- nspawn output (last lines) ---\n${out}`,
    );
  };

  // The owner record lets a later run sweep this container if our process dies without stop().
  inst.cgroups = createCgroup(name);
  await writeFile(
    join(dir, 'owner.json'),
    JSON.stringify({ pid: process.pid, start: procStartTime(process.pid), cgroups: inst.cgroups }),
  );
  await mkdir(join(dir, 'mnt'));
  try {
    await writeLayer(join(dir, 'layer'), files);
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }

  const t0 = Date.now();
  const out = openSync(consolePath, 'a');
  const procsFiles = inst.cgroups.map((c) => join(c, 'cgroup.procs'));
  // Join the dedicated cgroup(s) first, then unshare; every step is an exec, so the pid we get is
  // nspawn's own in the end.
  const joinCgroup = procsFiles.map((_, i) => `echo $$ > "\${CG${i}}"`).join(' && ');
  child = spawn(
    '/bin/sh',
    [
      '-c',
      `${joinCgroup} && exec unshare --mount --propagation private -- /bin/bash -c "$PREPARE" nb-e2e "$@"`,
      'sh',
      dir,
      ...nspawnArgs,
    ],
    {
      stdio: ['ignore', out, out],
      env: {
        PATH: DEFAULT_PATH,
        LANG: 'C.UTF-8',
        PREPARE,
        KEEP_HOST_UNITS: opts.keepHostUnits ? '1' : '0',
        ENABLE: (opts.enable ?? []).join(' '),
        PREPARE_ROOT: opts.prepare ?? '',
        ...Object.fromEntries(procsFiles.map((p, i) => [`CG${i}`, p])),
      },
    },
  );
  closeSync(out);
  child.unref();
  const proc = child;
  exited = new Promise((resolve) => {
    proc.once('exit', (code, signal) => {
      exitInfo = signal ? `killed by ${signal}` : `exited with code ${code}`;
      resolve();
    });
    proc.once('error', (err) => {
      exitInfo = `failed to start: ${err.message}`;
      resolve();
    });
  });

  const deadline = t0 + bootTimeoutMs;
  for (;;) {
    if (exitInfo !== undefined) return fail('container exited before PID 1 started');
    if (opts.signal?.aborted) return fail('boot aborted', String(opts.signal.reason));
    const pid = findLeader(proc.pid);
    if (pid) {
      leaderPid = pid;
      break;
    }
    if (Date.now() > deadline) return fail(`PID 1 not started within ${bootTimeoutMs} ms`);
    await sleep(5);
  }
  timings.leaderMs = Date.now() - t0;

  const exec = (cmd: string[], o: ExecOptions = {}): Promise<ExecResult> => {
    if (cmd.length === 0) return Promise.reject(new HarnessError('exec: empty command'));
    // After stop() the leader pid may be reused by an unrelated process: never nsenter it.
    if (stopping) return Promise.reject(new HarnessError(`exec [${cmd.join(' ')}]: ${name} is stopped`));
    const timeoutMs = o.timeoutMs ?? 30_000;
    const where = `exec [${cmd.join(' ')}] in ${name}`;
    return new Promise((resolve, reject) => {
      // detached: nsenter and the command it forks get their own process group, which a deadline
      // kills, all but nsenter itself (see killGroupExcept for why).
      const p = spawn(
        'nsenter',
        ['-t', String(leaderPid), '-m', '-u', '-i', '-n', '-p', '-r', '-w', '--', ...cmd],
        {
          detached: true,
          stdio: ['pipe', 'pipe', 'pipe'],
          env: {
            PATH: DEFAULT_PATH,
            LANG: 'C.UTF-8',
            SYSTEMD_PAGER: '',
            SYSTEMD_COLORS: '0',
            TERM: 'dumb',
            ...o.env,
          },
        },
      );
      let stdout = '';
      let stderr = '';
      let settled = false;
      p.stdout.setEncoding('utf8').on('data', (d: string) => {
        stdout += d;
      });
      p.stderr.setEncoding('utf8').on('data', (d: string) => {
        stderr += d;
      });
      p.stdin.on('error', () => {}); // EPIPE when the command does not read its input
      p.stdin.end(o.input ?? '');
      const exited = new Promise<void>((r) => p.once('exit', () => r()));
      const abort = async () => {
        running.delete(abort);
        if (p.exitCode !== null || p.signalCode !== null || !p.pid) return;
        killGroupExcept(p.pid, p.pid);
        if (!(await Promise.race([exited.then(() => true), sleep(1_000).then(() => false)]))) {
          try {
            process.kill(-p.pid, 'SIGKILL');
          } catch {}
        }
      };
      running.add(abort);
      const settle = (fn: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        o.signal?.removeEventListener('abort', onAbort);
        running.delete(abort);
        fn();
      };
      let timedOut = false;
      const timeout = () => {
        // Something the command started may still hold the pipes: do not wait for them.
        p.stdout.destroy();
        p.stderr.destroy();
        reject(new HarnessError(`${where}: timed out after ${timeoutMs} ms\n${stderr}`));
      };
      const timer = setTimeout(() => {
        timedOut = true;
        void abort().then(() => settle(timeout));
      }, timeoutMs);
      const onAbort = () =>
        void abort().then(() =>
          settle(() => {
            p.stdout.destroy();
            p.stderr.destroy();
            reject(o.signal?.reason ?? new HarnessError(`${where}: aborted`));
          }),
        );
      if (o.signal?.aborted) onAbort();
      o.signal?.addEventListener('abort', onAbort, { once: true });
      p.once('error', (err) => settle(() => reject(new HarnessError(`${where}: ${err.message}`))));
      p.once('close', (code, signal) =>
        settle(() => {
          if (timedOut) {
            timeout();
          } else if (o.check && code !== 0) {
            reject(new HarnessError(`${where}: exit ${code ?? signal}\n${stderr.trim() || stdout.trim()}`));
          } else {
            resolve({
              code: code ?? 128 + (signal ? (osConstants.signals[signal] ?? 0) : 0),
              stdout,
              stderr,
            });
          }
        }),
      );
    });
  };

  const systemctl = (...args: string[]) => exec(['systemctl', '--no-pager', ...args]);
  const runUnit: SystemdContainer['runUnit'] = (cmd, o = {}) =>
    exec(
      [
        'systemd-run',
        '--wait',
        '--pipe',
        '--collect',
        '--quiet',
        ...(o.unit ? [`--unit=${o.unit}`] : []),
        ...(o.properties ?? []).map((p) => `--property=${p}`),
        '--',
        ...cmd,
      ],
      o,
    );

  // Until PID 1 has its private socket, systemctl fails at once ("offline"): retry until deadline.
  let state = '';
  for (;;) {
    if (exitInfo !== undefined) return fail('container exited during boot');
    if (opts.signal?.aborted) return fail('boot aborted', String(opts.signal.reason));
    const left = deadline - Date.now();
    if (left <= 0) {
      const jobs = await systemctl('list-jobs', '--no-legend').catch(() => undefined);
      return fail(
        `not running within ${bootTimeoutMs} ms (last state: ${state || 'unknown'})`,
        jobs?.stdout.trim() ? `pending jobs:\n${jobs.stdout.trim()}` : undefined,
      );
    }
    try {
      const r = await exec(['systemctl', 'is-system-running', '--wait'], {
        timeoutMs: left,
        signal: opts.signal,
      });
      state = r.stdout.trim();
    } catch {
      state = 'timeout';
    }
    if (state === 'running' || state === 'degraded') break;
    if (state === 'maintenance' || state === 'stopping') return fail(`boot ended in state ${state}`);
    await sleep(20);
  }
  timings.runningMs = Date.now() - t0;

  let failedUnits: string[] = [];
  if (state === 'degraded') {
    const r = await systemctl('list-units', '--failed', '--no-legend', '--plain');
    failedUnits = r.stdout
      .split('\n')
      .map((l) => l.trim().split(/\s+/)[0] ?? '')
      .filter(Boolean);
    if (opts.requireRunning) return fail('boot degraded', `failed units: ${failedUnits.join(', ')}`);
  }

  const journal = async (args: string[], o: { sync?: boolean; timeoutMs?: number } = {}) => {
    if (o.sync !== false) await exec(['journalctl', '--sync'], { timeoutMs: o.timeoutMs ?? 10_000 });
    const r = await exec(['journalctl', '-o', 'json', '-a', '--no-pager', ...args], {
      timeoutMs: o.timeoutMs ?? 10_000,
    });
    if (r.code !== 0 && r.stdout.trim() === '') {
      throw new HarnessError(`journalctl ${args.join(' ')} in ${name}: exit ${r.code}: ${r.stderr.trim()}`);
    }
    return r.stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as JournalEntry);
  };

  const rootPath = `/proc/${leaderPid}/root`;
  const handle: SystemdContainer = {
    name,
    leaderPid,
    stateDir: dir,
    rootPath,
    busAddress: `unix:path=${rootPath}/run/dbus/system_bus_socket`,
    bootState: state,
    failedUnits,
    timings,
    path: (inside) => join(rootPath, inside),
    exec,
    systemctl,
    runUnit,
    journal,
    waitJournal: (args, match = () => true, o = {}) =>
      eventually(
        `journal entries for ${args.join(' ')}`,
        async () => {
          const entries = (await journal(args)).filter(match);
          return entries.length > 0 ? entries : undefined;
        },
        { timeoutMs: o.timeoutMs ?? 5_000, intervalMs: 50 },
      ),
    console: consoleText,
    stop,
    [Symbol.asyncDispose]: stop,
  };
  return handle;
}

/** Read a file inside a running container from the host side. */
export const readInside = (c: SystemdContainer, inside: string): Promise<string> =>
  readFile(c.path(inside), 'utf8');

/**
 * What a stopped container left on the host: processes naming it, mounts (in ANY mount namespace)
 * under its state folder, its cgroups, its state folder. Empty when stop() cleaned up.
 */
export function findLeftovers(c: Pick<SystemdContainer, 'name' | 'stateDir'>): string[] {
  const out: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
      if (cmd.includes(c.name) || cmd.includes(c.stateDir)) out.push(`process ${pid}: ${cmd}`);
      const mounts = readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n');
      const hit = mounts.find((m) => m.includes(c.stateDir));
      if (hit) out.push(`mount seen by pid ${pid}: ${hit}`);
    } catch {} // process gone meanwhile
  }
  for (const h of cgroupHierarchies()) {
    if (existsSync(join(h, c.name))) out.push(`cgroup ${join(h, c.name)}`);
  }
  if (existsSync(c.stateDir)) out.push(`folder ${c.stateDir}`);
  return out;
}
