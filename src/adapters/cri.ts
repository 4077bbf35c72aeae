/**
 * Thin CRI client (runtime.v1) over containerd's socket. No retries, no classification: every
 * method rejects with the raw grpc ServiceError (`code`, `details`), or with `signal.reason`
 * when its signal aborted the call.
 */
import * as grpc from '@grpc/grpc-js';
import { CHANNEL_OPTIONS, loadProto, serviceClient, unary, unixTarget } from './proto.js';

export interface CriVersion {
  version: string;
  runtimeName: string;
  runtimeVersion: string;
  runtimeApiVersion: string;
}

export interface CriCondition {
  type: string;
  status: boolean;
  reason: string;
  message: string;
}

export interface CriStatus {
  conditions: CriCondition[];
  /** Only with verbose: e.g. `config` (JSON, includes `sandboxImage`). */
  info: Record<string, string>;
}

export interface CriImage {
  id: string;
  repoTags: string[];
  repoDigests: string[];
  size: number;
  pinned: boolean;
}

export interface RegistryAuth {
  username: string;
  password: string;
}

export interface SandboxMetadata {
  name: string;
  uid: string;
  namespace: string;
  attempt?: number;
}

export interface CriClient {
  version(signal: AbortSignal): Promise<CriVersion>;
  status(signal: AbortSignal, verbose?: boolean): Promise<CriStatus>;
  /** null when the runtime does not have the image. */
  imageStatus(ref: string, signal: AbortSignal): Promise<CriImage | null>;
  /** Returns the image ref containerd resolved (`sha256:…`). */
  pullImage(ref: string, auth: RegistryAuth | undefined, signal: AbortSignal): Promise<string>;
  listImages(signal: AbortSignal): Promise<CriImage[]>;
  removeImage(ref: string, signal: AbortSignal): Promise<void>;
  /** A host-network pod sandbox (no CNI needed). Returns its id. */
  runPodSandbox(meta: SandboxMetadata, signal: AbortSignal): Promise<string>;
  stopPodSandbox(id: string, signal: AbortSignal): Promise<void>;
  removePodSandbox(id: string, signal: AbortSignal): Promise<void>;
  close(): void;
}

export interface CriClientOptions {
  /** Queue calls until the socket accepts (default true); false fails fast with 14 UNAVAILABLE. */
  waitForReady?: boolean;
  channelOptions?: grpc.ChannelOptions;
}

interface RawImage {
  id: string;
  repoTags: string[];
  repoDigests: string[];
  size: number;
  pinned: boolean;
}
const toImage = (i: RawImage): CriImage => ({
  id: i.id,
  repoTags: i.repoTags,
  repoDigests: i.repoDigests,
  size: i.size,
  pinned: i.pinned,
});

export function createCriClient(socket: string, opts: CriClientOptions = {}): CriClient {
  const proto = loadProto('cri.proto');
  const target = unixTarget(socket);
  const channelOptions = { ...CHANNEL_OPTIONS, ...opts.channelOptions };
  const creds = grpc.credentials.createInsecure();
  const runtime = new (serviceClient(proto, 'runtime.v1.RuntimeService'))(target, creds, channelOptions);
  const images = new (serviceClient(proto, 'runtime.v1.ImageService'))(target, creds, channelOptions);
  const callOpts = { waitForReady: opts.waitForReady ?? true };
  const rt = <T>(method: string, req: unknown, signal: AbortSignal) =>
    unary<T>(runtime, method, req, signal, callOpts);
  const img = <T>(method: string, req: unknown, signal: AbortSignal) =>
    unary<T>(images, method, req, signal, callOpts);

  return {
    version: (signal) => rt<CriVersion>('Version', { version: 'v1' }, signal),

    async status(signal, verbose = false) {
      const res = await rt<{ status: { conditions: CriCondition[] } | null; info: Record<string, string> }>(
        'Status',
        { verbose },
        signal,
      );
      return { conditions: res.status?.conditions ?? [], info: res.info };
    },

    async imageStatus(ref, signal) {
      const res = await img<{ image: RawImage | null }>('ImageStatus', { image: { image: ref } }, signal);
      return res.image ? toImage(res.image) : null;
    },

    async pullImage(ref, auth, signal) {
      // server_address stays empty: a mismatch with the host makes containerd drop the credentials.
      const req = {
        image: { image: ref },
        auth: auth ? { username: auth.username, password: auth.password } : null,
      };
      const res = await img<{ imageRef: string }>('PullImage', req, signal);
      return res.imageRef;
    },

    async listImages(signal) {
      const res = await img<{ images: RawImage[] }>('ListImages', {}, signal);
      return res.images.map(toImage);
    },

    async removeImage(ref, signal) {
      await img('RemoveImage', { image: { image: ref } }, signal);
    },

    async runPodSandbox(meta, signal) {
      const config = {
        metadata: { ...meta, attempt: meta.attempt ?? 0 },
        linux: { securityContext: { namespaceOptions: { network: 'NODE' } } },
      };
      const res = await rt<{ podSandboxId: string }>('RunPodSandbox', { config }, signal);
      return res.podSandboxId;
    },

    async stopPodSandbox(id, signal) {
      await rt('StopPodSandbox', { podSandboxId: id }, signal);
    },

    async removePodSandbox(id, signal) {
      await rt('RemovePodSandbox', { podSandboxId: id }, signal);
    },

    close() {
      runtime.close();
      images.close();
    },
  };
}
