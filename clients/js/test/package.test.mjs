// The package as npm publishes it: `npm pack` makes the tarball, which is
// checked by @arethetypeswrong/cli and installed (offline: it has no
// dependencies) into fresh projects outside the repository. Those import it
// in Node, as ESM and with require, and type-check consumer files with
// strict tsc under moduleResolution nodenext, node16 and bundler: correct
// code must compile, and a misspelt option must not (types that collapsed to
// any would let it through).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { root } from '../scripts/bundle.mjs';

const tsc = join(root, 'node_modules/typescript/bin/tsc');
const attw = join(root, 'node_modules/@arethetypeswrong/cli/dist/index.js');
let dir, tgz;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'switchboard-pack-'));
  // npm test has just built dist/; --ignore-scripts skips prepack's rebuild.
  const out = execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: root, encoding: 'utf8' });
  tgz = join(dir, JSON.parse(out)[0].filename);
});

after(() => rmSync(dir, { recursive: true, force: true }));

// project makes a fresh npm project with the tarball installed.
function project(name, pkg, files) {
  const p = join(dir, name);
  mkdirSync(p);
  writeFileSync(join(p, 'package.json'), JSON.stringify({ name, private: true, ...pkg }));
  execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--ignore-scripts', tgz], { cwd: p, stdio: ['ignore', 'ignore', 'inherit'] });
  for (const [f, src] of Object.entries(files)) writeFileSync(join(p, f), src);
  return p;
}

const run = (cmd, args, cwd) => spawnSync(cmd, args, { cwd, encoding: 'utf8' });

test('the tarball has the entries, declarations, README and package name', () => {
  const list = execFileSync('tar', ['-tzf', tgz], { encoding: 'utf8' }).split('\n');
  for (const f of ['package/dist/index.js', 'package/dist/index.cjs', 'package/dist/index.d.ts', 'package/dist/index.d.cts', 'package/dist/client.d.ts', 'package/dist/client.d.cts', 'package/README.md', 'package/LICENSE', 'package/package.json'])
    assert.ok(list.includes(f), `${f} is not in the tarball`);
  const pkg = JSON.parse(execFileSync('tar', ['-xzOf', tgz, 'package/package.json'], { encoding: 'utf8' }));
  assert.equal(pkg.name, '@switchboard-rt/client');
  assert.equal(pkg.license, 'Apache-2.0');
  assert.deepEqual(pkg.peerDependenciesMeta, { ws: { optional: true } });
  assert.deepEqual(pkg.dependencies ?? {}, {}, 'no runtime dependencies');
});

test('attw finds no problem in the tarball (node10, node16 CJS and ESM, bundler)', () => {
  const r = run(process.execPath, [attw, tgz, '--format', 'json'], dir);
  assert.equal(r.status, 0, `attw failed:\n${r.stdout}\n${r.stderr}`);
  const res = JSON.parse(r.stdout);
  assert.deepEqual(res.problems, {}, 'attw problems');
});

test('a fresh project imports it in Node (ESM and require) without ws installed', () => {
  const p = project('node-app', { type: 'module' }, {
    'esm.mjs': `import { Client, closeInfo, SwitchboardError } from '@switchboard-rt/client';
class WS { constructor(url) { this.url = url; } send() {} close() {} }
const c = new Client('ws://127.0.0.1:1/ws', { WebSocket: WS, reconnect: false });
const s = c.subscribe('chat:lobby', { getToken: async () => 't' });
console.log(JSON.stringify({ t: typeof Client, state: c.state, room: s.room, restart: closeInfo(1012).reconnect, err: new SwitchboardError('x', 'y') instanceof Error }));`,
    'cjs.cjs': `const { Client, closeInfo } = require('@switchboard-rt/client');
console.log(JSON.stringify({ t: typeof Client, restart: closeInfo(1012).reconnect }));`,
  });
  const esm = run(process.execPath, ['esm.mjs'], p);
  assert.equal(esm.status, 0, esm.stderr);
  assert.deepEqual(JSON.parse(esm.stdout), { t: 'function', state: 'closed', room: 'chat:lobby', restart: true, err: true });
  const cjs = run(process.execPath, ['cjs.cjs'], p);
  assert.equal(cjs.status, 0, cjs.stderr);
  assert.deepEqual(JSON.parse(cjs.stdout), { t: 'function', restart: true });
  assert.throws(() => readFileSync(join(p, 'node_modules/ws/package.json')), /ENOENT/, 'ws was installed: it must be an optional peer');
});

