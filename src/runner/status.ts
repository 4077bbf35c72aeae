/** The run's timeline as kept in <state-dir>/status.json (written atomically: temp file + rename). */

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../adapters/node-files.js';
import type { ErrorCode } from '../errors.js';
import type { PartLoad } from '../payload.js';
import type { PhaseName } from './phase.js';

export type PhaseResult = 'ok' | 'failed' | 'skipped' | 'not-run';

export interface PhaseRecord {
  name: PhaseName;
  result: PhaseResult;
  startedAt?: string;
  durationMs?: number;
  error?: { code: ErrorCode; message: string; retryable: boolean; hint: string };
  warnings: string[];
  facts: Record<string, string | number | boolean>;
}

export interface RunStatus {
  schema: 1;
  version: string;
  command: string;
  pid: number;
  startedAt: string;
  finishedAt?: string;
  result: 'running' | 'ok' | 'failed';
  exitCode?: number;
  configSources: string[];
  /**
   * How this process loaded its code (payload.ts): each heavy part, from the startup cache or the
   * bundle, with which V8 code cache, in how long. A slow start is explained here.
   */
  startup?: PartLoad[];
  phases: PhaseRecord[];
}

export const STATUS_FILE = 'status.json';

export function writeStatus(stateDir: string, status: RunStatus, name = STATUS_FILE): void {
  writeFileAtomic(join(stateDir, name), `${JSON.stringify(status, null, 2)}\n`, 0o644);
}

export function readStatus(stateDir: string, name = STATUS_FILE): RunStatus | undefined {
  try {
    return JSON.parse(readFileSync(join(stateDir, name), 'utf8')) as RunStatus;
  } catch {
    return undefined;
  }
}
