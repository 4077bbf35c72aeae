/** Phase containerd-socket: wait until containerd's socket exists AND accepts connections (event-driven). */
import { nextChange, probeSocket, type SocketState } from '../adapters/unix-socket.js';
import { BootError } from '../errors.js';
import { isDeadline, type Phase } from '../runner/phase.js';

export function containerdSocket(socket: string, timeoutMs: number): Phase {
  return {
    name: 'containerd-socket',
    timeoutMs,
    async run(ctx) {
      const started = performance.now();
      let state: SocketState = 'missing';
      try {
        for (;;) {
          // Watch before probing, so that a socket created right after the probe is not missed.
          const changed = nextChange(socket, ctx.signal, 1_000);
          changed.catch(() => {});
          state = await probeSocket(socket, ctx.signal);
          if (state === 'ready') break;
          const waited = ((performance.now() - started) / 1000).toFixed(0);
          ctx.status(
            `waiting for containerd socket ${socket} (${state === 'missing' ? 'absent' : 'refusing connections'}, ${waited}s)`,
          );
          await changed;
        }
      } catch (err) {
        if (!isDeadline(ctx.signal)) throw err;
        throw new BootError(
          'CONTAINERD_SOCKET_TIMEOUT',
          `containerd socket ${socket} ${state === 'missing' ? 'never appeared' : 'exists but refuses connections (stale socket)'} after ${((performance.now() - started) / 1000).toFixed(1)}s`,
        );
      }
      ctx.record({ socket, socketWaitMs: Math.round(performance.now() - started) });
    },
  };
}
