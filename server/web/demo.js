// The demo page: a chat and a live match centre on one Switchboard
// connection, built on the JS SDK (clients/js) that the server embeds and
// serves at /switchboard.min.js. Everything here is what an application
// would write; nothing is private to the demo except the publish button's
// endpoint.
import { Client } from '/switchboard.min.js';

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
};
const str = (v, max = 500) => (typeof v === 'string' ? v : v == null ? '' : String(v)).slice(0, max);
const num = (v) => (Number.isFinite(v) ? v : null);

const sb = new Client((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws');
// For the browser tests and the curious: window.demo.sb is the client.
window.demo = { sb, chat: () => chat, match: () => match };

// ---- Connection state, in words ----
//
// One status line says where the connection stands: connecting,
// connected, reconnecting in N s, or disconnected. Reconnect attempts
// update it in place (with the attempt count and the last close code);
// they add nothing to the chat. A close that ends the connection for good
// (kicked, banned, refused) shows one notice with a Rejoin button, and the
// presence list is cleared: this page is no longer in the room.

let countdown;
let attempt = 0;
let lastClose;
function showState(text, state, detail = '') {
  $('state').textContent = text;
  $('state').dataset.state = state;
  $('state-detail').textContent = detail;
  // Who is here is only known while connected.
  $('members').classList.toggle('stale', state !== 'open');
}
sb.on('state', ({ state }) => {
  clearInterval(countdown);
  if (state === 'open') showState('connected', state);
  else if (state === 'connecting') showState('connecting', state, attempt ? `attempt ${attempt + 1}` : '');
  else if (state === 'closing') showState('disconnecting', state);
  else if (state === 'closed') showState('disconnected', state, lastClose ? `${lastClose.name} (${lastClose.code})` : '');
  // 'reconnecting' is shown by the reconnecting event, which has the delay.
});
sb.on('reconnecting', ({ delay, attempt: n, code }) => {
  attempt = n;
  const until = Date.now() + delay;
  const detail = `attempt ${n + 1}; last close ${code}`;
  const tick = () => {
    const s = Math.ceil((until - Date.now()) / 1000);
    if (s > 0) showState(`reconnecting in ${s} s`, 'reconnecting', detail);
    else if (navigator.onLine === false) showState('reconnecting when the network is back', 'reconnecting', detail);
    else showState('reconnecting', 'reconnecting', detail);
  };
  clearInterval(countdown);
  tick();
  countdown = setInterval(tick, 250);
});
sb.on('open', (info) => {
  attempt = 0;
  lastClose = undefined;
  $('notice').hidden = true;
  $('me').textContent = 'as ' + info.user_id;
  renderMembers();
});

// What a final close means to the person at the page.
function farewell(d) {
  switch (d.code) {
    case 4006:
      return 'You were disconnected by the server (kicked by an administrator or the server API).';
    case 4004:
      return 'You are banned from this server for now, or sent too much too fast.';
    case 4001:
      return 'This server authenticates connections, and the demo has no token: start it with --allow-anonymous to try the demo.';
    case 4003:
      return 'The server closed the connection after repeated refusals.';
    default:
      return d.reconnectFailed
        ? `The server could not be reached after ${attempt} attempts.`
        : `The connection was closed: ${d.name} (${d.code})${d.reason ? ': ' + d.reason : ''}.`;
  }
}

sb.on('close', (d) => {
  lastClose = d;
  if (d.reconnect) return; // the status line tells the attempts
  $('notice-text').textContent = farewell(d);
  $('notice').hidden = false;
  $('me').textContent = '';
  if (chat) chat.members.clear();
  renderMembers();
});
sb.on('error', (e) => {
  if (e.code === 'reconnect_failed' && lastClose) {
    $('notice-text').textContent = farewell({ ...lastClose, reconnectFailed: true });
    return;
  }
  // The error that ends the client repeats the close the notice explains.
  if (sb.state === 'closed' && lastClose && !lastClose.reconnect) return;
  sys(`error ${e.code}: ${e.message}`, 'err');
});
$('rejoin').addEventListener('click', () => {
  $('notice').hidden = true;
  attempt = 0;
  lastClose = undefined;
  sb.connect(); // the chat and the match are subscribed again on open
});

// ---- Chat ----

const names = new Map(); // user id -> the name last seen in their messages
let chat = null; // { room, sub, members: Map(connection id -> user id), ids: Set }

// The name is this tab's (sessionStorage): two tabs are two people.
const nameStore = 'switchboard.demo.name';
let myName = sessionStorage.getItem(nameStore);
if (!myName) {
  myName = 'guest-' + Math.floor(1000 + Math.random() * 9000);
  sessionStorage.setItem(nameStore, myName);
}
$('name').value = myName;

function sys(text, cls = 'sys') {
  const list = $('messages');
  list.append(el('li', cls, text));
  list.scrollTop = list.scrollHeight;
}

const label = (user) => (names.has(user) ? `${names.get(user)} (${user})` : user);
const isMe = (user) => sb.info && user === sb.info.user_id;

function messageItem(ev, past) {
  const data = ev.data && typeof ev.data === 'object' ? ev.data : { text: ev.data };
  const li = el('li', past ? 'past' : '');
  li.dataset.id = ev.id;
  li.append(el('span', 'who', (str(data.name, 32) || ev.user_id || 'server') + (isMe(ev.user_id) ? ' (you)' : '') + ': '));
  li.append(document.createTextNode(str(data.text)));
  li.title = `${ev.user_id || 'server'} · event ${ev.id}`;
  return li;
}

function rememberName(ev) {
  const n = ev.data && typeof ev.data === 'object' ? str(ev.data.name, 32) : '';
  if (n && ev.user_id && names.get(ev.user_id) !== n) {
    names.set(ev.user_id, n);
    renderMembers();
  }
}

function joinChat(room) {
  if (chat && chat.room === room) return;
  if (chat) chat.sub.unsubscribe();
  $('messages').replaceChildren();
  const c = { room, members: new Map(), ids: new Set() };
  chat = c;
  renderMembers();
  c.sub = sb.subscribe(room, (ev) => chat === c && onChatEvent(c, ev));
  c.sub.on('subscribed', (d) => chat === c && onChatSubscribed(c, d));
  c.sub.on('error', (e) => chat === c && sys(`cannot join ${room}: ${e.message}`, 'err'));
  sys(`joining ${room}…`);
}

function onChatSubscribed(c, d) {
  if (!d.resubscribed) sys(`joined ${c.room}`);
  else if (d.recovered === false) sys('reconnected; messages sent meanwhile may be missing');
  else sys(`reconnected; ${d.replayed || 0} missed message(s) recovered`);
  refreshPresence(c);
  if (!d.resubscribed || d.recovered === false) loadChatHistory(c, !d.resubscribed);
}

async function refreshPresence(c) {
  try {
    const p = await c.sub.presence();
    if (chat !== c) return;
    c.members = new Map((p.members || []).map((m) => [m.connection_id, m.user_id]));
    renderMembers();
  } catch (e) {
    sys(`presence: ${e.message}`, 'err');
  }
}

// loadChatHistory shows the room's recent messages. On the first join they
// go above whatever arrived live meanwhile; after a gap, below it.
async function loadChatHistory(c, above) {
  let page;
  try {
    page = await c.sub.history({ limit: 50 });
  } catch (e) {
    if (e.code !== 'not_implemented') sys(`history: ${e.message}`, 'err');
    return;
  }
  if (chat !== c) return;
  const frag = document.createDocumentFragment();
  for (const ev of page.events) {
    if (ev.type !== 'message' || c.ids.has(ev.id)) continue;
    c.ids.add(ev.id);
    rememberName(ev);
    frag.append(messageItem(ev, true));
  }
  const list = $('messages');
  if (above) list.prepend(frag);
  else list.append(frag);
  list.scrollTop = list.scrollHeight;
}

function onChatEvent(c, ev) {
  switch (ev.type) {
    case 'message':
      if (c.ids.has(ev.id)) return;
      c.ids.add(ev.id);
      rememberName(ev);
      $('messages').append(messageItem(ev, false));
      $('messages').scrollTop = $('messages').scrollHeight;
      return;
    case 'user_joined':
      if (ev.data && ev.data.connection_id) c.members.set(ev.data.connection_id, ev.user_id);
      sys(`${label(ev.user_id)} joined`);
      renderMembers();
      return;
    case 'user_left':
      if (ev.data) c.members.delete(ev.data.connection_id);
      sys(`${label(ev.user_id)} left`);
      renderMembers();
      return;
    default:
      sys(`${ev.user_id || 'the server'} sent a ${ev.type} event`);
  }
}

function renderMembers() {
  const ul = $('members');
  ul.replaceChildren();
  if (!chat) return;
  const users = new Map(); // user id -> connections
  for (const u of chat.members.values()) users.set(u, (users.get(u) || 0) + 1);
  for (const [u, n] of [...users].sort((a, b) => a[0].localeCompare(b[0]))) {
    const li = el('li');
    li.dataset.user = u;
    li.append(el('span', '', (names.get(u) || u) + (isMe(u) ? ' (you)' : '') + (n > 1 ? ` ×${n}` : '')));
    if (names.has(u)) li.append(el('span', 'id', u));
    ul.append(li);
  }
  $('count').textContent = `${users.size}`;
}

$('join').addEventListener('submit', (e) => {
  e.preventDefault();
  const name = $('name').value.trim();
  if (name) {
    myName = name;
    sessionStorage.setItem(nameStore, name);
  }
  const room = $('room').value.trim();
  if (room) joinChat(room);
});

$('send').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('text').value.trim();
  if (!text || !chat) return;
  $('text').value = '';
  // Queued while disconnected and sent again after a reconnect with the
  // same id: the server acknowledges it once and never delivers it twice.
  chat.sub.publish({ text, name: myName }).catch((err) => sys(`not sent (${err.code}): ${err.message}`, 'err'));
});

