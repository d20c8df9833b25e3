// The admin dashboard: counters, charts and rooms of this node, pushed
// over /admin/ws once a second (protocol: server/admin.go). Charts are drawn
// on canvas here, without a library.
const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
};
const fmt = (n) => (n == null ? '–' : Number.isInteger(n) ? n.toLocaleString('en') : n.toFixed(1));
// tick labels a chart's axis: 0.25 stays 0.25, 1500 becomes 1.5k.
const tick = (n) => (n >= 1000 ? Number((n / 1000).toPrecision(3)) + 'k' : String(Number(n.toPrecision(3))));

const KEEP = 60; // samples in the charts: a minute at one a second
const keyStore = 'switchboard.admin.apiKey';
const state = { samples: [], closeNames: {}, last: null, ws: null, retry: null, reqs: 0 };
// For the browser tests: the latest snapshot and rates.
window.admin = state;

function setStatus(text, s) {
  $('status').textContent = text;
  $('status').dataset.state = s;
}

function connect() {
  clearTimeout(state.retry);
  setStatus('connecting', 'connecting');
  const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/admin/ws');
  state.ws = ws;
  ws.onopen = () => ws.send(JSON.stringify({ type: 'auth', key: sessionStorage.getItem(keyStore) || '' }));
  ws.onmessage = (e) => {
    let m;
    try {
      m = JSON.parse(e.data);
    } catch {
      return;
    }
    if (m.type === 'welcome') {
      $('node').textContent = m.data.node;
      state.closeNames = m.data.close_codes || {};
      // The dashboard shows only once the node has accepted this page
      // (with the key, or from loopback when the node has none).
      $('key-form').hidden = true;
      $('waiting').hidden = true;
      $('dashboard').hidden = false;
      setStatus('live', 'live');
    } else if (m.type === 'snapshot') onSnapshot(m.data);
    else if (m.type === 'result') $('action').textContent = `disconnected ${m.data.connections} connection(s) of ${state.kicks[m.id]}`;
    else if (m.type === 'error') $('action').textContent = `error ${m.data.code}: ${m.data.message}`;
  };
  ws.onclose = (e) => {
    if (state.ws !== ws) return;
    if (e.code === 4001 || e.code === 4003) {
      // Refused: ask for a key (4001) or explain (4003); no retry loop.
      setStatus(e.code === 4001 ? 'key needed' : 'refused', 'closed');
      $('key-why').textContent = e.reason;
      $('key-form').hidden = false;
      $('waiting').hidden = true;
      $('dashboard').hidden = true;
      return;
    }
    const wait = e.code === 1012 ? 1000 : 2000;
    setStatus(`disconnected (${e.code}); reconnecting in ${wait / 1000} s`, 'connecting');
    state.retry = setTimeout(connect, wait);
  };
}

function onSnapshot(snap) {
  const prev = state.last;
  state.last = snap;
  const s = snap.stats;
  const dt = prev ? (snap.ts - prev.ts) / 1000 : 0;
  const rate = (k) => (prev && dt > 0 ? Math.max(0, (s[k] - prev.stats[k]) / dt) : null);
  const sample = {
    ts: snap.ts,
    connections: s.connections,
    rooms: s.rooms,
    in: rate('messages_in'),
    out: rate('messages_out'),
    drops: rate('queue_drops'),
    slow: rate('slow_consumer_disconnects'),
  };
  state.rates = { messages_in: sample.in, messages_out: sample.out };
  state.samples.push(sample);
  if (state.samples.length > KEEP) state.samples.shift();

  for (const e of document.querySelectorAll('[data-stat]')) e.textContent = fmt(s[e.dataset.stat]);
  for (const e of document.querySelectorAll('[data-rate]')) e.textContent = fmt(state.rates[e.dataset.rate]);
  drawAll();
  renderRooms(snap);
  if (snap.draining) setStatus('draining', 'connecting');
}

// ---- Charts ----

const COLORS = { line: '#2457c5', in: '#2457c5', out: '#1f9d6b', drops: '#d97706', slow: '#b3261e', grid: '#e5e7eb', text: '#6b7280' };

// setup sizes a canvas for the screen's pixel ratio and returns its
// context and size in CSS pixels.
function setup(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 300;
  const h = canvas.clientHeight || 150;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.font = '11px system-ui, sans-serif';
  return { ctx, w, h };
}

// niceMax rounds a maximum up to 1, 2 or 5 times a power of ten.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

