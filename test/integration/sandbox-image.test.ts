/**
 * The sandbox (pause) image end to end: the shipped bundle (`node-bootstrap run` and `guard`) against
 * real containerd 1.6 and 1.7, the real TLS registry serving the image under its ECR name, and the
 * real AWS SDK getting instance-profile credentials from the IMDS emulator and a token from the ECR
 * emulator. Every outcome is checked where an operator would look (exit code, verdict, status.json)
 * and in containerd itself (CRI ImageStatus, the pinned label); failures must leave nothing
 * half-done, and no secret may reach any output.
 *
 * Each containerd version has its own testbeds and runs beside the other; within one testbed the
 * tests run in order, each starting from an empty image store and healthy peers.
 */
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  type ContainerdClient,
  createContainerdClient,
  PINNED_LABEL,
} from '../../src/adapters/containerd.js';
import { type CriClient, createCriClient } from '../../src/adapters/cri.js';
import { startEcrApi } from '../testbed/ecr-api.js';
import { ECR_HOST, PAUSE_IMAGE, startTestbed, type Testbed } from '../testbed/index.js';
import { exportPauseArchive } from '../testbed/pause-image.js';
import {
  type BundleResult,
  ensureBuilt,
  explain,
  failure,
  freshStateDir,
  leaks,
  runBundle,
  scenarioConfig,
  testbedSecrets,
} from './lib/run-bundle.js';

const VERSIONS = ['1.6', '1.7'] as const;
/**
 * Concurrency: the suites (one per containerd version, and the testbeds inside each) run side by
 * side; the tests sharing one testbed run in order, one after the other.
 */
const step = it.sequential;
const ACCOUNT = '602401143452';
const TOKEN_FILE = `ecr-token-${ACCOUNT}.us-west-2.json`;
/** Real short deadlines: long enough for one pass over every source, short enough for a fast suite. */
const TIMEOUTS = { 'containerd-socket': '6s', cri: '6s', 'sandbox-image': '8s' };
const FAIL_DEADLINE_MS = 4_000;
const SHOW_FIGURES = process.env.SHOW_FIGURES === '1';
const figures: string[] = [];

const signal = () => AbortSignal.timeout(5_000);

beforeAll(ensureBuilt, 120_000);
afterAll(() => {
  if (SHOW_FIGURES) console.log(figures.sort().join('\n'));
});

/**
 * What one testbed needs in its tests: clients, a run wrapper that checks the invariants, cleanup.
 * `source` is sandboxImage.source in its configs: the classic suites pin `registry`.
 */
