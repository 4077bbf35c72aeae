/**
 * sd_notify STATUS= lines for `systemctl status`, through systemd-notify (Node cannot send unix
 * datagrams). The unit sets NotifyAccess=all: under `main`, systemd drops a child's message unless
 * the child may borrow our PID, which needs CAP_SYS_ADMIN the hardened unit does not have.
 * Updates are coalesced: only the newest pending status is sent.
 */
import { execFile } from 'node:child_process';

export interface Notifier {
  status(text: string): void;
  flush(): Promise<void>;
}

export function createNotifier(notifySocket: string | undefined): Notifier {
  if (!notifySocket) return { status: () => {}, flush: async () => {} };
  let pending: string | undefined;
  let running: Promise<void> | undefined;
  const pump = async (): Promise<void> => {
    while (pending !== undefined) {
      const text = pending;
      pending = undefined;
      await new Promise<void>((resolve) => {
        execFile('systemd-notify', [`--status=${text.replace(/\n/g, ' ')}`], { timeout: 5_000 }, () =>
          resolve(),
        );
      });
    }
    running = undefined;
  };
  return {
    status(text) {
      pending = text;
      running ??= pump();
    },
    flush: async () => {
      await running;
    },
  };
}
