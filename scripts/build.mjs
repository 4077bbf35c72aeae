// Builds the one shipped artifact: dist/node-bootstrap.mjs, a single ESM file.
// The commands that need gRPC, AWS or D-Bus (src/heavy.ts) are bundled separately and kept out of
// the light commands' way: light commands never parse or compile them. That heavy code travels at
// the end of the file, in a comment (raw-deflated, base64), as parts: `heavy` (the commands, gRPC),
// and the ones it loads only when it first imports them (LAZY_PARTS: the AWS SDK, dbus-next, the
// MIME parser). A small loader (src/heavy-loader.ts), embedded where src/lazy.ts expects the heavy
// part, reads them. No V8 code cache is made here: one only fits the V8 that made it, so `install`
// makes them on the node image (src/commands/startup-cache.ts), and the bundle is byte-reproducible.
// In the heavy part, @grpc/proto-loader is src/adapters/proto-precompiled.ts over the descriptors of
// proto/ parsed here.
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { brotliCompressSync, constants, deflateRawSync } from 'node:zlib';
import { build } from 'esbuild';

const OUT = 'dist/node-bootstrap.mjs';
const INDEX_PREFIX = '//# nb-payload ';

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  mainFields: ['module', 'main'],
  // dbus-next's optional native transports; we use its pure-JS unix socket transport.
  external: ['usocket', 'x11'],
  legalComments: 'none',
  logLevel: 'warning',
};

/** A CommonJS bundle as the function expression lazy.ts and heavy-loader.ts run (PartFn). */
async function cjsFunction(entry, tail = '', extra = {}) {
  const out = await build({
    ...common,
    ...(typeof entry === 'string' ? { entryPoints: [entry] } : { stdin: entry }),
    format: 'cjs',
    write: false,
    banner: { js: extra.banner ?? '' },
    plugins: extra.plugins ?? [],
    supported: extra.supported ?? {},
    ...(extra.minify ? { minify: true, keepNames: true } : {}),
    // The embedding module hands over its own URL (proto/ is found next to the bundle).
    define: { 'import.meta.url': '__nbEntryUrl', ...extra.define },
  });
  return `(function (module, require, __nbEntryUrl, __nbPart) { var exports = module.exports;\n${out.outputFiles[0].text}\n${tail}})`;
}

/**
 * Every proto/*.proto parsed as src/adapters/proto.ts has proto-loader parse it at run time (with
 * proto-loader's own loader and well-known types), as protobufjs Root JSON by file name.
 */
function precompileProtos() {
  const req = createRequire(import.meta.url);
  req('@grpc/proto-loader'); // registers the well-known types proto-loader adds to protobufjs
  const { loadProtosWithOptionsSync } = req('@grpc/proto-loader/build/src/util.js');
  const camelCase = req('lodash.camelcase');
  const protobuf = req('protobufjs');
  const dir = resolve('proto');
  const out = {};
  for (const file of readdirSync(dir)
    .filter((f) => f.endsWith('.proto'))
    .sort()) {
    // keepCase: src/adapters/proto-precompiled.ts PARSE_OPTIONS.
    const root = loadProtosWithOptionsSync(join(dir, file), { keepCase: false, includeDirs: [dir] });
    const check = (ns) => {
      for (const obj of ns.nestedArray) {
        if (obj instanceof protobuf.Service)
          for (const m of obj.methodsArray)
            if (camelCase(m.name) !== m.name.charAt(0).toLowerCase() + m.name.slice(1))
              throw new Error(
                `build: ${file}: method ${m.name}: proto-precompiled.ts's camelCase is too simple`,
              );
        if (obj instanceof protobuf.Namespace) check(obj);
      }
    };
    check(root);
    out[file] = root.toJSON();
  }
  return out;
}