function harness(
  version: (typeof VERSIONS)[number],
  start: () => Promise<Testbed>,
  source: 'auto' | 'archive' | 'registry' = 'registry',
) {
  const h = {
    tb: undefined as unknown as Testbed,
    cri: undefined as unknown as CriClient,
    ctrd: undefined as unknown as ContainerdClient,
    /** Extra secrets a scenario introduced (e.g. a wrong password). */
    secrets: [] as string[],
    runs: [] as BundleResult[],
    /** A config for one scenario; without `archive: true` the archive does not exist. */
    config(over: Record<string, unknown> = {}, o: { archive?: boolean } = {}): string {
      const archive = o.archive ? h.tb.archiveFile : join(h.tb.dir, 'no-such-pause.tar');
      const sandboxImage = { archive, source, ...((over.sandboxImage as object | undefined) ?? {}) };
      return scenarioConfig(h.tb, { ...over, sandboxImage });
    },
    async run(
      command: 'run' | 'guard',
      o: { config?: string; stateDir?: string; env?: Record<string, string> } = {},
    ): Promise<BundleResult> {
      const r = await runBundle(command, {
        config: o.config ?? h.config(),
        stateDir: o.stateDir ?? freshStateDir(h.tb),
        env: { ...h.tb.env, ...o.env },
      });
      h.runs.push(r);
      // Across every scenario: no password, token or role credential in any output.
      expect(leaks(r, [...testbedSecrets(h.tb), ...h.secrets]), explain(r)).toEqual([]);
      expect(r.timeline?.exitCode, explain(r)).toBe(r.code);
      return r;
    },
    /** CRI's view and containerd's labels of `ref` (null when containerd has no such image). */
    async image(ref = PAUSE_IMAGE) {
      const cri = await h.cri.imageStatus(ref, signal());
      const labels = await h.ctrd.getImage(ref, 'k8s.io', signal()).then(
        (i) => i.labels,
        (e: { code?: number }) => {
          if (e.code === 5) return null;
          throw e;
        },
      );
      return { cri, labels };
    },
    /** Nothing half-done: no sandbox image, and no image anywhere carries the pinned label. */
    async expectNothingLeft(ref = PAUSE_IMAGE) {
      expect(await h.image(ref)).toEqual({ cri: null, labels: null });
      const pinned = (await h.ctrd.listImages('k8s.io', signal())).filter((i) => PINNED_LABEL in i.labels);
      expect(pinned.map((i) => i.name)).toEqual([]);
    },
    /** Present, labelled, and pinned in CRI exactly where containerd honours the label. */
    async expectPinned(ref = PAUSE_IMAGE) {
      const { cri, labels } = await h.image(ref);
      expect(cri, `${ref} in CRI`).not.toBeNull();
      expect(labels?.[PINNED_LABEL], `${PINNED_LABEL} on ${ref}`).toBe('pinned');
      expect(cri?.pinned, 'CRI ImageStatus.pinned').toBe(version === '1.7');
    },
  };

  beforeAll(async () => {
    h.tb = await start();
    h.cri = createCriClient(h.tb.containerd!.socket);
    h.ctrd = createContainerdClient(h.tb.containerd!.socket);
  });
  afterAll(async () => {
    h.cri?.close();
    h.ctrd?.close();
    await h.tb?.stop();
  });
  beforeEach(async () => {
    const { tb } = h;
    h.secrets = [];
    h.runs = [];
    await tb.registry?.start();
    tb.ecr?.setFault({ mode: 'ok' });
    tb.imds?.setFault({ mode: 'ok' });
    if (tb.ecr) tb.ecr.requests.length = 0;
    if (tb.imds) tb.imds.requests.length = 0;
    await tb.redirectRegistry(ECR_HOST);
    for (const img of await h.cri.listImages(signal())) await h.cri.removeImage(img.id, signal());
  });
  afterEach(({ task }) => {
    for (const r of h.runs)
      figures.push(
        `${version} | ${task.name} | exit ${r.code} | ${/code=(\w+)/.exec(r.verdict)?.[1] ?? 'OK'} | ${(r.ms / 1000).toFixed(1)} s`,
      );
  });
  return h;
}

const sandbox = (r: BundleResult) => r.phase('sandbox-image');