// ---- Match centre ----

let match = null; // { n, room, sub, ids, state, comments, loading, pending }

function watchMatch(n) {
  if (match && match.n === n) return;
  if (match) match.sub.unsubscribe();
  const m = { n, room: 'demo-match:' + n, ids: new Set(), state: {}, comments: [], loading: true, pending: [] };
  match = m;
  $('match-room').textContent = m.room;
  renderMatch(m, false);
  m.sub = sb.subscribe(m.room, (ev) => {
    if (match !== m) return;
    if (m.loading) m.pending.push(ev);
    else applyMatch(m, ev, true);
  });
  // The match's state is the room's history folded: match_data sets it,
  // score_update and commentary change it. Reload it on the first join and
  // whenever events were lost for good; otherwise the SDK replays what was
  // missed and the handler above applies it.
  m.sub.on('subscribed', (d) => {
    if (match === m && (!d.resubscribed || d.recovered === false)) loadMatch(m);
  });
}

async function loadMatch(m) {
  m.loading = true;
  let events = [];
  try {
    events = (await m.sub.history({ limit: 100 })).events;
  } catch (e) {
    $('publish-note').textContent = `history: ${e.message}`;
  }
  if (match !== m) return;
  m.ids.clear();
  m.state = {};
  m.comments = [];
  for (const ev of events) applyMatch(m, ev, false);
  m.loading = false;
  const pending = m.pending;
  m.pending = [];
  for (const ev of pending) applyMatch(m, ev, true);
  renderMatch(m, false);
}