/**
 * protobufjs generates each message type's constructor, encode, decode, verify, fromObject and
 * toObject with `new Function` on first use: ~1 ms per type and function, on the boot path (the
 * first CRI answers). These are the very same generated sources, made here from the same Root JSON
 * the bundle loads, as factories taking the scope protobufjs would pass (Type#setup); emitted as
 * code, they are compiled with the rest of the heavy part (and its code cache).
 */
function precompileCodecs(protos) {
  const protobuf = createRequire(import.meta.url)('protobufjs');
  const factory = (params, source) => `function (${params}) { return ${source}; }`;
  const files = [];
  for (const [file, json] of Object.entries(protos)) {
    const root = protobuf.Root.fromJSON(json);
    root.resolveAll();
    const types = [];
    const walk = (ns) => {
      for (const obj of ns.nestedArray) {
        if (obj instanceof protobuf.Type && !protobuf.wrappers[obj.fullName]) types.push(obj);
        if (obj instanceof protobuf.Namespace) walk(obj);
      }
    };
    walk(root);
    const entries = types.map((t) => {
      const fns = [
        `ctor: ${factory('', protobuf.Type.generateConstructor(t).toString())}`,
        `encode: ${factory('Writer, types, util', protobuf.encoder(t).toString())}`,
        `decode: ${factory('Reader, types, util', protobuf.decoder(t).toString())}`,
        `verify: ${factory('types, util', protobuf.verifier(t).toString())}`,
        `fromObject: ${factory('types, util', protobuf.converter.fromObject(t).toString())}`,
        `toObject: ${factory('types, util', protobuf.converter.toObject(t).toString())}`,
      ];
      return `${JSON.stringify(t.fullName.slice(1))}: {\n${fns.join(',\n')}\n}`;
    });
    files.push(`${JSON.stringify(file)}: {\n${entries.join(',\n')}\n}`);
  }
  return `var __NB_PROTO_CODECS__ = {\n${files.join(',\n')}\n};`;
}

const precompiledProtos = {
  name: 'precompiled-protos',
  setup(b) {
    b.onResolve({ filter: /^@grpc\/proto-loader$/ }, () => ({
      path: resolve('src/adapters/proto-precompiled.ts'),
    }));
  },
};

// esbuild escapes every non-ASCII character in code (charset ascii, its default); what is left is
// in comments. Replacing those keeps the source pure ASCII: a one-byte V8 string, decoded as latin1.
/**
 * The parts loaded only when the heavy part first imports one of their modules (heavy-loader.ts):
 * part name -> { module specifier as imported in src/ -> what the part bundles for it }.
 */
const LAZY_PARTS = {
  aws: { '@aws-sdk/client-ecr': '@aws-sdk/client-ecr', './proxy-agent.js': './src/adapters/proxy-agent.ts' },
  dbus: { 'dbus-next': 'dbus-next' },
  mime: { 'postal-mime': 'postal-mime' },
};
const lazyParts = {
  name: 'lazy-parts',
  setup(b) {
    const owner = new Map(
      Object.entries(LAZY_PARTS).flatMap(([part, mods]) => Object.keys(mods).map((m) => [m, part])),
    );
    const literal = (m) => m.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
    b.onResolve({ filter: new RegExp(`^(${[...owner.keys()].map(literal).join('|')})$`) }, (a) => {
      const part = owner.get(a.path);
      // A relative specifier is the part's only when it names the very file the part bundles.
      const target = LAZY_PARTS[part][a.path];
      if (
        a.path.startsWith('.') &&
        resolve(dirname(a.importer), a.path.replace(/\.js$/, '.ts')) !== resolve(target)
      )
        return undefined;
      return { path: a.path, namespace: 'nb-part', pluginData: part };
    });
    b.onLoad({ filter: /.*/, namespace: 'nb-part' }, (a) => ({
      contents: `module.exports = __nbPart(${JSON.stringify(a.pluginData)})[${JSON.stringify(a.path)}];`,
      loader: 'js',
    }));
  },
};

