/**
 * `prefetch`: pull the configured images through CRI without saturating the node's volume.
 * Each pull goes through pullImage (ECR auth, token cache, classified retries, like the sandbox
 * image); *when* a pull starts is decided by core/admission.ts from the pulls in flight, the
 * registry request rate and Linux I/O pressure. Images CRI already has are skipped, so a run that
 * was stopped (SIGTERM) resumes where it left off. The timeline is <state-dir>/prefetch.json.
 *
 * The I/O signals are sampled every 250 ms: PSI pressure over the last `prefetch.pressure.window`
 * (from its cumulative counters; avg10 only as the fallback) and the write rate of the block device
 * holding containerd's root (as CRI reports it), which tells when a finished pull's dirty pages have
 * drained. Only when and how many pulls start is in our hands: once admitted, containerd writes at
 * whatever speed the volume takes.
 *
 * Image sizes for the write-rate estimate come from the configured hint (`sizeMB`), else the mean
 * of the sizes seen so far (default 100 MB), and are replaced by CRI's own figure once pulled. The
 * registry manifest is not fetched: doing so from here would need containerd's registry host
 * configuration (mirrors, certs.d, CA, rewrites) duplicated, and the estimate could then describe a
 * different registry than the one containerd actually pulls from.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createJournal } from '../adapters/journal.js';
import { writeFileAtomic } from '../adapters/node-files.js';
import { createNotifier } from '../adapters/notify.js';
import { createIoSampler, type IoSignals } from '../adapters/psi.js';
import type { TokenCache } from '../adapters/token-cache.js';
import { DEFAULT_STATE_DIR, loadConfig, type PrefetchImage } from '../config.js';
import {
  type AdmissionPolicy,
  DEFAULT_POLICY,
  decide,
  type InFlight,
  orderQueue,
  startJitterMs,
} from '../core/admission.js';
import { BootError, type ErrorCode, EXIT, toBootError } from '../errors.js';
import { createLogger, journalDestination } from '../log.js';
import { pullImage } from '../phases/pull.js';
import { publishPrefetchMetrics } from '../runner/outputs.js';
import { VERSION } from '../version.js';
import { createPullAdapters } from './adapters.js';

type Values = Record<string, string | boolean | undefined>;

export const PREFETCH_FILE = 'prefetch.json';
const DEFAULT_SIZE_MB = 100;
const DEFAULT_CONTAINERD_ROOT = '/var/lib/containerd';
const MB = 1024 * 1024;

export type ImageState = 'pending' | 'present' | 'pulling' | 'pulled' | 'failed' | 'cancelled';

export interface ImageRecord {
  image: string;
  priority: number;
  /** Configured hint, else the estimate used for admission; CRI's size once pulled or present. */
  sizeMB: number;
  state: ImageState;
  startedAt?: string;
  durationMs?: number;
  /** From CRI ImageStatus after the pull. */
  bytes?: number;
  /** Time this image waited at the head of the queue, and the part of it due to the disk (pressure, drain). */
  waitMs: number;
  pressureWaitMs: number;
  /** Why it was admitted: ok (fits the budget), idle (nothing else in flight), starved (maxWait). */
  admitted?: string;
  error?: { code: ErrorCode; message: string; retryable: boolean; hint: string };
}

export interface PrefetchTimeline {
  schema: 1;
  version: string;
  command: 'prefetch';
  pid: number;
  startedAt: string;
  finishedAt?: string;
  result: 'running' | 'ok' | 'failed' | 'aborted';
  exitCode?: number;
  jitterMs: number;
  policy: AdmissionPolicy;
  images: ImageRecord[];
  /** Where the I/O signals came from: PSI over a short window or avg10, the volume's stat file. */
  signals: { psi: 'window' | 'avg10' | 'none'; windowMs: number; volume: string; device?: string };
  /** Peak pressure and volume write rate seen while running, and the most pulls in flight at once. */
  peak: { some: number; full: number; deviceMBps: number; inFlight: number };
}

function writeTimeline(stateDir: string, t: PrefetchTimeline): void {
  writeFileAtomic(join(stateDir, PREFETCH_FILE), `${JSON.stringify(t, null, 2)}\n`, 0o644);
}

function singleFlight(tokens: TokenCache): TokenCache {
  const pending = new Map<string, ReturnType<TokenCache['getOrFetch']>>();
  return {
    ...tokens,
    getOrFetch(key, fetch) {
      const p = pending.get(key) ?? tokens.getOrFetch(key, fetch).finally(() => pending.delete(key));
      pending.set(key, p);
      return p;
    },
  };
}