function applyMatch(m, ev, live) {
  if (!ev.id || m.ids.has(ev.id)) return; // join/leave notices have no id
  m.ids.add(ev.id);
  const d = ev.data && typeof ev.data === 'object' ? ev.data : {};
  let goal = false;
  switch (ev.type) {
    case 'match_data':
      m.state = { home_team: d.home_team, away_team: d.away_team, score: d.score, minute: d.minute, status: d.status };
      break;
    case 'score_update':
      goal = live;
      if (d.score) m.state.score = d.score;
      if (d.minute != null) m.state.minute = d.minute;
      if (d.status) m.state.status = d.status;
      break;
    case 'commentary':
      m.comments.push({ id: ev.id, minute: num(d.minute), text: str(d.text) });
      if (m.comments.length > 200) m.comments.shift();
      break;
    default:
      return;
  }
  if (!m.loading) renderMatch(m, goal);
}

function renderMatch(m, goal) {
  const s = m.state;
  $('home').textContent = str(s.home_team, 40) || 'Home';
  $('away').textContent = str(s.away_team, 40) || 'Away';
  const sc = s.score && typeof s.score === 'object' ? s.score : null;
  $('score').textContent = sc ? `${num(sc.home) ?? '–'} : ${num(sc.away) ?? '–'}` : '– : –';
  if (goal) {
    $('score').classList.remove('flash');
    void $('score').offsetWidth; // restart the animation
    $('score').classList.add('flash');
  }
  const minute = num(s.minute);
  $('clock').textContent =
    s.status === 'full_time' ? 'full time'
    : s.status === 'half_time' ? 'half-time'
    : s.status === 'live' ? (minute != null ? `${minute}′` : 'live')
    : 'waiting for kick-off';
  const list = $('commentary');
  list.replaceChildren();
  for (const c of [...m.comments].reverse()) {
    const li = el('li');
    li.dataset.id = c.id;
    li.append(el('span', 'min', c.minute != null ? `${c.minute}′` : ''), document.createTextNode(c.text));
    list.append(li);
  }
  if (!m.comments.length) list.append(el('li', 'muted', m.loading ? 'loading…' : 'No commentary yet: press “Publish a sample update”.'));
}