// A consumer file that must compile under strict tsc. The @ts-expect-error
// lines fail the compile if their line is not an error: with types that
// are any, they would not be.
const good = `import { Client, Subscription, SwitchboardError } from '@switchboard-rt/client';
import type { ClientOptions, Envelope, SubscribedData } from '@switchboard-rt/client';
interface Chat { text: string; }
const opts: ClientOptions = { token: 't', reconnect: true, maxAttempts: 5 };
const c = new Client('ws://127.0.0.1:1/ws', opts);
c.on('open', (info) => info.user_id.toUpperCase());
c.on('error', (e: SwitchboardError) => e.code);
const room: Subscription<Chat> = c.subscribe<Chat>('chat:lobby', (ev: Envelope<Chat>) => ev.data?.text.toUpperCase());
room.on('message', (ev) => ev.data?.text.length);
room.on('subscribed', (d: SubscribedData) => d.expires_at ?? d.members);
const priv = c.subscribe('secret:1', { getToken: async (r: string) => 'token-for-' + r, handler: (ev) => ev.data });
// @ts-expect-error: the data of a Chat room has no field nope
room.on('message', (ev) => ev.data?.nope);
// @ts-expect-error: connection_established data has no field nope
c.on('open', (info) => info.nope);
// @ts-expect-error: getToken returns a string
c.subscribe('secret:2', { getToken: async () => 42 });
export const used = [priv.room, c.state];
`;
const bad = `import { Client } from '@switchboard-rt/client';
export const c = new Client('ws://127.0.0.1:1/ws', { reconect: false });
`;

for (const [mode, tsconfig, pkg, ext] of [
  ['nodenext', { module: 'nodenext', moduleResolution: 'nodenext' }, { type: 'module' }, 'ts'],
  ['node16', { module: 'node16', moduleResolution: 'node16' }, { type: 'module' }, 'ts'],
  ['node16 from CommonJS', { module: 'node16', moduleResolution: 'node16' }, {}, 'cts'],
  ['bundler', { module: 'esnext', moduleResolution: 'bundler' }, {}, 'ts'],
]) {
  test(`types under moduleResolution ${mode}: strict consumer compiles, a wrong option does not`, () => {
    const p = project('types-' + mode.replace(/\W+/g, '-'), pkg, {
      'tsconfig.json': JSON.stringify({ compilerOptions: { ...tsconfig, target: 'es2022', lib: ['es2022'], strict: true, noEmit: true, types: [], skipLibCheck: false }, files: [`good.${ext}`] }),
      [`good.${ext}`]: good,
      [`bad.${ext}`]: bad,
    });
    const ok = run(process.execPath, [tsc, '-p', '.'], p);
    assert.equal(ok.status, 0, `the correct consumer does not compile:\n${ok.stdout}${ok.stderr}`);
    writeFileSync(join(p, 'tsconfig.json'), JSON.stringify({ compilerOptions: { ...tsconfig, target: 'es2022', lib: ['es2022'], strict: true, noEmit: true, types: [] }, files: [`bad.${ext}`] }));
    const ko = run(process.execPath, [tsc, '-p', '.'], p);
    assert.notEqual(ko.status, 0, 'a misspelt option compiled: the types are any');
    assert.match(ko.stdout, /error TS2561: .*'reconect' does not exist in type 'ClientOptions'/);
  });
}
