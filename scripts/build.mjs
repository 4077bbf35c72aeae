// Builds the one shipped artifact: dist/node-bootstrap.mjs, a single ESM file.
// The commands that need gRPC, AWS or D-Bus (src/heavy.ts) are bundled separately and embedded as
// compressed source text, compiled only when such a command runs: light commands never parse them.
import { chmodSync } from 'node:fs';
import { brotliCompressSync, constants } from 'node:zlib';
import { build } from 'esbuild';

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

const heavy = await build({
  ...common,
  entryPoints: ['src/heavy.ts'],
  format: 'cjs',
  write: false,
  // The embedding module hands over its own URL (proto/ is found next to the bundle).
  define: { 'import.meta.url': '__nbEntryUrl' },
});
const cjs = heavy.outputFiles[0].text;
const wrapped = `(function (module, require, __nbEntryUrl) { var exports = module.exports;\n${cjs}\n})`;

await build({
  ...common,
  entryPoints: ['src/cli.ts'],
  outfile: 'dist/node-bootstrap.mjs',
  format: 'esm',
  // Compressed: a short base64 literal costs the light commands far less to read and scan.
  define: {
    __NB_HEAVY__: JSON.stringify(
      brotliCompressSync(wrapped, { params: { [constants.BROTLI_PARAM_QUALITY]: 9 } }).toString('base64'),
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
chmodSync('dist/node-bootstrap.mjs', 0o755);
