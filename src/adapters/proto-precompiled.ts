/**
 * The bundle's `@grpc/proto-loader`: the same `loadSync` over descriptors that scripts/build.mjs
 * parsed from proto/ at build time (with proto-loader itself), so a boot neither parses .proto
 * text nor loads protobufjs's parser and descriptor extension, nor encodes FileDescriptorProtos
 * that only gRPC server reflection reads, nor generates its codecs with `new Function` (the build
 * emits them as code). Serialisers and deserialisers are proto-loader's own
 * (fromObject + encode, decode + toObject with the caller's options). Development (tsx, vitest)
 * uses proto-loader and the .proto files directly; the bundle's integration tests cover this one.
 */
import { basename } from 'node:path';
import * as protobuf from 'protobufjs/light.js';

/** Set by scripts/build.mjs: `{ "<file>.proto": Root JSON }`, parsed with PARSE_OPTIONS. */
declare const __NB_PROTOS__: Record<string, protobuf.INamespace> | undefined;

/**
 * Set by scripts/build.mjs: per file and message type (full name without the leading dot), the
 * factories of the functions protobufjs would generate for it on first use (Type#setup, the ctor
 * getter), taking the same scope. Types absent here are set up by protobufjs as usual.
 */
declare const __NB_PROTO_CODECS__: Record<string, Record<string, Codecs>> | undefined;

type Fn = (...args: never[]) => unknown;
interface Codecs {
  ctor(): Fn;
  encode(writer: typeof protobuf.Writer, types: unknown[], util: typeof protobuf.util): Fn;
  decode(reader: typeof protobuf.Reader, types: unknown[], util: typeof protobuf.util): Fn;
  verify(types: unknown[], util: typeof protobuf.util): Fn;
  fromObject(types: unknown[], util: typeof protobuf.util): Fn;
  toObject(types: unknown[], util: typeof protobuf.util): Fn;
}

/**
 * What the ctor getter (phase 'ctor': before resolveAll, which reads every type's ctor) and
 * Type#setup (phase 'codecs') do, with the functions generated at build time.
 */
function install(type: protobuf.Type, c: Codecs, phase: 'ctor' | 'codecs'): void {
  const t = type as unknown as Record<keyof Codecs, unknown>;
  if (phase === 'ctor') {
    t.ctor = c.ctor();
    return;
  }
  const types = type.fieldsArray.map((f) => f.resolve().resolvedType);
  const util = protobuf.util;
  t.encode = c.encode(protobuf.Writer, types, util);
  t.decode = c.decode(protobuf.Reader, types, util);
  t.verify = c.verify(types, util);
  t.fromObject = c.fromObject(types, util);
  t.toObject = c.toObject(types, util);
}

function installAll(
  ns: protobuf.NamespaceBase,
  codecs: Record<string, Codecs>,
  phase: 'ctor' | 'codecs',
): void {
  for (const obj of ns.nestedArray) {
    if (obj instanceof protobuf.Type) {
      const c = codecs[obj.fullName.slice(1)];
      if (c) install(obj, c, phase);
    }
    if (obj instanceof protobuf.Namespace) installAll(obj, codecs, phase);
  }
}

/** The parse options the descriptors were made with (scripts/build.mjs uses exactly these). */
export const PARSE_OPTIONS = { keepCase: false } as const;

export interface LoadOptions {
  keepCase?: boolean;
  longs?: unknown;
  enums?: unknown;
  bytes?: unknown;
  defaults?: boolean;
  arrays?: boolean;
  objects?: boolean;
  oneofs?: boolean;
  json?: boolean;
  includeDirs?: string[];
}

type Serialize = (value: unknown) => Buffer;
type Deserialize = (bytes: Buffer) => unknown;

interface MessageDefinition {
  format: 'Protocol Buffer 3 DescriptorProto';
  /** proto-loader fills these for server reflection only; a client never reads them. */
  type: { name: string };
  fileDescriptorProtos: Buffer[];
  serialize: Serialize;
  deserialize: Deserialize;
}

