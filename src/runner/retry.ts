/**
 * One retry owner for polling loops (the AWS SDK owns retries of AWS calls). Retries only errors
 * classified retryable; on deadline or shutdown it reports the last real failure, not "aborted".
 */
import pRetry from 'p-retry';
import { BootError, toBootError } from '../errors.js';
import { isDeadline } from './phase.js';

export interface RetryOptions {
  /** First delay; grows by `factor` up to maxDelayMs, with jitter. */
  minDelayMs?: number;
  maxDelayMs?: number;
  factor?: number;
  /** Attempts after the first; default: until the signal aborts. */
  retries?: number;
  /** Called after each failed attempt that will be retried (status lines, debug logs). */
  onRetry?: (err: BootError, attempt: number) => void;
}

export async function retrying<T>(
  signal: AbortSignal,
  fn: (attempt: number) => Promise<T>,
  opts: RetryOptions = {},
): Promise<T> {
  let last: BootError | undefined;
  /** The verdict of a nested retry that reached this same deadline (its own last real failure). */
  let nested: BootError | undefined;
  let attempts = 0;
  try {
    return await pRetry(
      async (attempt) => {
        attempts = attempt;
        try {
          return await fn(attempt);
        } catch (err) {
          // An attempt cut short by the signal says nothing new about the peer, except when a
          // nested retry already turned what it saw into a verdict at this deadline.
          if (signal.aborted) {
            if (isDeadline(signal) && err instanceof BootError && err.code !== 'ABORTED') nested = err;
            throw err;
          }
          last = toBootError(err);
          // p-retry never retries TypeErrors; BootError carries our own verdict instead.
          throw last;
        }
      },
      {
        signal,
        retries: opts.retries ?? Number.POSITIVE_INFINITY,
        minTimeout: opts.minDelayMs ?? 100,
        maxTimeout: opts.maxDelayMs ?? 2_000,
        factor: opts.factor ?? 2,
        randomize: true,
        shouldRetry: ({ error }) => error instanceof BootError && error.retryable && !signal.aborted,
        onFailedAttempt: ({ error, attemptNumber }) => {
          if (error instanceof BootError && error.retryable) opts.onRetry?.(error, attemptNumber);
        },
      },
    );
  } catch (err) {
    // At the deadline the last real failure says more than "timed out"; a shutdown is the runner's ABORTED.
    if (isDeadline(signal) && last) {
      throw new BootError(
        last.code,
        `${last.message} (still failing at the deadline, after ${attempts} attempts)`,
        {
          hint: last.hint,
          retryable: last.retryable,
          cause: last,
        },
      );
    }
    // A first attempt cut by the deadline: what the nested retry saw beats "timed out".
    if (isDeadline(signal) && nested) throw nested;
    if (signal.aborted) throw signal.reason;
    throw err instanceof BootError ? err : toBootError(err);
  }
}