const partOptions = {
  // import() of Node built-ins (the AWS SDK has a few) as require(): a script compiled from a V8
  // code cache has no dynamic import callback on Node 20 ("A dynamic import callback was not
  // specified"), and built-ins need none.
  supported: { 'dynamic-import': false },
  // Read by every command (the ESM loader reads the whole bundle) and compiled at every heavy
  // start: minified it is half the bytes. keepNames: libraries and errors keep their class and
  // function names. (Stack traces name columns of long lines; there is no source map either way.)
  minify: true,
};
// esbuild escapes every non-ASCII character in code (charset ascii, its default); what is left is
// in comments. Replacing those keeps the source pure ASCII: a one-byte V8 string, decoded as latin1.
const ascii = (source) => source.replace(/[^\x00-\x7f]/g, '?');

const protos = precompileProtos();
const sources = {
  heavy: ascii(
    await cjsFunction('src/heavy.ts', '', {
      ...partOptions,
      plugins: [precompiledProtos, lazyParts],
      banner: precompileCodecs(protos),
      define: { __NB_PROTOS__: JSON.stringify(protos) },
    }),
  ),
};
for (const [name, mods] of Object.entries(LAZY_PARTS)) {
  const contents = `module.exports = {\n${Object.entries(mods)
    .map(([spec, path]) => `  ${JSON.stringify(spec)}: require(${JSON.stringify(path)}),`)
    .join('\n')}\n};\n`;
  sources[name] = ascii(
    await cjsFunction({ contents, resolveDir: resolve('.'), sourcefile: `${name}-part.js` }, '', partOptions),
  );
}

const loader = await cjsFunction(
  'src/heavy-loader.ts',
  'module.exports = module.exports.loadHeavy(require, __nbEntryUrl);\n',
);

const main = await build({
  ...common,
  entryPoints: ['src/cli.ts'],
  outfile: OUT,
  write: false,
  format: 'esm',
  // lazy.ts decompresses and runs this small loader; the loader reads the heavy part.
  define: {
    __NB_HEAVY__: JSON.stringify(
      brotliCompressSync(loader, { params: { [constants.BROTLI_PARAM_QUALITY]: 9 } }).toString('base64'),
    ),
  },
  // Never reached in the bundle (__NB_HEAVY__ is defined), and must not be bundled twice.
  plugins: [
    {
      name: 'heavy-external',
      setup(b) {
        b.onResolve({ filter: /\/heavy\.js$/ }, (a) => ({ path: a.path, external: true }));
      },
    },
  ],
  banner: {
    js: "import { createRequire as __nbCreateRequire } from 'node:module'; const require = __nbCreateRequire(import.meta.url);",
  },
});

// The payload: one comment, one base64 line per part, then the index on the very last line.
const code = Buffer.from(main.outputFiles[0].contents);
const head = '\n/* node-bootstrap heavy part (scripts/build.mjs, src/heavy-loader.ts): data, not code';
let offset = code.length + head.length;
const parts = [];
const part = (data) => {
  const b64 = deflateRawSync(data, { level: 9 }).toString('base64');
  const at = offset + 1;
  parts.push(`\n${b64}`);
  offset = at + b64.length;
  return [at, b64.length, data.length];
};
const index = {
  // The startup cache's folder for this build (src/payload.ts): a hash of what the parts are.
  id: createHash('sha256').update(JSON.stringify(sources)).digest('hex').slice(0, 16),
  parts: Object.fromEntries(
    Object.entries(sources).map(([name, source]) => [name, { src: part(Buffer.from(source, 'latin1')) }]),
  ),
};
const payload = `${head}${parts.join('')}\n*/\n${INDEX_PREFIX}${JSON.stringify(index)}\n`;
// Written whole and renamed: a run started during a build never sees half a bundle.
mkdirSync(dirname(OUT), { recursive: true });
const tmp = `${OUT}.${process.pid}.tmp`;
writeFileSync(tmp, Buffer.concat([code, Buffer.from(payload, 'latin1')]), { mode: 0o755 });
chmodSync(tmp, 0o755);
renameSync(tmp, OUT);
