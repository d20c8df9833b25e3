// The client's close-code table must agree with the server's, which lives in
// protocol/codes.go (and is rendered in docs/protocol.md). This test parses
// the Go source, so a code added or changed on one side only fails here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { closeCodes, closeInfo } from '../dist/index.js';

const repo = fileURLToPath(new URL('../../../', import.meta.url));

// parseGo returns the rows of closeTable, with the codes resolved through
// the const block.
export function parseGo(src) {
  const consts = new Map();
  for (const m of src.matchAll(/^\s*(Close\w+)\s+CloseCode\s*=\s*(\d+)/gm)) consts.set(m[1], Number(m[2]));
  const rows = [];
  for (const m of src.matchAll(/\{(Close\w+),\s*"(\w+)",\s*"(?:[^"\\]|\\.)*",\s*(true|false)\}/g)) {
    assert.ok(consts.has(m[1]), `table row ${m[1]} has no const`);
    rows.push({ code: consts.get(m[1]), name: m[2], reconnect: m[3] === 'true' });
  }
  return { consts, rows };
}

const go = parseGo(readFileSync(repo + 'protocol/codes.go', 'utf8'));

test('the Go table was parsed', () => {
  assert.ok(go.rows.length >= 17, `only ${go.rows.length} rows parsed from protocol/codes.go`);
  assert.equal(go.rows.length, go.consts.size, 'every const has a table row');
});

test('every server close code has the same name and reconnect decision in the client', () => {
  for (const row of go.rows) {
    const js = closeInfo(row.code);
    assert.equal(js.name, row.name, `name of ${row.code}`);
    assert.equal(js.reconnect, row.reconnect, `reconnect after ${row.code} (${row.name})`);
    // Only session_expired needs a new token before reconnecting.
    assert.equal(js.refresh, row.name === 'session_expired', `refresh after ${row.code}`);
  }
});

test('the client table has no code the server lacks, except those only a peer reports', () => {
  const server = new Set(go.rows.map((r) => r.code));
  const extra = closeCodes().filter((c) => !server.has(c.code)).map((c) => c.code);
  // 1005 and 1006 are reported by the WebSocket implementation when a
  // connection ends without a close code; the server never sends them.
  assert.deepEqual(extra, [1005, 1006]);
});

test('codes outside the table follow the server rule (Reconnect: code < 3000)', () => {
  for (const code of [1004, 1010, 1014, 1015, 2000, 3000, 3999, 4002, 4007, 4009, 4999]) {
    assert.equal(closeInfo(code).reconnect, code < 3000, String(code));
  }
});

test('docs/protocol.md lists every server close code with its name', (t) => {
  const path = repo + 'docs/protocol.md';
  if (!existsSync(path)) {
    if (process.env.CI === 'true') assert.fail('docs/protocol.md is missing');
    t.skip('docs/protocol.md is not written yet');
    return;
  }
  const doc = readFileSync(path, 'utf8');
  for (const row of go.rows) {
    const line = doc.split('\n').find((l) => l.startsWith('|') && new RegExp(`\\b${row.code}\\b`).test(l) && l.includes(row.name));
    assert.ok(line, `no table row in docs/protocol.md with ${row.code} and ${row.name}`);
  }
});
