/**
 * Prometheus text exposition (format 0.0.4) for node_exporter's textfile collector. Pure: the
 * families of a run and of a prefetch, and their rendering. Writing (atomic, in the collector's
 * directory) is adapters/textfile.ts.
 *
 * Every metric is a gauge: a file describes the last run, and a new run replaces it. No sample has
 * a timestamp (node_exporter rejects them in text files). Names of the run's file and of the
 * prefetch file never overlap: node_exporter merges every *.prom file of the directory into one
 * scrape, and a family defined twice fails the whole collector.
 */

export interface Sample {
  labels?: Record<string, string>;
  value: number;
}
export interface Family {
  name: string;
  help: string;
  type: 'gauge' | 'counter' | 'untyped';
  samples: Sample[];
}

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** HELP text: backslash and line feed escaped. */
const escapeHelp = (s: string): string => s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
/** Label value: backslash, double quote and line feed escaped. */
export const escapeLabelValue = (s: string): string =>
  s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Number.POSITIVE_INFINITY) return '+Inf';
  if (v === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(v);
}

/** The families as one text file. Throws on an invalid metric or label name (a programming error). */
export function renderMetrics(families: readonly Family[]): string {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const f of families) {
    if (!NAME_RE.test(f.name)) throw new Error(`invalid metric name ${JSON.stringify(f.name)}`);
    if (seen.has(f.name)) throw new Error(`metric ${f.name} defined twice`);
    seen.add(f.name);
    if (f.samples.length === 0) continue;
    out.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`);
    for (const s of f.samples) {
      const labels = Object.entries(s.labels ?? {});
      for (const [k] of labels)
        if (!LABEL_RE.test(k) || k.startsWith('__'))
          throw new Error(`invalid label name ${JSON.stringify(k)} on ${f.name}`);
      const set = labels.length
        ? `{${labels.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(',')}}`
        : '';
      out.push(`${f.name}${set} ${formatValue(s.value)}`);
    }
  }
  return out.length ? `${out.join('\n')}\n` : '';
}

const secondsOf = (ms: number): number => Math.round(ms) / 1000;
const unixSeconds = (iso: string): number => Date.parse(iso) / 1000;
const gauge = (name: string, help: string, samples: Sample[]): Family => ({
  name,
  help,
  type: 'gauge',
  samples,
});

/** What the run's metrics need of a timeline (runner/status.ts RunStatus satisfies it). */
export interface MetricsRun {
  version: string;
  command: string;
  startedAt: string;
  finishedAt?: string;
  result: 'running' | 'ok' | 'failed';
  exitCode?: number;
  phases: readonly {
    name: string;
    result: 'ok' | 'failed' | 'skipped' | 'not-run';
    durationMs?: number;
    warnings: readonly string[];
    error?: { code: string };
    facts: Record<string, string | number | boolean>;
  }[];
}

/** The file name of a command's metrics in the textfile directory. */
export const metricsFile = (command: string): string =>
  command === 'run' ? 'node_bootstrap.prom' : `node_bootstrap_${command.replace(/\W/g, '_')}.prom`;

/**
 * A boot run (or guard) as gauges. `now` closes a run still in progress (its duration so far).
 * A phase that passed is success 1; one that failed or never ran (a phase before it failed) is 0;
 * a skipped phase has no success sample. Durations only for phases that ran.
 */
export function runFamilies(st: MetricsRun, now: Date): Family[] {
  const p = st.command === 'run' ? 'node_bootstrap' : `node_bootstrap_${st.command}`;
  const end = st.finishedAt ? Date.parse(st.finishedAt) : now.getTime();
  const containerd = st.phases.map((x) => x.facts.containerdVersion).find((v) => typeof v === 'string');
  const failed = st.phases.find((x) => x.result === 'failed');
  const finished = st.result !== 'running';
  return [
    gauge(`${p}_info`, 'node-bootstrap version and the containerd version it found', [
      { labels: { version: st.version, containerd_version: String(containerd ?? '') }, value: 1 },
    ]),
    gauge(`${p}_run_timestamp_seconds`, 'Unix time the last run started', [
      { value: unixSeconds(st.startedAt) },
    ]),
    gauge(`${p}_run_duration_seconds`, 'Wall time of the last run (so far, while it runs)', [
      { value: secondsOf(Math.max(0, end - Date.parse(st.startedAt))) },
    ]),
    gauge(`${p}_run_finished`, '1 once the last run ended, 0 while it runs', [{ value: finished ? 1 : 0 }]),
    gauge(`${p}_run_success`, '1 when the last run passed every phase it ran, else 0', [
      { value: st.result === 'ok' ? 1 : 0 },
    ]),
    gauge(
      `${p}_run_exit_code`,
      'Exit code of the last run (0 ok, 69 unavailable, 70 software, 75 temporary, 78 config)',
      finished && st.exitCode !== undefined ? [{ value: st.exitCode }] : [],
    ),
    gauge(
      `${p}_run_error`,
      'The failed phase and error code of the last run (present only when it failed)',
      failed ? [{ labels: { phase: failed.name, code: failed.error?.code ?? 'INTERNAL' }, value: 1 }] : [],
    ),
    gauge(
      `${p}_phase_duration_seconds`,
      'Duration of each phase of the last run that ran',
      st.phases
        .filter((x) => x.durationMs !== undefined)
        .map((x) => ({ labels: { phase: x.name }, value: secondsOf(x.durationMs ?? 0) })),
    ),
    gauge(
      `${p}_phase_success`,
      '1 when the phase passed, 0 when it failed or did not run; skipped phases are absent',
      st.phases
        .filter((x) => x.result === 'ok' || x.result === 'failed' || (finished && x.result === 'not-run'))
        .map((x) => ({ labels: { phase: x.name }, value: x.result === 'ok' ? 1 : 0 })),
    ),
    gauge(
      `${p}_phase_warnings`,
      'Warnings each phase of the last run recorded',
      st.phases
        .filter((x) => x.result === 'ok' || x.result === 'failed')
        .map((x) => ({ labels: { phase: x.name }, value: x.warnings.length })),
    ),
  ];
}

/** What the prefetch metrics need of its timeline (commands/prefetch.ts PrefetchTimeline satisfies it). */
export interface MetricsPrefetch {
  version: string;
  startedAt: string;
  finishedAt?: string;
  result: string;
  exitCode?: number;
  images: readonly {
    state: string;
    bytes?: number;
    durationMs?: number;
    waitMs: number;
    pressureWaitMs: number;
  }[];
}

/** Every image state of the prefetch timeline, so each has a sample (0 included). */
export const PREFETCH_STATES = ['pulled', 'present', 'failed', 'cancelled', 'pending', 'pulling'] as const;

export function prefetchFamilies(t: MetricsPrefetch, now: Date): Family[] {
  const p = 'node_bootstrap_prefetch';
  const end = t.finishedAt ? Date.parse(t.finishedAt) : now.getTime();
  const pulled = t.images.filter((i) => i.state === 'pulled');
  const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);
  const finished = t.finishedAt !== undefined;
  return [
    gauge(`${p}_run_timestamp_seconds`, 'Unix time the last prefetch started', [
      { value: unixSeconds(t.startedAt) },
    ]),
    gauge(`${p}_run_duration_seconds`, 'Wall time of the last prefetch (so far, while it runs)', [
      { value: secondsOf(Math.max(0, end - Date.parse(t.startedAt))) },
    ]),
    gauge(`${p}_run_finished`, '1 once the last prefetch ended, 0 while it runs', [
      { value: finished ? 1 : 0 },
    ]),
    gauge(
      `${p}_run_exit_code`,
      'Exit code of the last prefetch',
      finished && t.exitCode !== undefined ? [{ value: t.exitCode }] : [],
    ),
    gauge(
      `${p}_images`,
      'Images of the last prefetch by state (present: skipped, CRI already had it)',
      PREFETCH_STATES.map((state) => ({
        labels: { state },
        value: t.images.filter((i) => i.state === state).length,
      })),
    ),
    gauge(`${p}_pulled_bytes`, 'Bytes of the images the last prefetch pulled (CRI image size)', [
      { value: sum(pulled.map((i) => i.bytes ?? 0)) },
    ]),
    gauge(`${p}_pull_seconds`, 'Time spent pulling, summed over images', [
      { value: secondsOf(sum(t.images.map((i) => i.durationMs ?? 0))) },
    ]),
    gauge(`${p}_wait_seconds`, 'Time images waited for admission, summed over images', [
      { value: secondsOf(sum(t.images.map((i) => i.waitMs))) },
    ]),
    gauge(
      `${p}_pressure_wait_seconds`,
      'Part of the wait for the disk (I/O pressure, or the volume still writing the last pull), summed over images',
      [{ value: secondsOf(sum(t.images.map((i) => i.pressureWaitMs))) }],
    ),
  ];
}

/** The prefetch's file name in the textfile directory. */
export const PREFETCH_METRICS_FILE = 'node_bootstrap_prefetch.prom';