describe.concurrent.each(VERSIONS)('sandbox image on containerd %s (bundle run/guard)', (version) => {
  const pinnedOn17 = version === '1.7';
  const NOT_PINNED_WARNING = new RegExp(
    `^pause image not pinned: containerd ${version}\\.\\S+ ignores ${PINNED_LABEL}; kubelet image GC can delete ${PAUSE_IMAGE.replace(/\./g, '\\.')}`,
  );

  describe('the regional image, its credentials, guard', () => {
    const h = harness(version, () =>
      startTestbed({ containerd: { version }, archive: true, config: { timeouts: TIMEOUTS } }),
    );

    step('pulls the ECR name with a token from the SDK, labels it, and verifies the pin', async () => {
      const state = freshStateDir(h.tb);
      const r = await h.run('run', { stateDir: state });
      expect(r.code, explain(r)).toBe(0);
      expect(sandbox(r).facts).toMatchObject({
        region: 'us-west-2',
        image: PAUSE_IMAGE,
        source: PAUSE_IMAGE,
        imageId: expect.stringMatching(/^sha256:/),
        pinned: pinnedOn17,
        pinHonoured: pinnedOn17,
      });
      if (pinnedOn17) expect(sandbox(r).warnings).toEqual([]);
      else expect(sandbox(r).warnings).toEqual([expect.stringMatching(NOT_PINNED_WARNING)]);
      // The label is set on both versions (1.6 only ignores it); CRI pinned where honoured.
      await h.expectPinned();
      // One token request, for the image's registry account, in its region, signed with the
      // instance-profile credentials the SDK found through IMDSv2.
      expect(h.tb.ecr!.requests).toEqual([
        expect.objectContaining({
          target: 'GetAuthorizationToken',
          registryIds: [ACCOUNT],
          region: 'us-west-2',
          accessKeyId: h.tb.imds!.credentials.accessKeyId,
        }),
      ]);
      expect(statSync(join(state, TOKEN_FILE)).mode & 0o777).toBe(0o600);
    });

    step('a second run is idempotent: nothing pulled, no ECR request', async () => {
      const state = freshStateDir(h.tb);
      const first = await h.run('run', { stateDir: state });
      expect(first.code, explain(first)).toBe(0);
      const requests = h.tb.ecr!.requests.length;
      const second = await h.run('run', { stateDir: state });
      expect(second.code, explain(second)).toBe(0);
      expect(sandbox(second).facts).toMatchObject({
        source: 'present',
        imageId: sandbox(first).facts.imageId,
      });
      expect(h.tb.ecr!.requests.length).toBe(requests);
      // Even from a fresh state dir (no cached token): present means no AWS call.
      const third = await h.run('run');
      expect(sandbox(third).facts.source).toBe('present');
      expect(h.tb.ecr!.requests.length).toBe(requests);
      await h.expectPinned();
    });

    step('a token the registry refuses: PULL_UNAUTHORIZED, exit 69, nothing pulled or pinned', async () => {
      const wrong = `eyJwYXlsb2FkIjoi${'w'.repeat(56)}`;
      h.secrets = [wrong];
      const ecr = await startEcrApi({
        password: wrong,
        expectedAccessKeyId: h.tb.imds!.credentials.accessKeyId,
      });
      try {
        const r = await h.run('run', { env: { AWS_ENDPOINT_URL_ECR: ecr.url } });
        expect(r.code, explain(r)).toBe(69);
        expect(r.verdict).toMatch(
          /^node-bootstrap: FAILED phase=sandbox-image code=PULL_UNAUTHORIZED retryable=false hint="the registry refused the credentials/,
        );
        expect(failure(r).message).toMatch(/refused the credentials for .*401 Unauthorized/);
        // A freshly fetched token that is refused is final: one token request, not a loop.
        expect(ecr.requests.length).toBe(1);
      } finally {
        await ecr.close();
      }
      await h.expectNothingLeft();
    });

    step('a cached token the registry refuses is refreshed once, then the pull succeeds', async () => {
      const state = freshStateDir(h.tb);
      const stale = `eyJwYXlsb2FkIjoi${'s'.repeat(56)}`;
      h.secrets = [stale];
      const cache = join(state, TOKEN_FILE);
      writeFileSync(
        cache,
        JSON.stringify({
          registryId: `${ACCOUNT}.us-west-2`,
          username: 'AWS',
          password: stale,
          expiresAt: new Date(Date.now() + 6 * 3600_000).toISOString(),
          proxyEndpoint: `https://${ECR_HOST}`,
        }),
        { mode: 0o600 },
      );
      const r = await h.run('run', { stateDir: state });
      expect(r.code, explain(r)).toBe(0);
      expect(r.stderr).toMatch(/registry refused the cached ECR token: fetching a new one/);
      expect(h.tb.ecr!.requests.length).toBe(1);
      // The refreshed token replaced the stale one, still 0600.
      expect(statSync(cache).mode & 0o777).toBe(0o600);
      expect(JSON.parse(readFileSync(cache, 'utf8')).password).toBe(h.tb.registry!.password);
      await h.expectPinned();
    });

    step(
      "sandboxImage.tag 9.99 while containerd's sandbox_image is 3.10: a warning, 3.10 is ensured",
      async () => {
        const r = await h.run('run', { config: h.config({ sandboxImage: { tag: '9.99' } }) });
        expect(r.code, explain(r)).toBe(0);
        expect(sandbox(r).facts).toMatchObject({ image: PAUSE_IMAGE, source: PAUSE_IMAGE });
        expect(sandbox(r).warnings[0]).toBe(
          `containerd's sandbox_image is ${PAUSE_IMAGE}, not ${ECR_HOST}/eks/pause:9.99: ensuring ${PAUSE_IMAGE}, the image pods will use`,
        );
        await h.expectPinned();
      },
    );

    step("containerd does not trust the registry's CA: PULL_TLS_UNTRUSTED, exit 69", async () => {
      // A hosts.toml without any `ca`: containerd checks the registry against the system roots.
      const server = `https://${h.tb.registry!.host}`;
      writeFileSync(
        join(h.tb.containerd!.certsDir, ECR_HOST, 'hosts.toml'),
        `server = "${server}"\n\n[host."${server}"]\n  capabilities = ["pull", "resolve"]\n`,
      );
      const r = await h.run('run');
      expect(r.code, explain(r)).toBe(69);
      expect(r.verdict).toMatch(
        /^node-bootstrap: FAILED phase=sandbox-image code=PULL_TLS_UNTRUSTED retryable=false/,
      );
      const f = failure(r);
      expect(f.message).toMatch(/x509: certificate signed by unknown authority/);
      expect(f.hint).toMatch(
        new RegExp(`install the CA of ${ECR_HOST.replace(/\./g, '\\.')} \\(hosts\\.toml`),
      );
      await h.expectNothingLeft();
    });

    step('ECR throttles twice, then answers: the SDK retries and the run succeeds', async () => {
      h.tb.ecr!.setFault({ mode: 'throttle', count: 2 });
      const r = await h.run('run');
      expect(r.code, explain(r)).toBe(0);
      expect(h.tb.ecr!.requests.length).toBe(3);
      await h.expectPinned();
    });

    step('ECR denies GetAuthorizationToken, no archive: ECR_AUTH_FAILED, exit 69, no pull', async () => {
      h.tb.ecr!.setFault({ mode: 'access-denied' });
      const r = await h.run('run');
      expect(r.code, explain(r)).toBe(69);
      expect(r.verdict).toMatch(
        /^node-bootstrap: FAILED phase=sandbox-image code=ECR_AUTH_FAILED retryable=false hint="give the node role ecr:GetAuthorizationToken/,
      );
      expect(failure(r).message).toMatch(/ECR denied GetAuthorizationToken: AccessDeniedException/);
      // Not retried: one request (the SDK does not retry a client fault either).
      expect(h.tb.ecr!.requests.length).toBe(1);
      await h.expectNothingLeft();
    });

    step('ECR denies GetAuthorizationToken, with the archive: OK from the archive', async () => {
      h.tb.ecr!.setFault({ mode: 'access-denied' });
      const r = await h.run('run', { config: h.config({}, { archive: true }) });
      expect(r.code, explain(r)).toBe(0);
      expect(sandbox(r).facts.source).toBe(`archive ${h.tb.archiveFile}`);
      expect(sandbox(r).warnings).toContainEqual(
        `${PAUSE_IMAGE} came from fallback archive ${h.tb.archiveFile} after: ${PAUSE_IMAGE}: ECR_AUTH_FAILED`,
      );
      await h.expectPinned();
    });

    step('IMDS without an instance profile: ECR_AUTH_FAILED, exit 69, the hint says attach one', async () => {
      h.tb.imds!.setFault({ mode: 'no-role' });
      const r = await h.run('run');
      expect(r.code, explain(r)).toBe(69);
      const f = failure(r);
      expect(f).toMatchObject({ phase: 'sandbox-image', code: 'ECR_AUTH_FAILED' });
      expect(f.message).toMatch(/no instance profile/);
      expect(f.hint).toMatch(/attach an instance profile/);
      expect(h.tb.ecr!.requests.length).toBe(0);
      await h.expectNothingLeft();
    });

    step(
      'guard: all well → fast, no ECR request; label removed → re-pinned; image deleted → restored',
      async () => {
        const state = freshStateDir(h.tb);
        const config = h.config();
        const first = await h.run('run', { config, stateDir: state });
        expect(first.code, explain(first)).toBe(0);
        const requests = h.tb.ecr!.requests.length;

        const well = await h.run('guard', { config, stateDir: state });
        expect(well.code, explain(well)).toBe(0);
        expect(well.verdict).toMatch(
          /^node-bootstrap: OK 3\/3 phases in \d+\.\d\ds( warnings=\d+)? command=guard$/,
        );
        expect(existsSync(join(state, 'guard.json'))).toBe(true);
        expect(well.timeline?.command).toBe('guard');
        expect(well.timeline?.phases.map((p) => p.name)).toEqual([
          'containerd-socket',
          'cri',
          'sandbox-image',
        ]);
        expect(sandbox(well).facts.source).toBe('present');
        expect(sandbox(well).durationMs).toBeLessThan(1_000);
        expect(h.tb.ecr!.requests.length).toBe(requests);
        // run's own timeline is not overwritten by guard.
        expect(JSON.parse(readFileSync(join(state, 'status.json'), 'utf8')).command).toBe('run');

        await h.ctrd.setImageLabel(PAUSE_IMAGE, PINNED_LABEL, '', 'k8s.io', signal());
        expect((await h.image()).labels?.[PINNED_LABEL]).toBeUndefined();
        const relabel = await h.run('guard', { config, stateDir: state });
        expect(relabel.code, explain(relabel)).toBe(0);
        expect(sandbox(relabel).facts.source).toBe('present');
        await h.expectPinned();

        await h.cri.removeImage(PAUSE_IMAGE, signal());
        expect((await h.image()).cri).toBeNull();
        const restore = await h.run('guard', { config, stateDir: state });
        expect(restore.code, explain(restore)).toBe(0);
        expect(sandbox(restore).facts).toMatchObject({ source: PAUSE_IMAGE, pinned: pinnedOn17 });
        await h.expectPinned();
      },
    );
  });

  describe('outages: the registry, the primary host, IMDS', () => {
    const OTHER_REGION_HOST = `${ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com`;
    const h = harness(version, () =>
      startTestbed({
        containerd: { version },
        archive: true,
        registryHosts: [OTHER_REGION_HOST],
        config: { timeouts: TIMEOUTS },
      }),
    );

    step(
      'registry down, no archive: PULL_NETWORK, retryable, exit 75 at the deadline; nothing left',
      async () => {
        await h.tb.registry!.stop();
        const config = h.config({ timeouts: { 'sandbox-image': `${FAIL_DEADLINE_MS}ms` } });
        const r = await h.run('run', { config });
        expect(r.code, explain(r)).toBe(75);
        expect(r.verdict).toMatch(
          /^node-bootstrap: FAILED phase=sandbox-image code=PULL_NETWORK retryable=true hint="check the route to 602401143452\.dkr\.ecr\.us-west-2\.amazonaws\.com .*ecr\.dkr interface endpoint/,
        );
        expect(failure(r).message).toMatch(/connection refused.*still failing at the deadline/);
        expect(sandbox(r).durationMs).toBeGreaterThanOrEqual(FAIL_DEADLINE_MS - 50);
        await h.expectNothingLeft();
      },
    );

    step(
      'registry down, a deadline shorter than one pass over the sources: still PULL_NETWORK, not PHASE_TIMEOUT',
      async () => {
        // Twelve unreachable sources, three pull attempts each with backoff (>= 0.75 s a source): one
        // pass takes > 9 s, so the 6 s deadline cuts the first pass, late enough for the first
        // attempts (after the AWS SDK's load and the ECR token) to have failed even on a loaded
        // machine. The failures seen so far are the verdict.
        await h.tb.registry!.stop();
        const fallbacks = [
          `${OTHER_REGION_HOST}/eks/pause:3.10`,
          ...Array.from({ length: 10 }, (_, i) => `${ECR_HOST}/eks/pause-m${i}:3.10`),
        ];
        const config = h.config({ sandboxImage: { fallbacks }, timeouts: { 'sandbox-image': '6s' } });
        const r = await h.run('run', { config });
        expect(r.code, explain(r)).toBe(75);
        expect(r.verdict).toMatch(
          /^node-bootstrap: FAILED phase=sandbox-image code=PULL_NETWORK retryable=true/,
        );
        expect(failure(r).message).toMatch(
          /could not serve \S+: .*connect: connection refused \(still failing at the deadline, after \d+ attempts\)$/,
        );
        await h.expectNothingLeft();
      },
    );

    step('registry down, with the baked archive: OK from the archive, with a fallback warning', async () => {
      await h.tb.registry!.stop();
      const r = await h.run('run', { config: h.config({}, { archive: true }) });
      expect(r.code, explain(r)).toBe(0);
      expect(sandbox(r).facts.source).toBe(`archive ${h.tb.archiveFile}`);
      expect(sandbox(r).warnings).toContainEqual(
        `${PAUSE_IMAGE} came from fallback archive ${h.tb.archiveFile} after: ${PAUSE_IMAGE}: PULL_NETWORK`,
      );
      await h.expectPinned();
    });

    step(
      "the primary registry host unreachable, a fallback in another region's ECR: the fallback wins",
      async () => {
        // Only the primary name's host is out: its hosts.toml points at a port nobody listens on.
        await h.tb.containerd!.trustRegistry(ECR_HOST, 'https://127.0.0.1:9', h.tb.registry!.caFile);
        const fallback = `${OTHER_REGION_HOST}/eks/pause:3.10`;
        const r = await h.run('run', { config: h.config({ sandboxImage: { fallbacks: [fallback] } }) });
        expect(r.code, explain(r)).toBe(0);
        expect(sandbox(r).facts).toMatchObject({ image: PAUSE_IMAGE, source: fallback, pinned: pinnedOn17 });
        expect(sandbox(r).warnings).toContainEqual(
          `${PAUSE_IMAGE} came from fallback ${fallback} after: ${PAUSE_IMAGE}: PULL_NETWORK`,
        );
        // The TARGET name (the one containerd and kubelet use) is present and pinned.
        await h.expectPinned(PAUSE_IMAGE);
      },
    );

    step(
      'IMDS down, no region configured: IMDS_UNAVAILABLE, exit 75 at the deadline, an actionable hint',
      async () => {
        h.tb.imds!.setFault({ mode: 'down' });
        const config = h.config({ timeouts: { 'sandbox-image': '2500ms' } });
        const r = await h.run('run', { config });
        expect(r.code, explain(r)).toBe(75);
        expect(r.verdict).toMatch(
          /^node-bootstrap: FAILED phase=sandbox-image code=IMDS_UNAVAILABLE retryable=true/,
        );
        const f = failure(r);
        expect(f.message).toMatch(/refused the connection \(ECONNREFUSED\).*still failing at the deadline/);
        expect(f.hint).toMatch(/HttpEndpoint=enabled .*AWS_EC2_METADATA_SERVICE_ENDPOINT/);
        expect(sandbox(r).durationMs).toBeGreaterThanOrEqual(2_450);
        expect(h.tb.ecr!.requests.length).toBe(0);
        await h.expectNothingLeft();
      },
    );

    step(
      'IMDS down, region in config: no credentials for the SDK, classified IMDS_UNAVAILABLE (retryable), exit 75',
      async () => {
        h.tb.imds!.setFault({ mode: 'down' });
        const config = h.config({ region: 'us-west-2', timeouts: { 'sandbox-image': '2500ms' } });
        const r = await h.run('run', { config });
        expect(r.code, explain(r)).toBe(75);
        expect(r.verdict).toMatch(
          /^node-bootstrap: FAILED phase=sandbox-image code=IMDS_UNAVAILABLE retryable=true/,
        );
        const f = failure(r);
        // src/core/ecr-errors.ts: no credentials + IMDS refused (not "no role") → IMDS_UNAVAILABLE.
        expect(f.message).toMatch(
          /the AWS SDK found no credentials for the ECR API: IMDS at \S+ refused the connection/,
        );
        expect(f.hint).toMatch(/HttpEndpoint=enabled/);
        expect(sandbox(r).facts.region).toBe('us-west-2');
        expect(h.tb.ecr!.requests.length).toBe(0);
        await h.expectNothingLeft();
      },
    );
  });

  describe("containerd's sandbox_image is a tag the registry does not have", () => {
    const MISSING = `${ECR_HOST}/eks/pause:9.99`;
    const MIRROR = `${ECR_HOST}/eks/pause-mirror:3.10`;
    const h = harness(version, () =>
      startTestbed({
        containerd: { version, sandboxImage: MISSING },
        push: ['eks/pause-mirror:3.10'],
        config: { timeouts: TIMEOUTS, sandboxImage: { tag: '9.99' } },
      }),
    );

    step('unknown tag: PULL_NOT_FOUND, exit 69, nothing pulled or pinned', async () => {
      const r = await h.run('run');
      expect(r.code, explain(r)).toBe(69);
      expect(r.verdict).toMatch(
        /^node-bootstrap: FAILED phase=sandbox-image code=PULL_NOT_FOUND retryable=false hint="the image or tag does not exist/,
      );
      expect(failure(r).message).toMatch(/eks\/pause:9\.99 does not exist in/);
      await h.expectNothingLeft(MISSING);
    });

    step(
      'a configured fallback image serves it: tagged with the TARGET name, which is present and pinned',
      async () => {
        const r = await h.run('run', { config: h.config({ sandboxImage: { fallbacks: [MIRROR] } }) });
        expect(r.code, explain(r)).toBe(0);
        expect(sandbox(r).facts).toMatchObject({ image: MISSING, source: MIRROR, pinned: pinnedOn17 });
        expect(sandbox(r).warnings).toContainEqual(
          `${MISSING} came from fallback ${MIRROR} after: ${MISSING}: PULL_NOT_FOUND`,
        );
        await h.expectPinned(MISSING);
        expect((await h.image(MISSING)).cri?.id).toBe((await h.image(MIRROR)).cri?.id);
      },
    );
  });

  describe("containerd's sandbox_image is in another region's ECR", () => {
    const EU = `${ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/eks/pause:3.10`;
    const h = harness(version, () =>
      startTestbed({
        containerd: { version, sandboxImage: EU },
        registry: false,
        config: { timeouts: TIMEOUTS },
      }),
    );

    step('SANDBOX_IMAGE_MISMATCH, exit 78, before any ECR call or pull', async () => {
      const r = await h.run('run');
      expect(r.code, explain(r)).toBe(78);
      expect(r.verdict).toMatch(
        /^node-bootstrap: FAILED phase=sandbox-image code=SANDBOX_IMAGE_MISMATCH retryable=false/,
      );
      const f = failure(r);
      expect(f.message).toBe(
        `containerd's sandbox_image ${EU} is in eu-west-1's ECR but this node is in us-west-2; pods would pull the pause image from the wrong region`,
      );
      expect(f.hint).toBe(
        `set sandbox_image = "${PAUSE_IMAGE}" in containerd's config.toml and restart containerd`,
      );
      expect(h.tb.ecr!.requests.length).toBe(0);
      expect(await h.cri.listImages(signal())).toEqual([]);
    });
  });
});