interface MethodDefinition {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestSerialize: Serialize;
  requestDeserialize: Deserialize;
  responseSerialize: Serialize;
  responseDeserialize: Deserialize;
  originalName: string;
  requestType: MessageDefinition;
  responseType: MessageDefinition;
}

export type PackageDefinition = Record<string, Record<string, MethodDefinition> | MessageDefinition>;

function serializer(type: protobuf.Type): Serialize {
  return (value) => {
    if (Array.isArray(value))
      throw new Error(
        `Failed to serialize message: expected object with ${type.name} structure, got array instead`,
      );
    return Buffer.from(type.encode(type.fromObject(value as Record<string, unknown>)).finish());
  };
}

function deserializer(type: protobuf.Type, options: protobuf.IConversionOptions): Deserialize {
  return (bytes) => type.toObject(type.decode(bytes), options);
}

function message(type: protobuf.Type, options: protobuf.IConversionOptions): MessageDefinition {
  return {
    format: 'Protocol Buffer 3 DescriptorProto',
    type: { name: type.name },
    fileDescriptorProtos: [],
    serialize: serializer(type),
    deserialize: deserializer(type, options),
  };
}

/**
 * proto-loader's originalName is lodash.camelcase of the method name; scripts/build.mjs checks that
 * this simpler rule gives the same for every method it precompiles (`ImageStatus` → `imageStatus`).
 */
const camelCase = (name: string): string => name.charAt(0).toLowerCase() + name.slice(1);

/** Every service and message under `ns`, by full name without the leading dot. */
function walk(ns: protobuf.NamespaceBase, prefix: string, out: [string, protobuf.ReflectionObject][]): void {
  for (const obj of ns.nestedArray) {
    const name = prefix ? `${prefix}.${obj.name}` : obj.name;
    if (obj instanceof protobuf.Service || obj instanceof protobuf.Type) out.push([name, obj]);
    else if (obj instanceof protobuf.Namespace) walk(obj, name, out);
  }
}

/** Tells src/adapters/proto.ts that no proto/ folder is read: loadSync takes the file name only. */
export const precompiled = true;

export function loadSync(filename: string, options: LoadOptions = {}): PackageDefinition {
  const file = basename(filename);
  const json = typeof __NB_PROTOS__ === 'object' ? __NB_PROTOS__[file] : undefined;
  if (!json) throw new Error(`proto/${file} was not precompiled into this bundle (rebuild it)`);
  if ((options.keepCase ?? false) !== PARSE_OPTIONS.keepCase)
    throw new Error(`proto/${file} was precompiled with keepCase=${PARSE_OPTIONS.keepCase}`);
  // Root.fromJSON without its resolveAll: the ctors must be in place first.
  const root = new protobuf.Root();
  if (json.options) root.setOptions(json.options);
  if (json.nested) root.addJSON(json.nested);
  const codecs = typeof __NB_PROTO_CODECS__ === 'object' ? __NB_PROTO_CODECS__[file] : undefined;
  if (codecs) installAll(root, codecs, 'ctor');
  root.resolveAll();
  if (codecs) installAll(root, codecs, 'codecs');
  const conv = options as protobuf.IConversionOptions;
  const def: PackageDefinition = {};
  const all: [string, protobuf.ReflectionObject][] = [];
  walk(root, '', all);
  for (const [name, obj] of all) {
    if (obj instanceof protobuf.Service) {
      const methods: Record<string, MethodDefinition> = {};
      for (const m of obj.methodsArray) {
        const req = m.resolvedRequestType!;
        const res = m.resolvedResponseType!;
        methods[m.name] = {
          path: `/${name}/${m.name}`,
          requestStream: !!m.requestStream,
          responseStream: !!m.responseStream,
          requestSerialize: serializer(req),
          requestDeserialize: deserializer(req, conv),
          responseSerialize: serializer(res),
          responseDeserialize: deserializer(res, conv),
          originalName: camelCase(m.name),
          requestType: message(req, conv),
          responseType: message(res, conv),
        };
      }
      def[name] = methods;
    } else if (obj instanceof protobuf.Type) def[name] = message(obj, conv);
  }
  return def;
}
