// Helpers for tests against the real Go server: build it once per process,
// start it on a loopback port, stop or restart it, and wait for conditions
// with a deadline.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer, connect } from 'node:net';

export const repo = fileURLToPath(new URL('../../../', import.meta.url));

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

let built;

/**
 * serverBinary returns the path of a switchboard binary: $SWITCHBOARD_BIN,
 * or one built from this repository into a temporary directory. It returns
 * null when Go is not installed.
 */
export function serverBinary() {
  if (process.env.SWITCHBOARD_BIN) return process.env.SWITCHBOARD_BIN;
  if (built) return built;
  const go = findGo();
  if (!go) return null;
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-js-'));
  const bin = join(dir, 'switchboard');
  execFileSync(go, ['build', '-o', bin, './cmd/switchboard'], { cwd: repo, stdio: ['ignore', 'inherit', 'inherit'] });
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return (built = bin);
}

/**
 * requireOrSkip skips the test when `ok` is false, except on CI
 * (CI=true), where a missing tool must fail the run instead.
 */
export function requireOrSkip(t, ok, what) {
  if (ok) return true;
  if (process.env.CI === 'true') throw new Error(`${what} is required on CI`);
  t.skip(`${what} is not available`);
  return false;
}

/** A running switchboard process. */
export class Server {
  constructor(proc, addr, log) {
    this.proc = proc;
    this.addr = addr;
    this.url = `ws://${addr}/ws`;
    this.log = log;
    this.exited = new Promise((resolve) => proc.once('exit', resolve));
  }

  /** stop sends signal (SIGTERM drains: clients get 1012) and waits for the exit. */
  async stop(signal = 'SIGTERM') {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(signal);
    await this.exited;
  }
}

/**
 * startServer runs `switchboard serve` on listen (default: a free loopback
 * port) and resolves once it logs that it started.
 */
export function startServer(bin, { listen = '127.0.0.1:0', args = [] } = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(bin, ['serve', '--listen', listen, '--log-format', 'json', '--no-demo', '--drain-timeout', '2s', ...args], {
      stdio: ['ignore', 'ignore', 'pipe'],
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
        if (log.length < 500) log.push(line);
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
          resolve(new Server(proc, j.listen, log));
        }
      }
    });
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (!started) reject(new Error(`switchboard exited (${code ?? signal}) before it started:\n${log.join('\n')}`));
    });
  });
}

/** deadURL is a ws:// URL of a loopback port nothing listens on. */
export async function deadURL() {
  const srv = createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return `ws://127.0.0.1:${port}/ws`;
}

/** waitFor polls check until it returns a truthy value, for at most ms. */
export async function waitFor(check, what, ms = 15000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** next resolves with the next `event` from emitter that satisfies pred. */
export function next(emitter, event, pred = () => true, ms = 15000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out after ${ms} ms waiting for event ${event}`));
    }, ms);
    const off = emitter.on(event, (x) => {
      if (!pred(x)) return;
      clearTimeout(timer);
      off();
      resolve(x);
    });
  });
}

/**
 * tcpProxy forwards loopback connections to target ("host:port"). cut()
 * destroys every open connection (the peers see the TCP connection die, no
 * close frame); while `refuse` is set, new connections are closed at once.
 */
export async function tcpProxy(target) {
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const open = new Set();
  const proxy = { refuse: false, accepted: 0 };
  const srv = createServer((down) => {
    proxy.accepted++;
    if (proxy.refuse) return down.destroy();
    const up = connect(port, host);
    open.add(down).add(up);
    const done = () => {
      down.destroy();
      up.destroy();
      open.delete(down);
      open.delete(up);
    };
    down.on('error', done).on('close', done);
    up.on('error', done).on('close', done);
    down.pipe(up);
    up.pipe(down);
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  proxy.addr = `127.0.0.1:${srv.address().port}`;
  proxy.url = `ws://${proxy.addr}/ws`;
  proxy.cut = () => open.forEach((s) => s.destroy());
  proxy.close = () =>
    new Promise((r) => {
      proxy.cut();
      srv.close(r);
    });
  return proxy;
}

export { existsSync };
