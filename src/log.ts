/**
 * Structured logs (pino, JSON lines). Secrets are redacted by key wherever they appear, so a token
 * passed by mistake in a log object never reaches stdout or the journal.
 */
import { pino } from 'pino';

export type Logger = pino.Logger;

/** Keys that may hold a secret, at any of the first two levels of a log object. */
const SECRET_KEYS = [
  'password',
  'auth',
  'authorization',
  'authorizationToken',
  'token',
  'secretAccessKey',
  'sessionToken',
  'credentials',
];
export const REDACT_PATHS = SECRET_KEYS.flatMap((k) => [k, `*.${k}`]);

export interface LogOptions {
  level?: string;
  /** File descriptor or stream; default stderr, written synchronously (a short-lived process). */
  destination?: number | NodeJS.WritableStream | { write(line: string): boolean };
}

export function createLogger(opts: LogOptions = {}): Logger {
  const dest =
    typeof opts.destination === 'object'
      ? opts.destination
      : pino.destination({ fd: opts.destination ?? 2, sync: true });
  return pino(
    {
      name: 'node-bootstrap',
      level: opts.level ?? 'info',
      base: undefined,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    dest as pino.DestinationStream,
  );
}

const PRIORITY: Record<string, number> = { fatal: 2, error: 3, warn: 4, info: 6, debug: 7, trace: 7 };
/** Log keys that become queryable journald fields (journalctl NODE_BOOTSTRAP_ERROR=PULL_UNAUTHORIZED). */
const FIELDS: Record<string, string> = {
  phase: 'NODE_BOOTSTRAP_PHASE',
  result: 'NODE_BOOTSTRAP_RESULT',
  durationMs: 'NODE_BOOTSTRAP_DURATION_MS',
  code: 'NODE_BOOTSTRAP_ERROR',
  retryable: 'NODE_BOOTSTRAP_RETRYABLE',
  hint: 'NODE_BOOTSTRAP_HINT',
  image: 'NODE_BOOTSTRAP_IMAGE',
  source: 'NODE_BOOTSTRAP_SOURCE',
  command: 'NODE_BOOTSTRAP_COMMAND',
  bytes: 'NODE_BOOTSTRAP_BYTES',
  waitMs: 'NODE_BOOTSTRAP_WAIT_MS',
};

/** One pino JSON line → journald fields (pure). Secrets were redacted by pino before this. */
export function journalFields(line: string): Record<string, string | number | boolean> | undefined {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const out: Record<string, string | number | boolean> = {
    MESSAGE: String(entry.msg ?? ''),
    PRIORITY: PRIORITY[String(entry.level)] ?? 6,
  };
  for (const [k, field] of Object.entries(FIELDS)) {
    const v = entry[k];
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') out[field] = v;
  }
  return out;
}

/** A pino destination that sends each line to journald as a native entry. */
export function journalDestination(send: (fields: Record<string, string | number | boolean>) => void): {
  write(line: string): boolean;
} {
  return {
    write(chunk: string) {
      for (const line of chunk.split('\n')) {
        const fields = line ? journalFields(line) : undefined;
        if (fields) send(fields);
      }
      return true;
    },
  };
}
