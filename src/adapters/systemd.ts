/**
 * systemd over the system bus (dbus-next): unit state, state changes as events, and starting a unit
 * with its job tracked to the end. Thin: decisions live in core/unit-state.ts.
 */
import type dbus from 'dbus-next';
import type { UnitState } from '../core/unit-state.js';

const SYSTEMD = 'org.freedesktop.systemd1';
const UNIT = 'org.freedesktop.systemd1.Unit';

/** A unit's state plus what only a service has. */
export interface ServiceState extends UnitState {
  /**
   * NRestarts: how many automatic restarts (Restart=) systemd scheduled. Debian's and upstream's
   * containerd.service (Restart=always, RestartSec=5) never reach `failed` when containerd cannot
   * start: they loop through `activating (auto-restart)`. NRestarts is bumped when the restart is
   * scheduled, while the unit still shows `auto-restart` and the previous failure's Result, so it
   * counts failures only as a lower bound (failures - 1, or failures in that window).
   */
  restarts: number;
  /** StateChangeTimestampMonotonic (µs): when the unit entered its current state. */
  since: number;
}

export interface Systemd {
  state(unit: string): Promise<ServiceState>;
  /**
   * Calls onChange with the unit's state now and at every PropertiesChanged of the unit, until the
   * returned function is called.
   */
  watch(unit: string, onChange: (s: ServiceState) => void): Promise<() => void>;
  /** StartUnit(unit, "replace"); resolves with the job's result (done, failed, skipped, timeout, ...). */
  start(unit: string, signal: AbortSignal): Promise<string>;
  /** RestartUnit(unit, "replace"): stop then start (starts a stopped unit); resolves with the job's result. */
  restart(unit: string, signal: AbortSignal): Promise<string>;
  /**
   * When the unit's running process started, in ms since the epoch (ExecMainStartTimestamp, else
   * ActiveEnterTimestamp); undefined when it is not running.
   */
  startedAt(unit: string): Promise<number | undefined>;
  /** daemon-reload: systemd re-reads unit files and drop-ins; resolves when it is done. */
  reload(signal: AbortSignal): Promise<void>;
  close(): void;
}

const MANAGER_PATH = '/org/freedesktop/systemd1';
const MANAGER = `${SYSTEMD}.Manager`;
const PROPERTIES = 'org.freedesktop.DBus.Properties';

/** A signal's match rule: the bus delivers it to this connection only while the rule is added. */
const signalRule = (path: string, iface: string, member: string): string =>
  `type='signal',sender='${SYSTEMD}',path='${path}',interface='${iface}',member='${member}'`;

/**
 * Connects on first use only, so a run that skips the D-Bus phases never touches the bus.
 * Plain messages, no proxy objects: a proxy introspects systemd's objects (large XML) before its
 * first call, which cost most of the time to reach a unit at boot.
 */
