/** The parts of the environment node-bootstrap itself reads (the AWS SDK reads its own). Dependency-free. */

/** Where run, guard and report keep their timelines (tmpfs: one boot's worth). */
export const DEFAULT_STATE_DIR = '/run/node-bootstrap';

export interface Env {
  awsRegion?: string;
  /** AWS_EC2_METADATA_SERVICE_ENDPOINT / AWS_EC2_METADATA_DISABLED, as the AWS SDK reads them. */
  imdsEndpoint?: string;
  imdsDisabled: boolean;
  /** Set by systemd for units with NotifyAccess=. */
  notifySocket?: string;
  /** Set by systemd when stdout/stderr go to the journal. */
  journalStream?: string;
  /**
   * HTTPS_PROXY, HTTP_PROXY, NO_PROXY in both spellings, as set (the unit's Environment= or
   * EnvironmentFile=). Node ignores them; core/proxy.ts decides and the AWS adapters apply them.
   */
  proxy: Record<string, string>;
}

const PROXY_ENV = ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'NO_PROXY', 'no_proxy'];

export function readEnv(env: NodeJS.ProcessEnv = process.env): Env {
  return {
    awsRegion: env.AWS_REGION || undefined,
    imdsEndpoint: env.AWS_EC2_METADATA_SERVICE_ENDPOINT || undefined,
    imdsDisabled: (env.AWS_EC2_METADATA_DISABLED ?? '').toLowerCase() === 'true',
    notifySocket: env.NOTIFY_SOCKET || undefined,
    journalStream: env.JOURNAL_STREAM || undefined,
    proxy: Object.fromEntries(PROXY_ENV.filter((k) => env[k]).map((k) => [k, env[k]!])),
  };
}
