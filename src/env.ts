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
}

export function readEnv(env: NodeJS.ProcessEnv = process.env): Env {
  return {
    awsRegion: env.AWS_REGION || undefined,
    imdsEndpoint: env.AWS_EC2_METADATA_SERVICE_ENDPOINT || undefined,
    imdsDisabled: (env.AWS_EC2_METADATA_DISABLED ?? '').toLowerCase() === 'true',
    notifySocket: env.NOTIFY_SOCKET || undefined,
    journalStream: env.JOURNAL_STREAM || undefined,
  };
}
