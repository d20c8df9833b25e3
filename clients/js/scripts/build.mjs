// npm run build: dist/index.js (readable ESM), dist/index.cjs (the same as
// CommonJS, for require), dist/switchboard.min.js (the minified browser
// bundle whose size is budgeted), dist/*.d.ts (tsc) and their CommonJS twins
// dist/*.d.cts.
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { browserBundle, moduleBundle, root, MAX_GZIP } from './bundle.mjs';

const dist = join(root, 'dist');
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist);
// npm puts a LICENSE at the package's root into the tarball; the one
// licence file lives at the repository's root (this copy is ignored by git).
copyFileSync(join(root, '../../LICENSE'), join(root, 'LICENSE'));
writeFileSync(join(dist, 'index.js'), await moduleBundle());
writeFileSync(join(dist, 'index.cjs'), await moduleBundle('cjs'));
const b = await browserBundle();
writeFileSync(join(dist, 'switchboard.min.js'), b.code);
execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json', '--emitDeclarationOnly'], {
  cwd: root,
  stdio: 'inherit',
});
// tsc copies the sources' extensionless imports ('./emitter') into the
// declarations; under "moduleResolution": "node16"/"nodenext" such an import
// does not resolve and every type becomes any. Name the file, as Node's ESM
// loader requires: './emitter.js' here, './emitter.cjs' in the .d.cts twin
// that describes the CommonJS entry.
const rel = /(from\s+|import\()(['"])(\.\.?\/[^'"]+?)(\.js)?\2/g;
for (const f of readdirSync(dist).filter((f) => f.endsWith('.d.ts'))) {
  const src = readFileSync(join(dist, f), 'utf8');
  writeFileSync(join(dist, f), src.replace(rel, (_, kw, q, p) => `${kw}${q}${p}.js${q}`));
  writeFileSync(join(dist, f.replace(/\.d\.ts$/, '.d.cts')), src.replace(rel, (_, kw, q, p) => `${kw}${q}${p}.cjs${q}`));
}
const kib = (n) => (n / 1024).toFixed(2) + ' KiB';
console.log(`dist/switchboard.min.js: min ${b.min} B (${kib(b.min)}), min+gzip ${b.gzip} B (${kib(b.gzip)}); budget ${kib(MAX_GZIP)}`);
if (b.gzip > MAX_GZIP) {
  console.error('the bundle is over its size budget');
  process.exit(1);
}
