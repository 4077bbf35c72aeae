/**
 * Linux pressure stall information for block I/O (/proc/pressure/io, kernel 4.20+ with PSI on).
 * Thin: reads and parses; undefined when the file is absent or unreadable (the admission check is
 * then skipped, not failed).
 */
import { readFile } from 'node:fs/promises';
import type { Psi } from '../core/admission.js';

export const PSI_IO = '/proc/pressure/io';

/** `some avg10=1.23 avg60=… total=…` / `full …` → avg10 of each (pure). */
export function parsePsi(text: string): Psi | undefined {
  const avg10 = (kind: string): number | undefined => {
    const m = new RegExp(`^${kind} .*\\bavg10=(\\d+(?:\\.\\d+)?)`, 'm').exec(text);
    return m ? Number(m[1]) : undefined;
  };
  const some = avg10('some');
  if (some === undefined) return undefined;
  return { some, full: avg10('full') ?? 0 };
}

export async function readPsi(file = PSI_IO): Promise<Psi | undefined> {
  try {
    return parsePsi(await readFile(file, 'utf8'));
  } catch {
    return undefined;
  }
}