describe.concurrent.each(VERSIONS)(
  'sandboxImage.source auto and archive on containerd %s: the AL2023 layout (localhost/kubernetes/pause, a baked archive)',
  (version) => {
    /** As nodeadm renders it: no tag. containerd (and kubelet) ask for it with `:latest`. */
    const LOCAL = 'localhost/kubernetes/pause';
    const LOCAL_TAGGED = `${LOCAL}:latest`;
    const h = harness(
      version,
      async () => {
        const tb = await startTestbed({
          containerd: { version, sandboxImage: LOCAL },
          config: { timeouts: TIMEOUTS },
        });
        await exportPauseArchive(join(tb.dir, 'eks-pause.tar'), { name: LOCAL_TAGGED });
        return tb;
      },
      'auto',
    );
    const bakedArchive = () => join(h.tb.dir, 'eks-pause.tar');
    const auto = (over: Record<string, unknown> = {}) =>
      h.config({ sandboxImage: { archive: bakedArchive(), ...over } });

    step(
      'registry down: the reference from config.toml (tag added) is imported from the archive and pinned, no AWS call to ECR',
      async () => {
        await h.tb.registry!.stop();
        const r = await h.run('run', { config: auto() });
        expect(r.code, explain(r)).toBe(0);
        expect(sandbox(r).facts).toMatchObject({
          image: LOCAL_TAGGED,
          source: `archive ${bakedArchive()}`,
          sourceMode: 'auto',
          configuredFrom: `sandbox_image under [plugins."io.containerd.grpc.v1.cri"] in ${h.tb.containerd!.configFile}, and CRI status`,
          pinned: version === '1.7',
        });
        // The modern layout is no surprise: no warning about the name (1.6 still warns it cannot pin).
        expect(sandbox(r).warnings.filter((w) => !/not pinned/.test(w))).toEqual([]);
        expect(h.tb.ecr!.requests).toEqual([]);
        await h.expectPinned(LOCAL_TAGGED);
        // CRI finds it under the untagged name containerd is configured with.
        expect((await h.cri.imageStatus(LOCAL, signal()))?.id).toBe(sandbox(r).facts.imageId);
      },
    );

    step('IMDS down too, no region configured: the archive serves, the region is never needed', async () => {
      await h.tb.registry!.stop();
      h.tb.imds!.setFault({ mode: 'down' });
      const r = await h.run('run', { config: auto() });
      expect(r.code, explain(r)).toBe(0);
      expect(sandbox(r).facts).toMatchObject({ image: LOCAL_TAGGED, source: `archive ${bakedArchive()}` });
      expect(sandbox(r).facts.region).toBeUndefined();
      expect(h.tb.ecr!.requests).toEqual([]);
      await h.expectPinned(LOCAL_TAGGED);
    });

    step('a second run: present, nothing imported', async () => {
      const first = await h.run('run', { config: auto() });
      expect(first.code, explain(first)).toBe(0);
      const again = await h.run('run', { config: auto() });
      expect(again.code, explain(again)).toBe(0);
      expect(sandbox(again).facts.source).toBe('present');
    });

    step(
      'no archive on disk: the regional image is pulled from ECR and tagged with the configured name',
      async () => {
        const r = await h.run('run', { config: auto({ archive: join(h.tb.dir, 'no-such.tar') }) });
        expect(r.code, explain(r)).toBe(0);
        expect(sandbox(r).facts).toMatchObject({ image: LOCAL_TAGGED, source: PAUSE_IMAGE });
        expect(h.tb.ecr!.requests).toHaveLength(1);
        await h.expectPinned(LOCAL_TAGGED);
      },
    );

    step('source archive, the archive missing: ARCHIVE_IMPORT_FAILED, exit 69, no ECR call', async () => {
      const r = await h.run('run', {
        config: auto({ source: 'archive', archive: join(h.tb.dir, 'no-such.tar') }),
      });
      expect(r.code, explain(r)).toBe(69);
      expect(r.verdict).toMatch(/^node-bootstrap: FAILED phase=sandbox-image code=ARCHIVE_IMPORT_FAILED/);
      expect(failure(r).message).toBe(`no image archive at ${join(h.tb.dir, 'no-such.tar')}`);
      expect(h.tb.ecr!.requests).toEqual([]);
      await h.expectNothingLeft(LOCAL_TAGGED);
    });

    step(
      'config.toml rewritten while containerd runs: the disagreement is reported, the running reference is ensured',
      async () => {
        const file = h.tb.containerd!.configFile;
        const original = readFileSync(file, 'utf8');
        writeFileSync(
          file,
          original.replace(`sandbox_image = "${LOCAL}"`, `sandbox_image = "${PAUSE_IMAGE}"`),
        );
        try {
          const r = await h.run('run', { config: auto() });
          expect(r.code, explain(r)).toBe(0);
          expect(sandbox(r).warnings).toContainEqual(
            `sandbox_image under [plugins."io.containerd.grpc.v1.cri"] in ${file} is ${PAUSE_IMAGE} but the running containerd uses ${LOCAL}: it runs on an older config (restart containerd to apply the file); ensuring ${LOCAL_TAGGED}, the image pods use now`,
          );
          expect(sandbox(r).facts).toMatchObject({ image: LOCAL_TAGGED, configuredFrom: 'CRI status' });
        } finally {
          writeFileSync(file, original);
        }
      },
    );

    step(
      'a config.toml containerd would refuse: CONTAINERD_CONFIG_INVALID, exit 78, naming file and line',
      async () => {
        const file = h.tb.containerd!.configFile;
        const original = readFileSync(file, 'utf8');
        writeFileSync(file, `${original}\n[plugins."io.containerd.grpc.v1.cri"\n`);
        try {
          const r = await h.run('run', { config: auto() });
          expect(r.code, explain(r)).toBe(78);
          expect(failure(r)).toMatchObject({
            phase: 'sandbox-image',
            code: 'CONTAINERD_CONFIG_INVALID',
            message: expect.stringMatching(
              new RegExp(`^${file}: TOML syntax error at line \\d+, column \\d+: `),
            ),
          });
          await h.expectNothingLeft(LOCAL_TAGGED);
        } finally {
          writeFileSync(file, original);
        }
      },
    );
  },
);
