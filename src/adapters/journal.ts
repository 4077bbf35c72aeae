/**
 * journald: native entries with queryable fields, written by util-linux `logger --journald` (Node
 * cannot send unix datagrams itself), and the tail of a unit's journal for error messages.
 * OBJECT_PID names this process, so `journalctl -u <our unit>` finds the entries even when journald
 * attributes the short-lived sender late.
 */
import { execFile, spawn } from 'node:child_process';

export type JournalFields = Record<string, string | number | boolean | undefined>;

export interface Journal {
  send(fields: JournalFields): void;
  /** Resolves when every entry sent so far was handed to journald. */
  flush(): Promise<void>;
}

const clean = (v: string): string => v.replace(/[\r\n]+/g, ' ');

export function createJournal(identifier = 'node-bootstrap'): Journal {
  let chain = Promise.resolve();
  return {
    send(fields) {
      const lines = [`SYSLOG_IDENTIFIER=${identifier}`, `OBJECT_PID=${process.pid}`];
      for (const [k, v] of Object.entries(fields))
        if (v !== undefined) lines.push(`${k}=${clean(String(v))}`);
      const entry = `${lines.join('\n')}\n`;
      chain = chain.then(
        () =>
          new Promise<void>((resolve) => {
            const p = spawn('logger', ['--journald'], { stdio: ['pipe', 'ignore', 'ignore'] });
            p.on('error', () => resolve());
            p.on('close', () => resolve());
            p.stdin.end(entry);
          }),
      );
    },
    flush: () => chain,
  };
}

/** The last lines a unit logged this boot (for "why did it not start" messages). */
export function unitTail(unit: string, lines: number, signal: AbortSignal): Promise<string[]> {
  return new Promise((resolve) => {
    execFile(
      'journalctl',
      ['-u', unit, '-b', '-n', String(lines), '-o', 'cat', '--no-pager', '-q'],
      { signal, timeout: 5_000, encoding: 'utf8' },
      (err, stdout) => resolve(err ? [] : stdout.split('\n').filter(Boolean)),
    );
  });
}
