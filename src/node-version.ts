/**
 * The bundle's first module (imported first by cli.ts, so it runs before any other module's code):
 * the bundle targets Node.js 20 (scripts/build.mjs), and an older runtime, picked up from a PATH or
 * an alternatives link, would fail later with a confusing error. Say so plainly instead.
 */
const major = Number(process.versions.node.split('.')[0]);
if (!(major >= 20)) {
  process.stderr.write(
    `node-bootstrap: needs Node.js 20 or newer, but ${process.execPath} is ${process.versions.node}; install Node.js 20 or newer (AL2023: nodejs20 or nodejs22; Debian/Ubuntu: nodejs >= 20)\n`,
  );
  process.exit(69);
}

export {};
