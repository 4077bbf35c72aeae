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
  destination?: number | NodeJS.WritableStream;
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
    dest,
  );
}
