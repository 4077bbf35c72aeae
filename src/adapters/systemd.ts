/**
 * systemd over the system bus (dbus-next): unit state, state changes as events, and starting a unit
 * with its job tracked to the end. Thin: decisions live in core/unit-state.ts.
 */
import dbus from 'dbus-next';
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

interface Props {
  Get(iface: string, name: string): Promise<{ value: unknown }>;
  GetAll(iface: string): Promise<Record<string, { value: unknown }>>;
  on(event: 'PropertiesChanged', cb: (iface: string) => void): void;
  removeListener(event: 'PropertiesChanged', cb: (iface: string) => void): void;
}
interface Manager {
  Subscribe(): Promise<void>;
  Reload(): Promise<void>;
  LoadUnit(name: string): Promise<string>;
  StartUnit(name: string, mode: string): Promise<string>;
  RestartUnit(name: string, mode: string): Promise<string>;
  on(event: 'JobRemoved', cb: (id: number, job: string, unit: string, result: string) => void): void;
  removeListener(
    event: 'JobRemoved',
    cb: (id: number, job: string, unit: string, result: string) => void,
  ): void;
}

/** Connects on first use only, so a run that skips the D-Bus phases never touches the bus. */
export function createSystemd(): Systemd {
  let bus: dbus.MessageBus | undefined;
  let failed: Promise<never> | undefined;
  const getBus = (): dbus.MessageBus => {
    if (!bus) {
      const b = dbus.systemBus();
      // A bus that cannot be reached reports it here, not through the pending calls.
      failed = new Promise<never>((_, reject) => b.on('error', reject));
      failed.catch(() => {});
      bus = b;
    }
    return bus;
  };
  const viaBus = <T>(p: Promise<T>): Promise<T> => Promise.race([p, failed as Promise<never>]);
  let manager: Promise<Manager> | undefined;
  const getManager = (): Promise<Manager> => {
    manager ??= (async () => {
      const bus = getBus();
      const obj = await viaBus(bus.getProxyObject(SYSTEMD, '/org/freedesktop/systemd1'));
      const m = obj.getInterface(`${SYSTEMD}.Manager`) as unknown as Manager;
      await viaBus(m.Subscribe());
      return m;
    })();
    return manager;
  };
  const unitProps = async (unit: string): Promise<Props> => {
    const path = await viaBus((await getManager()).LoadUnit(unit));
    const obj = await viaBus(getBus().getProxyObject(SYSTEMD, path));
    return obj.getInterface('org.freedesktop.DBus.Properties') as unknown as Props;
  };
  const read = async (props: Props): Promise<ServiceState> => {
    // Service properties fail for units that are not services (or not loaded): '' and 0 then.
    const service = (name: string) =>
      props.Get(`${SYSTEMD}.Service`, name).then(
        (v) => v.value,
        () => undefined,
      );
    const [all, result, restarts] = await Promise.all([
      viaBus(props.GetAll(UNIT)),
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
    const m = await getManager();
    return new Promise<string>((resolve, reject) => {
      let jobPath: string | undefined;
      const early = new Map<string, string>();
      // Listening BEFORE the call: a fast job can be removed before the call returns.
      const onRemoved = (_id: number, job: string, _unit: string, result: string): void => {
        if (jobPath === undefined) early.set(job, result);
        else if (job === jobPath) finish(result);
      };
      const onAbort = (): void => {
        cleanup();
        reject(signal.reason);
      };
      const cleanup = (): void => {
        m.removeListener('JobRemoved', onRemoved);
        signal.removeEventListener('abort', onAbort);
      };
      const finish = (result: string): void => {
        cleanup();
        resolve(result);
      };
      m.on('JobRemoved', onRemoved);
      signal.addEventListener('abort', onAbort, { once: true });
      m[method](unit, 'replace').then(
        (path) => {
          jobPath = path;
          const r = early.get(path);
          if (r !== undefined) finish(r);
        },
        (err: unknown) => {
          cleanup();
          reject(err);
        },
      );
    });
  };

  return {
    state: async (unit) => read(await unitProps(unit)),

    async watch(unit, onChange) {
      const props = await unitProps(unit);
      let busy = Promise.resolve();
      const refresh = (): void => {
        busy = busy.then(() => read(props).then(onChange, () => {}));
      };
      const onProps = (iface: string): void => {
        if (iface === UNIT || iface === `${SYSTEMD}.Service`) refresh();
      };
      props.on('PropertiesChanged', onProps);
      refresh();
      return () => props.removeListener('PropertiesChanged', onProps);
    },

    start: (unit, signal) => job('StartUnit', unit, signal),
    restart: (unit, signal) => job('RestartUnit', unit, signal),

    async startedAt(unit) {
      const props = await unitProps(unit);
      const [all, main] = await Promise.all([
        viaBus(props.GetAll(UNIT)),
        props.Get(`${SYSTEMD}.Service`, 'ExecMainStartTimestamp').then(
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
      const m = await getManager();
      // The reply comes once systemd has reloaded; the signal abandons the wait, not the reload.
      await new Promise<void>((resolve, reject) => {
        const onAbort = (): void => reject(signal.reason);
        if (signal.aborted) return onAbort();
        signal.addEventListener('abort', onAbort, { once: true });
        viaBus(m.Reload())
          .then(resolve, reject)
          .finally(() => signal.removeEventListener('abort', onAbort));
      });
    },

    close: () => bus?.disconnect(),
  };
}
