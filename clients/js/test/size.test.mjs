// The browser bundle (minified by esbuild, gzipped) must stay within 8 KiB,
// and README.md must show the size it has now.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { browserBundle, root, MAX_GZIP } from '../scripts/bundle.mjs';

const b = await browserBundle();

test(`min+gzip bundle is at most ${MAX_GZIP} bytes`, () => {
  assert.ok(b.gzip <= MAX_GZIP, `min+gzip ${b.gzip} B is over the ${MAX_GZIP} B budget`);
  assert.ok(b.min > 1000 && b.gzip > 500, `suspiciously small bundle: ${b.min} B`);
});

test('README.md states the measured sizes', () => {
  const readme = readFileSync(root + 'README.md', 'utf8');
  for (const [what, n] of [
    ['min', b.min],
    ['min+gzip', b.gzip],
  ]) {
    assert.ok(readme.includes(`${n} B`), `README.md does not state the ${what} size: update it to ${n} B (npm run build prints the sizes)`);
  }
});