export function createSystemd(): Systemd {
  let bus: dbus.MessageBus | undefined;
  let failed: Promise<never> | undefined;
  let closed = false;
  /** Handlers of incoming signals; one bus listener dispatches to all of them. */
  const onSignal = new Set<(msg: dbus.Message) => void>();
  /** dbus-next itself is loaded on first use too (the bundle keeps it in its own lazy part). */
  let lib: Promise<typeof dbus> | undefined;
  const dbusNext = (): Promise<typeof dbus> => {
    lib ??= import('dbus-next').then((m) => m.default);
    return lib;
  };
  const getBus = async (): Promise<{ bus: dbus.MessageBus; lib: typeof dbus }> => {
    const d = await dbusNext();
    if (!bus) {
      const b = d.systemBus();
      // A bus that cannot be reached reports it here, not through the pending calls.
      failed = new Promise<never>((_, reject) => b.on('error', reject));
      failed.catch(() => {});
      b.on('message', (msg: dbus.Message) => {
        if (msg.type !== d.MessageType.SIGNAL) return;
        for (const handle of [...onSignal]) handle(msg);
      });
      bus = b;
    }
    return { bus, lib: d };
  };
  const viaBus = <T>(p: Promise<T>): Promise<T> => Promise.race([p, failed as Promise<never>]);
  /** A method call; resolves with the reply's body (variants as dbus-next Variants, 't' as BigInt). */
  const call = async (
    destination: string,
    path: string,
    iface: string,
    member: string,
    signature = '',
    body: unknown[] = [],
  ): Promise<unknown[]> => {
    const { bus: connected, lib: d } = await getBus();
    const msg = new d.Message({ destination, path, interface: iface, member, signature, body });
    const reply = await connected.call(msg);
    return reply?.body ?? [];
  };
  const systemd = (path: string, iface: string, member: string, signature?: string, body?: unknown[]) =>
    call(SYSTEMD, path, iface, member, signature, body);
  const manager = (member: string, signature?: string, body?: unknown[]) =>
    systemd(MANAGER_PATH, MANAGER, member, signature, body);
  const busMatch = (member: 'AddMatch' | 'RemoveMatch', rule: string) =>
    call('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', member, 's', [rule]);
  /** Drops a match rule; nothing to drop once the connection is closed. */
  const removeMatch = (rule: string): void => {
    if (!closed) busMatch('RemoveMatch', rule).catch(() => {});
  };

  let subscribed: Promise<void> | undefined;
  /** Manager.Subscribe once per connection: without it systemd sends no unit or job signals. */
  const getManager = (): Promise<void> => {
    subscribed ??= viaBus(manager('Subscribe')).then(() => {});
    return subscribed;
  };
  /** The unit's object path (LoadUnit loads it when needed). */
  const unitPath = async (unit: string): Promise<string> => {
    await getManager();
    const [path] = await viaBus(manager('LoadUnit', 's', [unit]));
    return path as string;
  };
  const getAll = async (path: string, iface: string): Promise<Record<string, dbus.Variant>> => {
    const [all] = await systemd(path, PROPERTIES, 'GetAll', 's', [iface]);
    return all as Record<string, dbus.Variant>;
  };
  const get = async (path: string, iface: string, name: string): Promise<dbus.Variant> => {
    const [v] = await systemd(path, PROPERTIES, 'Get', 'ss', [iface, name]);
    return v as dbus.Variant;
  };
  const read = async (path: string): Promise<ServiceState> => {
    // Service properties fail for units that are not services (or not loaded): '' and 0 then.
    const service = (name: string) =>
      get(path, `${SYSTEMD}.Service`, name).then(
        (v) => v.value,
        () => undefined,
      );
    const [all, result, restarts] = await Promise.all([
      viaBus(getAll(path, UNIT)),
      service('Result'),
      service('NRestarts'),
    ]);
    const str = (k: string): string => String(all[k]?.value ?? '');
    const job = all.Job?.value as [number, string] | undefined;
    return {
      loadState: str('LoadState'),
      activeState: str('ActiveState'),
      subState: str('SubState'),
      result: String(result ?? ''),
      hasJob: Array.isArray(job) && job[0] !== 0,
      restarts: Number(restarts ?? 0),
      since: Number(all.StateChangeTimestampMonotonic?.value ?? 0),
    };
  };

  /** A unit job (StartUnit/RestartUnit) followed to its JobRemoved; resolves with its result. */
  const job = async (
    method: 'StartUnit' | 'RestartUnit',
    unit: string,
    signal: AbortSignal,
  ): Promise<string> => {
    await getManager();
    const rule = signalRule(MANAGER_PATH, MANAGER, 'JobRemoved');
    return new Promise<string>((resolve, reject) => {
      let jobPath: string | undefined;
      let settled = false;
      const early = new Map<string, string>();
      // Listening BEFORE the call: a fast job can be removed before the call returns.
      const onRemoved = (msg: dbus.Message): void => {
        if (msg.path !== MANAGER_PATH || msg.interface !== MANAGER || msg.member !== 'JobRemoved') return;
        const [, job, , result] = msg.body as [number, string, string, string];
        if (jobPath === undefined) early.set(job, result);
        else if (job === jobPath) finish(result);
      };
      const onAbort = (): void => {
        cleanup();
        reject(signal.reason);
      };
      const cleanup = (): void => {
        if (settled) return;
        settled = true;
        onSignal.delete(onRemoved);
        removeMatch(rule);
        signal.removeEventListener('abort', onAbort);
      };
      const finish = (result: string): void => {
        cleanup();
        resolve(result);
      };
      const fail = (err: unknown): void => {
        cleanup();
        reject(err);
      };
      onSignal.add(onRemoved);
      signal.addEventListener('abort', onAbort, { once: true });
      // The match is in place before the job exists: the bus handles this connection's messages in order.
      busMatch('AddMatch', rule)
        .then(() =>
          manager(method, 'ss', [unit, 'replace']).then(([path]) => {
            jobPath = path as string;
            const r = early.get(jobPath);
            if (r !== undefined) finish(r);
          }),
        )
        .catch(fail);
    });
  };

  return {
    state: async (unit) => read(await unitPath(unit)),

    async watch(unit, onChange) {
      const path = await unitPath(unit);
      const rule = signalRule(path, PROPERTIES, 'PropertiesChanged');
      let busy = Promise.resolve();
      const refresh = (): void => {
        busy = busy.then(() => read(path).then(onChange, () => {}));
      };
      const onProps = (msg: dbus.Message): void => {
        if (msg.path !== path || msg.interface !== PROPERTIES || msg.member !== 'PropertiesChanged') return;
        const iface = msg.body[0];
        if (iface === UNIT || iface === `${SYSTEMD}.Service`) refresh();
      };
      onSignal.add(onProps);
      // Like a proxy's listener: the rule is sent, not awaited; the first read covers what came before.
      busMatch('AddMatch', rule).catch(() => {});
      refresh();
      return () => {
        if (onSignal.delete(onProps)) removeMatch(rule);
      };
    },

    start: (unit, signal) => job('StartUnit', unit, signal),
    restart: (unit, signal) => job('RestartUnit', unit, signal),

    async startedAt(unit) {
      const path = await unitPath(unit);
      const [all, main] = await Promise.all([
        viaBus(getAll(path, UNIT)),
        get(path, `${SYSTEMD}.Service`, 'ExecMainStartTimestamp').then(
          (v) => Number(v.value),
          () => 0,
        ),
      ]);
      if (String(all.ActiveState?.value) !== 'active' && String(all.ActiveState?.value) !== 'reloading')
        return undefined;
      const us = main || Number(all.ActiveEnterTimestamp?.value ?? 0);
      return us > 0 ? us / 1000 : undefined;
    },

    async reload(signal) {
      await getManager();
      // The reply comes once systemd has reloaded; the signal abandons the wait, not the reload.
      await new Promise<void>((resolve, reject) => {
        const onAbort = (): void => reject(signal.reason);
        if (signal.aborted) return onAbort();
        signal.addEventListener('abort', onAbort, { once: true });
        viaBus(manager('Reload'))
          .then(() => resolve(), reject)
          .finally(() => signal.removeEventListener('abort', onAbort));
      });
    },

    close: () => {
      closed = true;
      bus?.disconnect();
    },
  };
}
