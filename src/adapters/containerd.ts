/**
 * Thin client for containerd's native API (images + version) over its socket. The namespace is
 * gRPC metadata (`containerd-namespace`). Every method rejects with the raw grpc ServiceError, or
 * with `signal.reason` when its signal aborted the call.
 */
import * as grpc from '@grpc/grpc-js';
import { CHANNEL_OPTIONS, loadProto, serviceClient, unary, unixTarget } from './proto.js';

/** The label containerd's CRI plugin (1.7.10+) reads as "pinned: never garbage-collect". */
export const PINNED_LABEL = 'io.cri-containerd.pinned';
const ALREADY_EXISTS = 6;

export interface ContainerdDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations: Record<string, string>;
}

export interface ContainerdImage {
  name: string;
  labels: Record<string, string>;
  target: ContainerdDescriptor | null;
  createdAt: unknown;
  updatedAt: unknown;
}

export interface ContainerdClient {
  version(signal: AbortSignal): Promise<{ version: string; revision: string }>;
  /** Rejects with 5 NOT_FOUND when containerd has no image by that exact name. */
  getImage(name: string, ns: string, signal: AbortSignal): Promise<ContainerdImage>;
  /** Set one label on an image, keeping the rest; returns the updated image. */
  setImageLabel(
    name: string,
    key: string,
    value: string,
    ns: string,
    signal: AbortSignal,
  ): Promise<ContainerdImage>;
  listImages(ns: string, signal: AbortSignal): Promise<ContainerdImage[]>;
  /** Name `name` the same content as `source` (create, or move an existing name): a retag. */
  tagImage(name: string, source: string, ns: string, signal: AbortSignal): Promise<ContainerdImage>;
  close(): void;
}

export interface ContainerdClientOptions {
  /** Queue calls until the socket accepts (default true); false fails fast with 14 UNAVAILABLE. */
  waitForReady?: boolean;
  channelOptions?: grpc.ChannelOptions;
}

export function createContainerdClient(socket: string, opts: ContainerdClientOptions = {}): ContainerdClient {
  const proto = loadProto('containerd.proto');
  const target = unixTarget(socket);
  const channelOptions = { ...CHANNEL_OPTIONS, ...opts.channelOptions };
  const creds = grpc.credentials.createInsecure();
  const images = new (serviceClient(proto, 'containerd.services.images.v1.Images'))(
    target,
    creds,
    channelOptions,
  );
  const version = new (serviceClient(proto, 'containerd.services.version.v1.Version'))(
    target,
    creds,
    channelOptions,
  );
  const waitForReady = opts.waitForReady ?? true;
  const call = <T>(method: string, req: unknown, ns: string, signal: AbortSignal) =>
    unary<T>(images, method, req, signal, { waitForReady, metadata: { 'containerd-namespace': ns } });

  const getImage = async (name: string, ns: string, signal: AbortSignal) =>
    (await call<{ image: ContainerdImage }>('Get', { name }, ns, signal)).image;

  return {
    version: (signal) => unary(version, 'Version', {}, signal, { waitForReady }),

    getImage,

    async setImageLabel(name, key, value, ns, signal) {
      // Update must carry the FULL image (containerd 1.7.24 dies on a nil target); the mask limits
      // the write to this one label.
      const image = await getImage(name, ns, signal);
      const req = {
        image: { ...image, labels: { ...image.labels, [key]: value } },
        updateMask: { paths: [`labels.${key}`] },
      };
      return (await call<{ image: ContainerdImage }>('Update', req, ns, signal)).image;
    },

    async listImages(ns, signal) {
      return (await call<{ images: ContainerdImage[] }>('List', { filters: [] }, ns, signal)).images;
    },

    async tagImage(name, source, ns, signal) {
      const { target } = await getImage(source, ns, signal);
      try {
        return (await call<{ image: ContainerdImage }>('Create', { image: { name, target } }, ns, signal))
          .image;
      } catch (err) {
        if ((err as { code?: number }).code !== ALREADY_EXISTS) throw err;
        const existing = await getImage(name, ns, signal);
        const req = { image: { ...existing, target }, updateMask: { paths: ['target'] } };
        return (await call<{ image: ContainerdImage }>('Update', req, ns, signal)).image;
      }
    },

    close() {
      images.close();
      version.close();
    },
  };
}
