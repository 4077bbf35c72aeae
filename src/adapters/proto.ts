/**
 * gRPC plumbing shared by the CRI and containerd adapters: the minimal .proto files shipped in
 * proto/ (parsed once per process, ~15 ms, only on paths that talk gRPC) and one unary call
 * helper that honours an AbortSignal.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** Reconnect quickly after a containerd restart (grpc-js defaults wait up to 120 s between tries). */
export const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 1000,
};

/** `/run/containerd/containerd.sock` → `unix:/run/containerd/containerd.sock` (grpc-js target). */
export const unixTarget = (socket: string): string =>
  socket.startsWith('unix:') ? socket : `unix:${socket}`;

const cache = new Map<string, grpc.GrpcObject>();

/**
 * The proto/ folder: walk up from this module (src/adapters/ under tsx/vitest, dist/ in the bundle)
 * and from the entry script until a folder holds proto/<name>.
 */
export function findProtoDir(name: string): string {
  const starts: string[] = [];
  if (typeof import.meta.url === 'string') starts.push(dirname(fileURLToPath(import.meta.url)));
  if (process.argv[1]) starts.push(dirname(process.argv[1]));
  for (const start of starts) {
    for (let dir = start; ; dir = dirname(dir)) {
      if (existsSync(join(dir, 'proto', name))) return join(dir, 'proto');
      if (dirname(dir) === dir) break;
    }
  }
  throw new Error(`proto/${name} not found above ${starts.join(' or ')}`);
}

/**
 * In the bundle, `@grpc/proto-loader` is proto-precompiled.ts (scripts/build.mjs): it holds every
 * proto/ file parsed at build time, looks them up by file name, and reads nothing from disk, so the
 * bundle needs no proto/ folder next to it.
 */
const PRECOMPILED = 'precompiled' in protoLoader;

/** Load proto/<name> (and what it imports from proto/) once per process. */
export function loadProto(name: string): grpc.GrpcObject {
  let obj = cache.get(name);
  if (!obj) {
    const dir = PRECOMPILED ? 'proto' : findProtoDir(name);
    const def = protoLoader.loadSync(join(dir, name), {
      keepCase: false,
      longs: Number,
      enums: String,
      defaults: true,
      oneofs: true,
      includeDirs: [dir],
    });
    obj = grpc.loadPackageDefinition(def);
    cache.set(name, obj);
  }
  return obj;
}

/** A service constructor from a loaded proto, by its full name (`runtime.v1.ImageService`). */
export function serviceClient(proto: grpc.GrpcObject, fullName: string): grpc.ServiceClientConstructor {
  let node: unknown = proto;
  for (const part of fullName.split('.')) node = (node as Record<string, unknown> | undefined)?.[part];
  if (typeof node !== 'function') throw new Error(`service ${fullName} not found in the loaded proto`);
  return node as grpc.ServiceClientConstructor;
}

type UnaryMethod = (
  req: unknown,
  md: grpc.Metadata,
  opts: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res: unknown) => void,
) => grpc.ClientUnaryCall;

/**
 * One unary call. The signal cancels the call; an aborted call rejects with `signal.reason` (as
 * fetch does), any other failure with the raw grpc ServiceError (`code`, `details`).
 * `waitForReady` goes in the Metadata: grpc-js ignores it in the call options.
 */
export function unary<Res>(
  client: grpc.Client,
  method: string,
  req: unknown,
  signal: AbortSignal,
  opts: { waitForReady?: boolean; metadata?: Record<string, string> } = {},
): Promise<Res> {
  const fn = (client as unknown as Record<string, UnaryMethod>)[method];
  if (typeof fn !== 'function') return Promise.reject(new Error(`no gRPC method ${method}`));
  if (signal.aborted) return Promise.reject(signal.reason);
  const md = new grpc.Metadata({ waitForReady: opts.waitForReady ?? true });
  for (const [k, v] of Object.entries(opts.metadata ?? {})) md.set(k, v);
  return new Promise<Res>((resolve, reject) => {
    const onAbort = () => call.cancel();
    const call = fn.call(client, req, md, {}, (err, res) => {
      signal.removeEventListener('abort', onAbort);
      if (signal.aborted) reject(signal.reason);
      else if (err) reject(err);
      else resolve(res as Res);
    });
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
