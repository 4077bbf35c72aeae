/**
 * Training for the V8 code caches (scripts/build.mjs at build time, `install` at image-build time
 * when the node's V8 is not the one that built the bundle): one boot's worth of node-bootstrap run
 * in this process against stand-ins, so that V8 has compiled what a boot runs when the caches are
 * made. A containerd on a private unix socket (HTTP/2, answering the CRI and containerd calls of a
 * boot whose pause image is present and pinned) and an ECR API on loopback (one
 * GetAuthorizationToken through the AWS SDK, what a boot without its image runs next).
 * Touches nothing of the node: a temporary folder, no journal, no D-Bus, no IMDS, no /var/log, no
 * log and no console lines.
 */

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttp2Server } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MethodDefinition } from '@grpc/grpc-js';
import { loadProto, serviceClient } from '../adapters/proto.js';
import { run } from './run.js';

const IMAGE = '602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.10';
const CONTAINERD_IMAGE = {
  name: IMAGE,
  labels: { 'io.cri-containerd.pinned': 'pinned' },
  target: {
    mediaType: 'application/vnd.oci.image.index.v1+json',
    digest: `sha256:${'0'.repeat(64)}`,
    size: 1,
  },
};

/** What the stand-in containerd answers, by gRPC method path. */
const ANSWERS: Record<string, unknown> = {
  '/runtime.v1.RuntimeService/Version': {
    version: '0.1.0',
    runtimeName: 'containerd',
    runtimeVersion: 'v1.7.24',
    runtimeApiVersion: 'v1',
  },
  '/runtime.v1.RuntimeService/Status': {
    status: {
      conditions: [
        { type: 'RuntimeReady', status: true },
        { type: 'NetworkReady', status: false, reason: 'NetworkPluginNotReady' },
      ],
    },
    info: { config: JSON.stringify({ sandboxImage: IMAGE, containerd: { snapshotter: 'overlayfs' } }) },
  },
  '/runtime.v1.ImageService/ImageStatus': {
    image: { id: `sha256:${'1'.repeat(64)}`, repoTags: [IMAGE], size: 1, pinned: true },
  },
  '/containerd.services.version.v1.Version/Version': { version: '1.7.24', revision: 'train' },
  '/containerd.services.images.v1.Images/Get': { image: CONTAINERD_IMAGE },
  '/containerd.services.images.v1.Images/Update': { image: CONTAINERD_IMAGE },
};

const SERVICES: [proto: string, service: string][] = [
  ['cri.proto', 'runtime.v1.RuntimeService'],
  ['cri.proto', 'runtime.v1.ImageService'],
  ['containerd.proto', 'containerd.services.images.v1.Images'],
  ['containerd.proto', 'containerd.services.version.v1.Version'],
];

/** Each answer serialised as its method's response message (the same codecs the clients use). */
function encodedAnswers(): Map<string, Buffer> {
  const methods = new Map<string, MethodDefinition<unknown, unknown>>();
  for (const [proto, service] of SERVICES)
    for (const m of Object.values(serviceClient(loadProto(proto), service).service))
      methods.set(m.path, m as MethodDefinition<unknown, unknown>);
  const out = new Map<string, Buffer>();
  for (const [path, answer] of Object.entries(ANSWERS)) {
    const method = methods.get(path);
    if (!method) throw new Error(`train: no method ${path} in proto/`);
    const body = method.responseSerialize(answer);
    const frame = Buffer.alloc(5);
    frame.writeUInt32BE(body.length, 1);
    out.set(path, Buffer.concat([frame, body]));
  }
  return out;
}

/** Trains; resolves with what was trained (or why not all). Never throws. */
export async function train(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'node-bootstrap-train-'));
  const containerd = createHttp2Server();
  const ecr = createHttpServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
      res.end(
        JSON.stringify({
          authorizationData: [
            {
              authorizationToken: Buffer.from('AWS:training').toString('base64'),
              expiresAt: Date.now() / 1000 + 3600,
              proxyEndpoint: 'https://602401143452.dkr.ecr.us-west-2.amazonaws.com',
            },
          ],
        }),
      );
    });
  });
  const results: string[] = [];
  try {
    const answers = encodedAnswers();
    containerd.on('stream', (stream, headers) => {
      stream.on('error', () => {});
      const answer = answers.get(String(headers[':path']));
      if (!answer) {
        stream.respond(
          { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '12' },
          { endStream: true },
        );
        return;
      }
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.end(answer);
      stream.resume();
    });
    const socket = join(dir, 'containerd.sock');
    await new Promise<void>((r) => containerd.listen(socket, r));
    writeFileSync(
      join(dir, 'containerd.toml'),
      `version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "${IMAGE}"\n`,
    );
    const config = join(dir, 'config.yaml');
    writeFileSync(
      config,
      [
        'region: us-west-2',
        'containerd:',
        `  socket: ${socket}`,
        `  config: ${join(dir, 'containerd.toml')}`,
        'nodeConfig:',
        '  imds: false',
        'report:',
        '  logDir: false',
        'metrics:',
        '  textfileDir: false',
        'timeouts:',
        '  containerd-socket: 5s',
        '  cri: 5s',
        '  sandbox-image: 5s',
        '',
      ].join('\n'),
    );
    const code = await run(
      { config, skip: 'containerd-unit,resolv-conf,kubelet', 'state-dir': join(dir, 'state') },
      AbortSignal.timeout(30_000),
      { quiet: true },
    );
    results.push(code === 0 ? 'boot run' : `boot run exited ${code}`);

    await new Promise<void>((r) => ecr.listen(0, '127.0.0.1', r));
    const sdk = await import('@aws-sdk/client-ecr');
    const client = new sdk.ECRClient({
      region: 'us-west-2',
      endpoint: `http://127.0.0.1:${(ecr.address() as AddressInfo).port}`,
      credentials: { accessKeyId: 'AKIDTRAINING', secretAccessKey: 'training' },
    });
    try {
      await client.send(new sdk.GetAuthorizationTokenCommand({ registryIds: ['602401143452'] }));
      results.push('ECR token');
    } finally {
      client.destroy();
    }
  } catch (err) {
    results.push(`failed: ${(err as Error).message}`);
  } finally {
    containerd.close();
    ecr.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return results.join(', ');
}
