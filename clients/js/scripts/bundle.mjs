// The browser bundle and its size, shared by the build and the size test so
// that both measure the same thing.
import * as esbuild from 'esbuild';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';

export const root = fileURLToPath(new URL('..', import.meta.url));

/** The size budget of the minified, gzipped browser bundle, in bytes. */
export const MAX_GZIP = 8 * 1024;

const common = {
  absWorkingDir: root,
  entryPoints: ['src/index.ts'],
  bundle: true,
  format: 'esm',
  target: 'es2020',
  write: false,
  logLevel: 'silent',
};

/** browserBundle builds the minified browser bundle in memory. */
export async function browserBundle() {
  const res = await esbuild.build({ ...common, platform: 'browser', minify: true, legalComments: 'none' });
  const code = res.outputFiles[0].contents;
  // gzip at its default level (6), as `gzip file` does.
  return { code, min: code.length, gzip: gzipSync(code).length };
}

/**
 * moduleBundle builds the readable build for Node and bundlers: ESM, or
 * with format "cjs" the CommonJS entry for require().
 */
export async function moduleBundle(format = 'esm') {
  const res = await esbuild.build({ ...common, platform: 'neutral', format });
  return res.outputFiles[0].contents;
}
