// npm run build: dist/index.js (readable ESM), dist/switchboard.min.js (the
// minified browser bundle whose size is budgeted), dist/*.d.ts (tsc).
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { browserBundle, moduleBundle, root, MAX_GZIP } from './bundle.mjs';

const dist = join(root, 'dist');
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist);
writeFileSync(join(dist, 'index.js'), await moduleBundle());
const b = await browserBundle();
writeFileSync(join(dist, 'switchboard.min.js'), b.code);
execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json', '--emitDeclarationOnly'], {
  cwd: root,
  stdio: 'inherit',
});
const kib = (n) => (n / 1024).toFixed(2) + ' KiB';
console.log(`dist/switchboard.min.js: min ${b.min} B (${kib(b.min)}), min+gzip ${b.gzip} B (${kib(b.gzip)}); budget ${kib(MAX_GZIP)}`);
if (b.gzip > MAX_GZIP) {
  console.error('the bundle is over its size budget');
  process.exit(1);
}
