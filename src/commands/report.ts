/**
 * `report`: the last run's timeline, as a table or --json. From <state-dir>/status.json; when that
 * is gone (deleted, another state dir, a run killed before its first write), from this boot's
 * journal: every entry of a run carries NODE_BOOTSTRAP_* fields (see log.ts), enough to rebuild it.
 */
import { execFile } from 'node:child_process';
import { DEFAULT_STATE_DIR } from '../env.js';
import { BootError, CODES, type ErrorCode, EXIT } from '../errors.js';
import type { PhaseName } from '../runner/phase.js';
import { type PhaseRecord, type RunStatus, readStatus, STATUS_FILE } from '../runner/status.js';

const notes = (p: PhaseRecord): string => {
  const f = p.facts;
  const bits: string[] = [];
  if (f.containerdVersion) bits.push(`containerd ${f.containerdVersion}`);
  if (f.image) bits.push(String(f.image));
  if (f.source) bits.push(`from ${f.source === f.image ? 'its registry' : f.source}`);
  if (f.pinned !== undefined) bits.push(f.pinned ? 'pinned' : 'NOT pinned');
  if (p.error) bits.push(`${p.error.code}: ${p.error.message}`);
  return bits.join(', ');
};

export function formatReport(status: RunStatus, from?: string): string {
  const took =
    status.finishedAt !== undefined
      ? `${Date.parse(status.finishedAt) - Date.parse(status.startedAt)} ms`
      : 'running';
  const rows = status.phases.map((p) => [
    p.name,
    p.result,
    p.durationMs !== undefined ? `${p.durationMs} ms` : '',
    notes(p),
  ]);
  const w = [0, 1, 2].map((i) =>
    Math.max(...[['phase', 'result', 'duration'][i]!, ...rows.map((r) => r[i]!)].map((c) => c.length)),
  );
  const line = (r: string[]) =>
    `${r[0]!.padEnd(w[0]!)}  ${r[1]!.padEnd(w[1]!)}  ${r[2]!.padStart(w[2]!)}  ${r[3]}`.trimEnd();
  const out = [
    `node-bootstrap ${status.version} ${status.command}: ${status.result}${status.exitCode !== undefined ? ` (exit ${status.exitCode})` : ''}, started ${status.startedAt}, took ${took}`,
    ...(from ? [`(from ${from})`] : []),
    line(['phase', 'result', 'duration', 'notes']),
    ...rows.map(line),
  ];
  const warnings = status.phases.flatMap((p) => p.warnings.map((w) => `  ${p.name}: ${w}`));
  if (warnings.length > 0) out.push('warnings:', ...warnings);
  const failed = status.phases.find((p) => p.error);
  if (failed?.error) out.push(`fix: ${failed.error.hint}`);
  return out.join('\n');
}

/** One `journalctl -o json` entry (binary or repeated fields come as arrays and are ignored here). */
export type JournalJson = Record<string, unknown>;

const field = (e: JournalJson, k: string): string | undefined =>
  typeof e[k] === 'string' ? (e[k] as string) : undefined;
const isoTime = (e: JournalJson): string => {
  const usec = Number(field(e, '__REALTIME_TIMESTAMP'));
  return new Date(Number.isFinite(usec) ? usec / 1000 : 0).toISOString();
};

/**
 * The last `run` of the entries (journalctl -o json, oldest first) as a timeline, or undefined.
 * One run = consecutive entries of one process (OBJECT_PID: the entries are sent by short-lived
 * helpers, so _PID is theirs). Phases appear as they were reached; its verdict entry (no phase)
 * ends a finished run. Journal timestamps are when journald received an entry (a few ms to a few
 * hundred ms late); durations are the run's own.
 */
