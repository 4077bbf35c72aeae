/**
 * kubelet stand-in: the program kubelet.service runs in the e2e boot tests (bundled by
 * boot-node.ts, run by the node inside the container). Like kubelet, it needs the sandbox (pause)
 * image containerd is configured with; unlike kubelet, it checks what node-bootstrap promised
 * before letting kubelet start, independently of node-bootstrap's own code:
 *
 *   - containerd answers CRI (no waiting: the gate says it is up);
 *   - containerd's configured sandbox_image (CRI Status verbose) is present (CRI ImageStatus);
 *   - it is pinned: the `io.cri-containerd.pinned=pinned` label in containerd (every version),
 *     and ImageStatus.pinned where containerd reports pins (1.7+).
 *
 * Then READY=1 (the unit is Type=notify: `active` means the check passed) and it stays running.
 * Otherwise it prints why and exits 1, failing the start job that node-bootstrap follows.
 *
 *   node kubelet-standin.cjs [PROTO_DIR] [SOCKET]
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const PINNED_LABEL = 'io.cri-containerd.pinned';
const [protoDir = '/srv/node-bootstrap/proto', socket = '/run/containerd/containerd.sock'] =
  process.argv.slice(2);

type Callback = (err: grpc.ServiceError | null, res: unknown) => void;
type Method = (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback) => void;

function load(file: string, service: string): grpc.Client {
  const def = protoLoader.loadSync(join(protoDir, file), {
    keepCase: false,
    longs: Number,
    enums: String,
    defaults: true,
    includeDirs: [protoDir],
  });
  let node: unknown = grpc.loadPackageDefinition(def);
  for (const part of service.split('.')) node = (node as Record<string, unknown>)[part];
  const Ctor = node as grpc.ServiceClientConstructor;
  return new Ctor(`unix:${socket}`, grpc.credentials.createInsecure());
}

function call<T>(client: grpc.Client, method: string, req: unknown, namespace?: string): Promise<T> {
  const md = new grpc.Metadata();
  if (namespace) md.set('containerd-namespace', namespace);
  const fn = (client as unknown as Record<string, Method>)[method]!;
  return new Promise((resolve, reject) =>
    fn.call(client, req, md, { deadline: Date.now() + 5_000 }, (err, res) =>
      err ? reject(new Error(`${method}: ${err.code} ${err.details}`)) : resolve(res as T),
    ),
  );
}

function notify(args: string[]): Promise<void> {
  // systemd-notify sends with its parent's pid (ours, the main pid: NotifyAccess=main accepts it).
  return new Promise((resolve, reject) =>
    execFile('systemd-notify', args, (err) => (err ? reject(err) : resolve())),
  );
}

async function main(): Promise<void> {
  const runtime = load('cri.proto', 'runtime.v1.RuntimeService');
  const images = load('cri.proto', 'runtime.v1.ImageService');
  const native = load('containerd.proto', 'containerd.services.images.v1.Images');

  const version = await call<{ runtimeVersion: string }>(runtime, 'Version', { version: 'v1' });
  const status = await call<{ info: Record<string, string> }>(runtime, 'Status', { verbose: true });
  const image = (JSON.parse(status.info.config ?? '{}') as { sandboxImage?: string }).sandboxImage;
  if (!image) throw new Error('containerd reports no sandbox_image');

  const st = await call<{ image: { id: string; pinned: boolean } | null }>(images, 'ImageStatus', {
    image: { image },
  });
  if (!st.image) throw new Error(`sandbox image ${image} is not present`);

  const got = await call<{ image: { labels: Record<string, string> } | null }>(
    native,
    'Get',
    { name: image },
    'k8s.io',
  );
  const label = got.image?.labels?.[PINNED_LABEL];
  if (label !== 'pinned') throw new Error(`sandbox image ${image} has no ${PINNED_LABEL}=pinned label`);

  const m = /^v?(\d+)\.(\d+)/.exec(version.runtimeVersion);
  const reportsPins = m !== null && (Number(m[1]) > 1 || Number(m[2]) >= 7);
  if (reportsPins && !st.image.pinned)
    throw new Error(`containerd ${version.runtimeVersion} reports ${image} unpinned`);

  const what = `sandbox image ${image} present and pinned (containerd ${version.runtimeVersion}, CRI pinned=${st.image.pinned})`;
  console.log(`kubelet stand-in: ${what}`);
  for (const c of [runtime, images, native]) c.close();
  await notify(['--ready', `--status=${what}`]);
  setInterval(() => {}, 1 << 30);
}

process.once('SIGTERM', () => process.exit(0));
main().catch((err: unknown) => {
  console.error(`kubelet stand-in: refusing to run: ${(err as Error).message}`);
  process.exit(1);
});