const fmtMB = (n: number): string => `${Math.round(n)} MB`;

export async function prefetch(v: Values, signal: AbortSignal): Promise<number> {
  const cfg = loadConfig({ file: v.config as string | undefined });
  const stateDir = (v['state-dir'] as string | undefined) ?? DEFAULT_STATE_DIR;
  const pc = cfg.prefetch;
  const journal = cfg.env.journalStream ? createJournal() : undefined;
  const log = createLogger(journal ? { destination: journalDestination(journal.send) } : {}).child({
    command: 'prefetch',
  });
  const notifier = createNotifier(cfg.env.notifySocket);
  process.removeAllListeners('warning');
  process.on('warning', (w) => {
    const level = w.name === 'ExperimentalWarning' ? 'debug' : 'warn';
    log[level]({ warning: w.name }, w.message.replace(/\s+/g, ' ').trim());
  });

  const policy: AdmissionPolicy = {
    ...DEFAULT_POLICY,
    budgetMBps: pc.budgetMBps,
    maxConcurrent: pc.maxConcurrent,
    registryQps: pc.registryQps,
    pressure: pc.pressure,
    maxWaitMs: pc.maxWaitMs,
    drain: pc.drain,
  };
  const deadline = AbortSignal.timeout(pc.timeoutMs);
  const run = AbortSignal.any([signal, deadline]);
  const jitterMs = startJitterMs(pc.jitterMs);
  const t0 = performance.now();
  const timeline: PrefetchTimeline = {
    schema: 1,
    version: VERSION,
    command: 'prefetch',
    pid: process.pid,
    startedAt: new Date().toISOString(),
    result: 'running',
    jitterMs,
    policy,
    images: orderQueue(pc.images).map((i: PrefetchImage) => ({
      image: i.image,
      priority: i.priority,
      sizeMB: i.sizeMB ?? Number.NaN,
      state: 'pending',
      waitMs: 0,
      pressureWaitMs: 0,
    })),
    signals: { psi: 'none', windowMs: pc.windowMs, volume: '' },
    peak: { some: 0, full: 0, deviceMBps: 0, inFlight: 0 },
  };
  const save = () => writeTimeline(stateDir, timeline);
  save();

  const adapters = createPullAdapters(cfg, stateDir);
  // Concurrent pulls from one account share one ECR token request, not one each.
  const deps = { ...adapters, tokens: singleFlight(adapters.tokens) };
  let io: IoSignals = {};
  let sampler: ReturnType<typeof createIoSampler> | undefined;
  const status = (extra = '') => {
    const done = timeline.images.filter((i) => i.state === 'pulled' || i.state === 'present');
    const mb = done.reduce((s, i) => s + (i.bytes ?? 0), 0) / MB;
    const p =
      (io.psi ? `, io pressure some=${io.psi.some}% full=${io.psi.full}%` : '') +
      (io.deviceMBps !== undefined ? `, volume writing ${io.deviceMBps} MB/s` : '');
    notifier.status(
      `prefetch: ${done.length}/${timeline.images.length} images, ${fmtMB(mb)}${p}${extra ? `, ${extra}` : ''}`,
    );
  };

  try {
    if (jitterMs > 0) {
      log.info({ durationMs: jitterMs }, `prefetch: spreading the fleet's start: waiting ${jitterMs} ms`);
      notifier.status(`prefetch: start jitter ${jitterMs} ms`);
      await sleep(jitterMs, undefined, { signal: run }).catch(() => undefined);
    }

    // The volume to watch: containerd's root, as its CRI plugin reports it.
    const volume = await deps.cri
      .status(run, true)
      .then((st) => {
        const c = st.info.config ? (JSON.parse(st.info.config) as { containerdRootDir?: unknown }) : {};
        return typeof c.containerdRootDir === 'string' ? c.containerdRootDir : undefined;
      })
      .catch(() => undefined);
    timeline.signals.volume = volume ?? DEFAULT_CONTAINERD_ROOT;
    sampler = createIoSampler({ volume: timeline.signals.volume, windowMs: pc.windowMs });
    timeline.signals.device = sampler.device;

    // Present already (an earlier run, the AMI build, kubelet): skipped, and their size is known.
    for (const rec of timeline.images) {
      if (run.aborted) break;
      const img = await deps.cri.imageStatus(rec.image, run).catch(() => null);
      if (img) {
        rec.state = 'present';
        rec.bytes = img.size;
        rec.sizeMB = img.size / MB;
        log.info({ image: rec.image, result: 'present', bytes: img.size }, `prefetch: ${rec.image}: present`);
      }
    }
    save();

    const known = () => timeline.images.filter((i) => i.bytes !== undefined || Number.isFinite(i.sizeMB));
    const estimate = (): number => {
      const k = known();
      return k.length ? k.reduce((s, i) => s + i.sizeMB, 0) / k.length : DEFAULT_SIZE_MB;
    };
    const queue = timeline.images.filter((i) => i.state === 'pending');
    const inFlight = new Map<ImageRecord, InFlight>();
    const recentStarts: number[] = [];
    let observedMBps: number | undefined;
    let waitingSince = performance.now();
    let pressureWaits = 0;
    let wake: () => void = () => {};
    /** A pull finished since the last decision: decide again instead of waiting. */
    let changed = false;

    const pullOne = async (rec: ImageRecord): Promise<void> => {
      const started = performance.now();
      const ctx = {
        signal: run,
        log: log.child({ image: rec.image }),
        status: (text: string) => status(text),
      };
      try {
        await pullImage(deps, rec.image, ctx);
        const img = await deps.cri.imageStatus(rec.image, run).catch(() => null);
        rec.durationMs = Math.round(performance.now() - started);
        rec.state = 'pulled';
        rec.bytes = img?.size ?? Math.round(rec.sizeMB * MB);
        rec.sizeMB = rec.bytes / MB;
        const mbps = rec.sizeMB / Math.max(rec.durationMs / 1000, 0.001);
        observedMBps = observedMBps === undefined ? mbps : 0.5 * observedMBps + 0.5 * mbps;
        log.info(
          {
            image: rec.image,
            result: 'ok',
            durationMs: rec.durationMs,
            bytes: rec.bytes,
            waitMs: Math.round(rec.pressureWaitMs),
          },
          `prefetch: pulled ${rec.image} (${fmtMB(rec.sizeMB)} in ${rec.durationMs} ms, ${Math.round(rec.pressureWaitMs)} ms waiting for the disk)`,
        );
      } catch (err) {
        rec.durationMs = Math.round(performance.now() - started);
        if (run.aborted) {
          rec.state = 'cancelled';
          log.warn({ image: rec.image, result: 'cancelled' }, `prefetch: ${rec.image}: pull cancelled`);
        } else {
          const e = toBootError(err);
          rec.state = 'failed';
          rec.error = { code: e.code, message: e.message, retryable: e.retryable, hint: e.hint };
          log.error(
            { image: rec.image, result: 'failed', durationMs: rec.durationMs, code: e.code, hint: e.hint },
            `prefetch: ${rec.image}: ${e.message}`,
          );
        }
      } finally {
        inFlight.delete(rec);
        changed = true;
        // The picture changed: the backoff for pressure starts over.
        pressureWaits = 0;
        save();
        status();
        wake();
      }
    };

    // The first decision needs a window, not avg10 (which may still show a burst long gone).
    const warm = sampler.warmInMs();
    if (warm > 0) await sleep(warm, undefined, { signal: run }).catch(() => undefined);

    const pulls: Promise<void>[] = [];
    while (!run.aborted && (queue.length > 0 || inFlight.size > 0)) {
      changed = false;
      io = sampler.read();
      const psi = io.psi;
      if (psi) {
        if (io.psiSource === 'window' || timeline.signals.psi === 'none')
          timeline.signals.psi = io.psiSource!;
        timeline.peak.some = Math.max(timeline.peak.some, psi.some);
        timeline.peak.full = Math.max(timeline.peak.full, psi.full);
      }
      timeline.peak.deviceMBps = Math.max(timeline.peak.deviceMBps, io.deviceMBps ?? 0);
      let waitMs = 60_000;
      let pressureHead: ImageRecord | undefined;
      const head = queue[0];
      if (head) {
        if (!Number.isFinite(head.sizeMB)) head.sizeMB = estimate();
        const now = performance.now();
        const d = decide(
          {
            nowMs: now,
            inFlight: [...inFlight.values()],
            recentStartsMs: recentStarts,
            psi,
            deviceMBps: io.deviceMBps,
            nextSizeMB: head.sizeMB,
            observedMBps,
            waitingSinceMs: waitingSince,
            pressureWaits,
          },
          policy,
        );
        if (d.admit) {
          queue.shift();
          head.waitMs = Math.round(now - waitingSince);
          head.admitted = d.reason;
          head.state = 'pulling';
          head.startedAt = new Date().toISOString();
          inFlight.set(head, { sizeMB: head.sizeMB, startedMs: now });
          timeline.peak.inFlight = Math.max(timeline.peak.inFlight, inFlight.size);
          recentStarts.push(now);
          while (recentStarts.length > 0 && recentStarts[0]! < now - 1000) recentStarts.shift();
          waitingSince = now;
          pressureWaits = 0;
          save();
          status(`pulling ${head.image}`);
          pulls.push(pullOne(head));
          continue;
        }
        waitMs = d.waitMs;
        if (d.reason === 'pressure' || d.reason === 'drain') {
          if (d.reason === 'pressure' && inFlight.size === 0) pressureWaits++;
          pressureHead = head;
          const why = d.reason === 'pressure' ? 'I/O pressure to drop' : 'the volume to drain';
          status(`waiting ${d.waitMs} ms for ${why}`);
          log.debug({ image: head.image, waitMs: d.waitMs, ...io }, `prefetch: waiting for ${why}`);
        }
      }
      if (changed || (queue.length === 0 && inFlight.size === 0)) continue;
      const waitStart = performance.now();
      // Wake on the wait's end, a finished pull, or shutdown; the pressure wait is cut short only by
      // shutdown or a finished pull (which changes the picture).
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          run.removeEventListener('abort', done);
          resolve();
        };
        const timer = setTimeout(done, waitMs);
        wake = done;
        run.addEventListener('abort', done, { once: true });
      });
      wake = () => {};
      if (pressureHead) pressureHead.pressureWaitMs += Math.round(performance.now() - waitStart);
      pressureHead = undefined;
    }
    await Promise.allSettled(pulls);

    // The verdict.
    const count = (s: ImageState) => timeline.images.filter((i) => i.state === s).length;
    const failed = timeline.images.filter((i) => i.state === 'failed');
    const took = Math.round(performance.now() - t0);
    const mb = timeline.images.reduce((s, i) => s + (i.state === 'pulled' ? (i.bytes ?? 0) : 0), 0) / MB;
    const pk = timeline.peak;
    const summary = `${count('pulled')} pulled (${fmtMB(mb)}), ${count('present')} present, ${failed.length} failed, ${count('pending') + count('cancelled')} not done, of ${timeline.images.length}; peak io pressure some=${pk.some}% full=${pk.full}% (${timeline.signals.psi}); peak volume write ${pk.deviceMBps} MB/s; most in flight ${pk.inFlight}`;
    let error: BootError | undefined;
    if (run.aborted)
      error = deadline.aborted
        ? new BootError('PHASE_TIMEOUT', `prefetch did not finish within ${pc.timeoutMs / 1000}s`, {
            hint: 'raise prefetch.timeout, or lower the set of prefetch.images; a re-run resumes',
          })
        : new BootError('ABORTED', 'prefetch stopped by a signal; a re-run resumes where it left off');
    else if (failed[0]?.error) {
      const f = failed[0].error;
      error = new BootError(f.code, `${failed[0].image}: ${f.message}`, { hint: f.hint });
    }
    timeline.result = error ? (run.aborted ? 'aborted' : 'failed') : 'ok';
    timeline.exitCode = error ? error.exitCode : EXIT.ok;
    timeline.finishedAt = new Date().toISOString();
    save();
    publishPrefetchMetrics(cfg.metrics.textfileDir, timeline, log);
    status(error ? `FAILED (${error.code})` : 'done');
    const verdict = `node-bootstrap ${VERSION} prefetch: ${error ? `FAILED (${error.code})` : 'OK'} in ${took} ms: ${summary}`;
    if (error)
      log.error(
        {
          result: 'failed',
          durationMs: took,
          code: error.code,
          retryable: error.retryable,
          hint: error.hint,
        },
        verdict,
      );
    else log.info({ result: 'ok', durationMs: took }, verdict);
    process.stdout.write(
      error
        ? `node-bootstrap: FAILED prefetch code=${error.code} retryable=${error.retryable} ${summary} hint=${JSON.stringify(error.hint)}\n`
        : `node-bootstrap: OK prefetch in ${took} ms: ${summary}\n`,
    );
    return timeline.exitCode;
  } finally {
    sampler?.stop();
    adapters.close();
    await notifier.flush();
    await journal?.flush();
  }
}