// lineChart draws series (each {key, color}) of state.samples, newest on
// the right, over a time axis of KEEP samples.
function lineChart(canvas, series) {
  const { ctx, w, h } = setup(canvas);
  const left = 40, right = 8, top = 8, bottom = 18;
  const pw = w - left - right, ph = h - top - bottom;
  const samples = state.samples;
  let max = 0;
  for (const s of samples) for (const { key } of series) if (s[key] != null) max = Math.max(max, s[key]);
  max = niceMax(max);
  ctx.strokeStyle = COLORS.grid;
  ctx.fillStyle = COLORS.text;
  ctx.lineWidth = 1;
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (let i = 0; i <= 4; i++) {
    const y = top + ph - (ph * i) / 4;
    ctx.beginPath();
    ctx.moveTo(left, Math.round(y) + 0.5);
    ctx.lineTo(left + pw, Math.round(y) + 0.5);
    ctx.stroke();
    ctx.fillText(tick((max * i) / 4), left - 5, y);
  }
  ctx.textAlign = 'left';
  ctx.textBaseline = 'alphabetic';
  ctx.fillText('−1 min', left, h - 4);
  ctx.textAlign = 'right';
  ctx.fillText('now', left + pw, h - 4);
  const x = (i) => left + pw - ((samples.length - 1 - i) * pw) / (KEEP - 1);
  const y = (v) => top + ph - (v / max) * ph;
  ctx.lineWidth = 2;
  ctx.lineJoin = 'round';
  for (const { key, color } of series) {
    ctx.strokeStyle = color;
    ctx.beginPath();
    let drawing = false;
    samples.forEach((s, i) => {
      const v = s[key];
      if (v == null) {
        drawing = false;
        return;
      }
      if (drawing) ctx.lineTo(x(i), y(v));
      else ctx.moveTo(x(i), y(v));
      drawing = true;
    });
    ctx.stroke();
  }
}

// barChart draws the close-code counters as horizontal bars.
function barChart(canvas, closes) {
  const rows = Object.entries(closes).sort((a, b) => b[1] - a[1]);
  // As tall as its rows: up to 8 bars of 22 px.
  canvas.style.height = `${Math.max(1, Math.min(rows.length, 8)) * 22 + 6}px`;
  const { ctx, w, h } = setup(canvas);
  if (!rows.length) {
    ctx.fillStyle = COLORS.text;
    ctx.fillText('No connection has closed yet.', 8, 20);
    return;
  }
  const shown = rows.slice(0, 8);
  const rowH = Math.min(22, (h - 4) / shown.length);
  const labelW = 170;
  const max = Math.max(...shown.map((r) => r[1]));
  ctx.textBaseline = 'middle';
  shown.forEach(([code, n], i) => {
    const y = 2 + i * rowH;
    const name = state.closeNames[code] || (code >= 4000 ? 'application' : 'other');
    ctx.fillStyle = COLORS.text;
    ctx.textAlign = 'left';
    ctx.fillText(`${code} ${name}`, 4, y + rowH / 2);
    const bw = Math.max(2, ((w - labelW - 60) * n) / max);
    ctx.fillStyle = code === '4005' ? COLORS.slow : code === '1006' ? COLORS.drops : COLORS.line;
    ctx.fillRect(labelW, y + 3, bw, rowH - 6);
    ctx.fillStyle = COLORS.text;
    ctx.fillText(fmt(n), labelW + bw + 6, y + rowH / 2);
  });
}

function drawAll() {
  lineChart($('chart-conns'), [{ key: 'connections', color: COLORS.line }]);
  lineChart($('chart-msgs'), [
    { key: 'in', color: COLORS.in },
    { key: 'out', color: COLORS.out },
  ]);
  lineChart($('chart-rooms'), [{ key: 'rooms', color: COLORS.line }]);
  lineChart($('chart-slow'), [
    { key: 'drops', color: COLORS.drops },
    { key: 'slow', color: COLORS.slow },
  ]);
  if (state.last) barChart($('chart-closes'), state.last.stats.closes || {});
}
window.addEventListener('resize', drawAll);

// ---- Rooms ----

state.kicks = {};
function kick(user) {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return;
  const id = String(++state.reqs);
  state.kicks[id] = user;
  $('action').textContent = `disconnecting ${user}…`;
  state.ws.send(JSON.stringify({ type: 'disconnect_user', id, user }));
}

function renderRooms(snap) {
  const body = $('rooms');
  body.replaceChildren();
  for (const r of snap.rooms) {
    const tr = el('tr');
    tr.dataset.room = r.name;
    tr.append(el('td', '', r.name), el('td', 'num', fmt(r.members)));
    const td = el('td');
    const ul = el('ul');
    for (const c of r.connections) {
      const li = el('li');
      const b = el('button', 'kick', 'Kick');
      b.title = 'Close every connection of this user with 4006 (kicked), as POST /api/users/{user}/disconnect does';
      b.dataset.user = c.user_id;
      b.addEventListener('click', () => kick(c.user_id));
      li.append(el('span', '', c.user_id), el('span', 'conn', c.connection_id), b);
      ul.append(li);
    }
    if (r.members > r.connections.length) ul.append(el('li', 'muted', `and ${r.members - r.connections.length} more`));
    td.append(ul);
    tr.append(td);
    body.append(tr);
  }
  if (!snap.rooms.length) {
    const tr = el('tr');
    const td = el('td', 'muted', 'No rooms have members on this node.');
    td.colSpan = 3;
    tr.append(td);
    body.append(tr);
  }
  $('rooms-note').textContent = snap.rooms_total > snap.rooms.length ? `(the ${snap.rooms.length} largest of ${snap.rooms_total})` : '';
}

$('key-form').addEventListener('submit', (e) => {
  e.preventDefault();
  sessionStorage.setItem(keyStore, $('key').value.trim());
  $('key').value = '';
  connect();
});

drawAll();
connect();
