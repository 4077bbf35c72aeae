// Builds the one shipped artifact: dist/node-bootstrap.mjs (a single ESM bundle).
import { chmodSync } from 'node:fs';
import { build } from 'esbuild';

await build({
  entryPoints: ['src/cli.ts'],
  outfile: 'dist/node-bootstrap.mjs',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  mainFields: ['module', 'main'],
  // dbus-next's optional native transports; we use its pure-JS unix socket transport.
  external: ['usocket', 'x11'],
  // CommonJS dependencies inside an ESM bundle need a require().
  banner: {
    js: "import { createRequire as __nbCreateRequire } from 'node:module'; const require = __nbCreateRequire(import.meta.url);",
  },
  legalComments: 'none',
  logLevel: 'warning',
});
chmodSync('dist/node-bootstrap.mjs', 0o755);