export function timelineFromJournal(entries: JournalJson[]): RunStatus | undefined {
  const runs: JournalJson[][] = [];
  let pid: string | undefined;
  for (const e of entries) {
    if (field(e, 'NODE_BOOTSTRAP_COMMAND') !== 'run') continue;
    const p = field(e, 'OBJECT_PID') ?? field(e, '_PID');
    // A new process, or the same pid starting over (a rerun that got the same pid).
    const restart = /^\[1\/\d+\] \S+: (started|skipped)/.test(field(e, 'MESSAGE') ?? '');
    if (p !== pid || restart || runs.length === 0) runs.push([]);
    pid = p;
    runs.at(-1)!.push(e);
  }
  const run = runs.at(-1);
  if (!run?.length) return undefined;

  const status: RunStatus = {
    schema: 1,
    version: 'unknown',
    command: 'run',
    pid: Number(field(run[0]!, 'OBJECT_PID') ?? 0),
    startedAt: isoTime(run[0]!),
    result: 'running',
    configSources: [],
    phases: [],
  };
  const phase = (name: string): PhaseRecord => {
    let rec = status.phases.find((p) => p.name === name);
    if (!rec) {
      rec = { name: name as PhaseName, result: 'not-run', warnings: [], facts: {} };
      status.phases.push(rec);
    }
    return rec;
  };
  for (const e of run) {
    const message = field(e, 'MESSAGE') ?? '';
    const result = field(e, 'NODE_BOOTSTRAP_RESULT');
    const duration = field(e, 'NODE_BOOTSTRAP_DURATION_MS');
    const code = field(e, 'NODE_BOOTSTRAP_ERROR') as ErrorCode | undefined;
    const name = field(e, 'NODE_BOOTSTRAP_PHASE');
    if (!name) {
      // The run's verdict: `node-bootstrap <version> run: OK in 812 ms`.
      if (result !== 'ok' && result !== 'failed') continue;
      status.result = result;
      status.finishedAt = isoTime(e);
      status.version = /^node-bootstrap (\S+) /.exec(message)?.[1] ?? status.version;
      status.exitCode = result === 'ok' ? EXIT.ok : code && code in CODES ? CODES[code].exit : EXIT.software;
      continue;
    }
    const rec = phase(name);
    const image = field(e, 'NODE_BOOTSTRAP_IMAGE');
    const source = field(e, 'NODE_BOOTSTRAP_SOURCE');
    if (image) rec.facts.image = image;
    if (source) rec.facts.source = source;
    if (result === 'started') rec.startedAt = isoTime(e);
    else if (result === 'ok' || result === 'skipped') rec.result = result;
    else if (result === 'warning') rec.warnings.push(message.replace(`${name}: `, ''));
    else if (result === 'failed') {
      rec.result = 'failed';
      rec.error = {
        code: code ?? 'INTERNAL',
        message: message.replace(/^\[\d+\/\d+\] \S+: failed \([A-Z_]+\): /, ''),
        retryable: field(e, 'NODE_BOOTSTRAP_RETRYABLE') === 'true',
        hint: field(e, 'NODE_BOOTSTRAP_HINT') ?? (code && code in CODES ? CODES[code].hint : ''),
      };
    }
    if (duration !== undefined && (result === 'ok' || result === 'failed')) rec.durationMs = Number(duration);
  }
  return status;
}

/** This boot's entries of node-bootstrap, oldest first (`journalctl -b -o json SYSLOG_IDENTIFIER=…`). */
function readJournal(): Promise<JournalJson[]> {
  return new Promise((resolve, reject) => {
    execFile(
      'journalctl',
      ['-b', '-o', 'json', '-a', '--no-pager', 'SYSLOG_IDENTIFIER=node-bootstrap'],
      { encoding: 'utf8', timeout: 10_000, maxBuffer: 256 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const lines = stdout.split('\n').filter((l) => l.startsWith('{'));
        if (err && lines.length === 0) {
          const why = (stderr.trim() || err.message).split('\n')[0];
          return reject(new Error(`journalctl: ${why}`));
        }
        resolve(lines.map((l) => JSON.parse(l) as JournalJson));
      },
    );
  });
}

export async function report(v: Record<string, string | boolean | undefined>): Promise<number> {
  const dir = (v['state-dir'] as string | undefined) ?? DEFAULT_STATE_DIR;
  const source = v.source as string | undefined;
  if (source !== undefined && source !== 'status' && source !== 'journal')
    throw new BootError('USAGE', `report: --source must be status or journal, not \`${source}\``, {
      hint: 'usage: node-bootstrap report [--state-dir DIR] [--source status|journal] [--json]',
    });
  const print = (status: RunStatus, from?: string): number => {
    process.stdout.write(
      v.json
        ? `${JSON.stringify(from ? { ...status, source: 'journal' } : status, null, 2)}\n`
        : `${formatReport(status, from)}\n`,
    );
    return EXIT.ok;
  };

  if (source !== 'journal') {
    const status = readStatus(dir);
    if (status) return print(status);
    if (source === 'status')
      throw new BootError('USAGE', `no timeline at ${dir}/${STATUS_FILE}`, {
        hint: 'node-bootstrap has not run since boot, or pass --state-dir (or --source journal)',
      });
  }
  let status: RunStatus | undefined;
  let why = 'no run of node-bootstrap in it';
  try {
    status = timelineFromJournal(await readJournal());
  } catch (err) {
    why = (err as Error).message;
  }
  if (!status)
    throw new BootError(
      'USAGE',
      `${source === 'journal' ? '' : `no timeline at ${dir}/${STATUS_FILE}, and `}none in this boot's journal (${why})`,
      { hint: 'node-bootstrap has not run since boot, or pass --state-dir' },
    );
  const from =
    source === 'journal' ? "this boot's journal" : `this boot's journal: ${dir}/${STATUS_FILE} is absent`;
  return print(status, from);
}
