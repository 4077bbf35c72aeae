/** `report`: the last run's timeline from <state-dir>/status.json, as a table or --json. */
import { DEFAULT_STATE_DIR } from '../env.js';
import { BootError, EXIT } from '../errors.js';
import { type PhaseRecord, readStatus, STATUS_FILE } from '../runner/status.js';

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

export function formatReport(status: NonNullable<ReturnType<typeof readStatus>>): string {
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
    line(['phase', 'result', 'duration', 'notes']),
    ...rows.map(line),
  ];
  const warnings = status.phases.flatMap((p) => p.warnings.map((w) => `  ${p.name}: ${w}`));
  if (warnings.length > 0) out.push('warnings:', ...warnings);
  const failed = status.phases.find((p) => p.error);
  if (failed?.error) out.push(`fix: ${failed.error.hint}`);
  return out.join('\n');
}

export async function report(v: Record<string, string | boolean | undefined>): Promise<number> {
  const dir = (v['state-dir'] as string | undefined) ?? DEFAULT_STATE_DIR;
  const status = readStatus(dir);
  if (!status)
    throw new BootError('USAGE', `no timeline at ${dir}/${STATUS_FILE}`, {
      hint: 'node-bootstrap has not run since boot, or pass --state-dir',
    });
  process.stdout.write(v.json ? `${JSON.stringify(status, null, 2)}\n` : `${formatReport(status)}\n`);
  return EXIT.ok;
}
