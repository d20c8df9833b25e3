// Helpers for the browser tests: build and run the real switchboard binary
// on a loopback port, launch Debian's Chromium through playwright-core, and
// call the server's HTTP API.
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

export const repo = fileURLToPath(new URL('../../', import.meta.url));
export const chromePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

// The flags this machine's closed network needs: without the
// background-networking ones Chromium keeps dialling Google's hosts.
export const chromeArgs = [
  '--headless',
  '--no-sandbox',
  '--no-first-run',
  '--disable-gpu',
  '--disable-quic',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

function findGo() {
  for (const go of [process.env.GO, 'go', '/usr/local/go/bin/go']) {
    if (!go) continue;
    try {
      execFileSync(go, ['version'], { stdio: 'ignore' });
      return go;
    } catch {}
  }
  return null;
}

/**
 * requirements returns what is missing to run the browser tests (Chromium,
 * Go), as a message, or '' when everything is there. On CI (CI set) a
 * missing tool fails the run; elsewhere the tests are skipped.
 */
export function requirements() {
  const missing = [];
  if (!existsSync(chromePath)) missing.push(`Chromium at ${chromePath} (apt-get install -y chromium, or set CHROMIUM_PATH)`);
  if (!process.env.SWITCHBOARD_BIN && !findGo()) missing.push('Go (/usr/local/go/bin/go) to build the server');
  return missing.join('; ');
}

let built;

/** serverBinary returns $SWITCHBOARD_BIN or a binary built from this repository. */
export function serverBinary() {
  if (process.env.SWITCHBOARD_BIN) return process.env.SWITCHBOARD_BIN;
  if (built) return built;
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-e2e-'));
  const bin = join(dir, 'switchboard');
  execFileSync(findGo(), ['build', '-o', bin, './cmd/switchboard'], { cwd: repo, stdio: ['ignore', 'inherit', 'inherit'] });
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return (built = bin);
}

/** A running `switchboard serve`. */
export class Server {
  constructor(proc, addr, log, key) {
    this.proc = proc;
    this.addr = addr;
    this.base = `http://${addr}`;
    this.log = log;
    this.key = key;
    this.exited = new Promise((resolve) => proc.once('exit', resolve));
  }

  /** stop sends signal (SIGTERM drains) and waits for the exit. */
  async stop(signal = 'SIGTERM') {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(signal);
    await this.exited;
  }

  /** api calls the server API from this process (loopback, no Origin). */
  async api(method, path, body) {
    const headers = {};
    if (this.key) headers.Authorization = `Bearer ${this.key}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(this.base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const json = await res.json();
    assert.ok(res.ok, `${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
    return json;
  }

  /** stats is GET /api/stats's "node". */
  async stats() {
    return (await this.api('GET', '/api/stats')).node;
  }
}

/**
 * startServer runs `switchboard serve` on a free loopback port with args
 * and resolves once it logs that it started. With key, the API (and the
 * dashboard) need it.
 */
export function startServer({ args = [], key } = {}) {
  const bin = serverBinary();
  const env = { ...process.env };
  if (key) env.SWITCHBOARD_API_KEY = key;
  else delete env.SWITCHBOARD_API_KEY;
  return new Promise((resolve, reject) => {
    const proc = spawn(bin, ['serve', '--listen', '127.0.0.1:0', '--log-format', 'json', '--drain-timeout', '2s', ...args], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env,
    });
    const log = [];
    let rest = '';
    let started = false;
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`switchboard did not start within 20 s:\n${log.join('\n')}`));
    }, 20000);
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (chunk) => {
      const lines = (rest + chunk).split('\n');
      rest = lines.pop();
      for (const line of lines) {
        if (log.length < 1000) log.push(line);
        if (started) continue;
        let j;
        try {
          j = JSON.parse(line);
        } catch {
          continue;
        }
        if (j.msg === 'switchboard started') {
          started = true;
          clearTimeout(timer);
          resolve(new Server(proc, j.listen, log, key));
        }
      }
    });
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (!started) reject(new Error(`switchboard exited (${code ?? signal}) before it started:\n${log.join('\n')}`));
    });
  });
}

/** launch starts headless Chromium. */
export async function launch() {
  const { chromium } = await import('playwright-core');
  return chromium.launch({ executablePath: chromePath, args: chromeArgs, timeout: 60000 });
}

/**
 * watch records a page's uncaught errors and console errors, so that a
 * test can assert that the page ran cleanly.
 */
export function watch(page) {
  const errors = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  return errors;
}

/** waitFor polls check until it returns a truthy value, for at most ms. */
export async function waitFor(check, what, ms = 15000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** redisMissing says what to install when redis-server is not on PATH, else ''. */
export function redisMissing() {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
    return '';
  } catch {
    return 'redis-server (apt-get install -y redis-server)';
  }
}

/** freePort asks the kernel for a loopback port that is free now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** listening reports whether something accepts connections on 127.0.0.1:port. */
export function listening(port) {
  return new Promise((resolve) => {
    const s = new Socket();
    s.once('error', () => resolve(false));
    s.connect(port, '127.0.0.1', () => {
      s.end();
      resolve(true);
    });
  });
}

/** startRedis runs a private redis-server (no persistence) on a free port. */
export async function startRedis() {
  const port = await freePort();
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const exited = new Promise((r) => proc.once('exit', r));
  await waitFor(() => listening(port), 'redis-server to listen', 10000);
  return {
    addr: `127.0.0.1:${port}`,
    stop: async () => {
      proc.kill('SIGTERM');
      await exited;
    },
  };
}
