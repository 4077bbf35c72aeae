/** Loads heavy.ts: from the bundle's embedded source (compiled on first use), or as a module in development. */
import { createRequire } from 'node:module';
import { constants, Script } from 'node:vm';
import { brotliDecompressSync } from 'node:zlib';

type Heavy = typeof import('./heavy.js');

/** Set by scripts/build.mjs: the heavy part as a CommonJS function expression, brotli + base64. */
declare const __NB_HEAVY__: string | undefined;

let loaded: Promise<Heavy> | undefined;

export function heavy(): Promise<Heavy> {
  loaded ??=
    typeof __NB_HEAVY__ === 'string' ? Promise.resolve(evaluate(__NB_HEAVY__)) : import('./heavy.js');
  return loaded;
}

function evaluate(packed: string): Heavy {
  const source = brotliDecompressSync(Buffer.from(packed, 'base64')).toString('utf8');
  const fn = new Script(source, {
    filename: 'node-bootstrap:heavy.cjs',
    // The AWS SDK imports a few Node built-ins dynamically.
    importModuleDynamically: constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
  }).runInThisContext() as (module: { exports: unknown }, require: NodeJS.Require, entryUrl: string) => void;
  const module = { exports: {} };
  fn(module, createRequire(import.meta.url), import.meta.url);
  return module.exports as Heavy;
}