$('match-id').addEventListener('change', () => watchMatch($('match-id').value));

// The publish button asks the server for the next scripted step. With an
// API key configured the server wants the key (kept for this tab only);
// without one it answers this machine only, like the HTTP API.
const keyStore = 'switchboard.demo.apiKey';
$('publish').addEventListener('click', async () => {
  const btn = $('publish');
  btn.disabled = true;
  const note = $('publish-note');
  try {
    const key = sessionStorage.getItem(keyStore);
    const res = await fetch(`/demo/matches/${encodeURIComponent(match.n)}/next`, {
      method: 'POST',
      headers: key ? { Authorization: 'Bearer ' + key } : {},
    });
    const body = await res.json().catch(() => ({}));
    if (res.ok) {
      note.textContent = `published ${body.events.map((e) => e.type).join(' + ')}`;
      $('key-form').hidden = true;
    } else {
      note.textContent =
        res.status === 401 ? 'This server has an API key: enter it to publish.' : (body.error && body.error.message) || `HTTP ${res.status}`;
      if (res.status === 401 || res.status === 403) $('key-form').hidden = false;
    }
  } catch (e) {
    note.textContent = `failed: ${e.message}`;
  } finally {
    btn.disabled = false;
  }
});
$('key-form').addEventListener('submit', (e) => {
  e.preventDefault();
  sessionStorage.setItem(keyStore, $('key').value.trim());
  $('key').value = '';
  $('publish').click();
});

// ---- Start ----

$('curl-example').textContent =
  `curl -H 'Content-Type: application/json' -d '{"type":"commentary","data":{"minute":1,"text":"Hello"}}' ${location.origin}/api/broadcast/demo-match:1`;

sb.connect();
joinChat($('room').value.trim());
watchMatch($('match-id').value);
