/**
 * Typed errors with stable codes. The code is a journald field (NODE_BOOTSTRAP_ERROR) and a
 * status.json field, so the same failure is found the same way on every node.
 */

/** sysexits-style exit codes (documented in the README). */
export const EXIT = {
  ok: 0,
  checkFailed: 1,
  usage: 2,
  unavailable: 69,
  software: 70,
  tempfail: 75,
  config: 78,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

interface CodeSpec {
  retryable: boolean;
  exit: ExitCode;
  /** What the operator should do; a BootError may override it with a more specific hint. */
  hint: string;
}

export const CODES = {
  USAGE: {
    retryable: false,
    exit: EXIT.usage,
    hint: 'run `node-bootstrap --help` for the accepted commands and flags',
  },
  NOT_IMPLEMENTED: {
    retryable: false,
    exit: EXIT.usage,
    hint: 'this command is not available in this version of node-bootstrap',
  },
  CONFIG_INVALID: {
    retryable: false,
    exit: EXIT.config,
    hint: 'fix the named key in the named file (see the configuration reference in the README)',
  },
  CONFIG_UNREADABLE: {
    retryable: false,
    exit: EXIT.config,
    hint: 'make the file readable by root, or point --config at the right file',
  },
  PHASE_TIMEOUT: {
    retryable: true,
    exit: EXIT.tempfail,
    hint: 'the phase did not finish before its deadline; raise timeouts.<phase> or fix the peer it waits for',
  },
  RUN_TIMEOUT: {
    retryable: true,
    exit: EXIT.tempfail,
    hint: 'the run used up timeouts.run (default 11m, inside the 15 min after which node groups give a node up); fix the phase that was slow, or raise timeouts.run',
  },
  CONFIG_NOT_APPLIED: {
    retryable: false,
    exit: EXIT.unavailable,
    hint: 'the unit runs on an older config than its rendered files; `node-bootstrap run` restarts it (run --observe only reports it)',
  },
  UNIT_NOT_ACTIVE: {
    retryable: false,
    exit: EXIT.unavailable,
    hint: 'a unit node-bootstrap would start is not running (run --observe only reports it); read `journalctl -u <unit> -b`',
  },
  SANDBOX_IMAGE_MISSING: {
    retryable: false,
    exit: EXIT.unavailable,
    hint: 'containerd does not have the sandbox image it is configured with (run --observe only reports it); `node-bootstrap run` imports or pulls it',
  },
  ABORTED: {
    retryable: true,
    exit: EXIT.tempfail,
    hint: 'the run was stopped by a signal; re-run it (every phase is idempotent)',
  },
  CONTAINERD_UNIT_MISSING: {
    retryable: false,
    exit: EXIT.unavailable,
    hint: 'install containerd and make sure its unit is not masked (systemctl unmask containerd)',
  },
  CONTAINERD_UNIT_FAILED: {
    retryable: false,
    exit: EXIT.unavailable,
    hint: 'read `journalctl -u containerd -b` and fix containerd before re-running node-bootstrap',
  },
  CONTAINERD_SOCKET_TIMEOUT: {
    retryable: true,
    exit: EXIT.tempfail,
    hint: 'containerd never opened its socket; check containerd.service and containerd.socket in config.yaml',
  },
  CONTAINERD_CONFIG_INVALID: {
    retryable: false,
    exit: EXIT.config,
    hint: "fix containerd's config.toml (or an import it names): containerd will not start with it",
  },
  CRI_NOT_READY: {
    retryable: true,
    exit: EXIT.tempfail,
    hint: 'containerd answers but its CRI runtime is not ready; read `journalctl -u containerd -b`',
  },
  CRI_UNIMPLEMENTED: {
    retryable: false,
    exit: EXIT.config,
    hint: 'enable the CRI plugin: remove "cri" from disabled_plugins in /etc/containerd/config.toml and restart containerd',
  },
  REGION_UNKNOWN: {
    retryable: false,
    exit: EXIT.config,
    hint: 'set `region` in /etc/node-bootstrap/config.yaml or AWS_REGION, or make IMDS reachable',
  },
  IMDS_UNAVAILABLE: {
    retryable: true,
    exit: EXIT.tempfail,
    hint: 'IMDSv2 did not answer; check the instance metadata options (HttpTokens, HttpPutResponseHopLimit >= 2 in containers)',
  },
  ECR_AUTH_FAILED: {
    retryable: false,
    exit: EXIT.unavailable,
    hint: 'give the node role ecr:GetAuthorizationToken (AmazonEC2ContainerRegistryPullOnly)',
  },
  ECR_THROTTLED: {
    retryable: true,
    exit: EXIT.tempfail,
    hint: 'the ECR API throttled the token request; it is retried with backoff',
  },
  ECR_UNAVAILABLE: {
    retryable: true,
    exit: EXIT.tempfail,
    hint: 'the ECR API could not be reached; check the route or the ecr.api VPC endpoint',
  },
  PULL_UNAUTHORIZED: {
    retryable: false,
    exit: EXIT.unavailable,
    hint: 'the registry refused the credentials; check the node role has ecr:BatchGetImage on the registry account',
  },
  PULL_NOT_FOUND: {
    retryable: false,
    exit: EXIT.unavailable,
    hint: 'the image or tag does not exist in that registry; check sandboxImage.tag / sandboxImage.image',
  },
  PULL_NETWORK: {
    retryable: true,
    exit: EXIT.tempfail,
    hint: 'the registry could not be reached; check the route or the ecr.dkr and S3 gateway VPC endpoints',
  },
  PULL_TLS_UNTRUSTED: {
    retryable: false,
    exit: EXIT.unavailable,
    hint: "the registry's certificate is not trusted; install its CA or fix hosts.toml under containerd's config_path",
  },
  PULL_BAD_REFERENCE: {
    retryable: false,
    exit: EXIT.config,
    hint: 'the image reference is not valid; fix sandboxImage.image',
  },
  PULL_FAILED: {
    retryable: true,
    exit: EXIT.tempfail,
    hint: 'containerd could not pull the image; read the message and `journalctl -u containerd -b`',
  },
  SANDBOX_IMAGE_MISMATCH: {
    retryable: false,
    exit: EXIT.config,
    hint: "set sandbox_image in /etc/containerd/config.toml to the node's regional image (`node-bootstrap resolve-image`)",
  },
  ARCHIVE_IMPORT_FAILED: {
    retryable: false,
    exit: EXIT.unavailable,
    hint: 'rebuild the node image with a valid sandboxImage.archive (an OCI or docker archive of the pause image)',
  },
  PAUSE_NOT_PINNED: {
    retryable: false,
    exit: EXIT.unavailable,
    hint: 'the sandbox image is not pinned; kubelet image GC may delete it (upgrade containerd to 1.7.10+)',
  },
  RESOLV_CONF_INVALID: {
    retryable: false,
    exit: EXIT.config,
    hint: "fix the resolv.conf kubelet uses (kubelet's resolvConf) so that pods get a reachable nameserver",
  },
  RESOLV_CONF_MISSING: {
    retryable: false,
    exit: EXIT.config,
    hint: "create the resolv.conf kubelet uses, or point kubelet's resolvConf (or --resolv-conf) at an existing file",
  },
  KUBELET_CONFIG_INVALID: {
    retryable: false,
    exit: EXIT.config,
    hint: "fix kubelet's config file (--config, or kubelet.config in node-bootstrap's config); kubelet will not start with it",
  },
  KUBELET_START_FAILED: {
    retryable: false,
    exit: EXIT.unavailable,
    hint: 'read `journalctl -u kubelet -b` for why kubelet did not start',
  },
  DBUS_UNAVAILABLE: {
    retryable: true,
    exit: EXIT.tempfail,
    hint: 'the system bus did not answer; is dbus.service running?',
  },
  STATE_DIR_UNWRITABLE: {
    retryable: false,
    exit: EXIT.unavailable,
    hint: 'make the state directory (--state-dir, default /run/node-bootstrap) writable by root',
  },
  INTERNAL: {
    retryable: false,
    exit: EXIT.software,
    hint: 'this is a bug in node-bootstrap; please report it with `node-bootstrap report --json`',
  },
} as const satisfies Record<string, CodeSpec>;

export type ErrorCode = keyof typeof CODES;

export interface BootErrorOptions {
  hint?: string;
  retryable?: boolean;
  cause?: unknown;
}

export class BootError extends Error {
  override readonly name = 'BootError';
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly hint: string;
  readonly exitCode: ExitCode;

  constructor(code: ErrorCode, message: string, opts: BootErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    const spec: CodeSpec = CODES[code];
    this.code = code;
    this.retryable = opts.retryable ?? spec.retryable;
    this.hint = opts.hint ?? spec.hint;
    this.exitCode = spec.exit;
  }

  /**
   * The shipped bundle carries this class twice (the light entry and the lazily compiled part), so
   * instanceof is by shape: a BootError from either copy is a BootError to both.
   */
  static override [Symbol.hasInstance](x: unknown): boolean {
    const e = x as { name?: unknown; code?: unknown } | null;
    return (
      typeof e === 'object' &&
      e !== null &&
      e.name === 'BootError' &&
      typeof e.code === 'string' &&
      e.code in CODES
    );
  }

  toJSON(): { code: ErrorCode; message: string; retryable: boolean; hint: string } {
    return { code: this.code, message: this.message, retryable: this.retryable, hint: this.hint };
  }
}

/** Anything thrown becomes a BootError; unknown errors are INTERNAL (a bug), never silently retried. */
export function toBootError(err: unknown): BootError {
  if (err instanceof BootError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new BootError('INTERNAL', message, { cause: err });
}

export const isBootError = (err: unknown, code?: ErrorCode): err is BootError =>
  err instanceof BootError && (code === undefined || err.code === code);
