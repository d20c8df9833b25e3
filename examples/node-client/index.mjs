// A Switchboard client on Node.js with the JS SDK: subscribe to a room,
// print its events (one JSON object a line on stdout), and optionally say
// something. The SDK reconnects after network failures and server restarts
// and recovers the events missed meanwhile.
//
//   node index.mjs                                    # demo-match:1 on ws://127.0.0.1:8080/ws
//   node index.mjs --room chat:lobby --say "hello from Node"
//   node index.mjs --url wss://rt.example.com/ws --room match:42 --max-events 5
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { Client } from '@switchboard-rt/client';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string', default: 'ws://127.0.0.1:8080/ws' },
    room: { type: 'string', default: 'demo-match:1' },
    say: { type: 'string' },
    'max-events': { type: 'string', default: '0' },
    token: { type: 'string' },
  },
});
const maxEvents = Number(args['max-events']);
const log = (...a) => console.error(...a);

// Node 22 and later have a global WebSocket; Node 20 needs the ws package.
const sb = new Client(args.url, { WebSocket: globalThis.WebSocket ?? WebSocket, token: args.token });
sb.on('state', ({ state }) => log(`state: ${state}`));
sb.on('open', (info) => log(`connected as ${info.user_id} (node ${info.node})`));
sb.on('reconnecting', ({ delay, code }) => log(`closed with ${code}: reconnecting in ${(delay / 1000).toFixed(1)} s`));
sb.on('error', (e) => log(`error ${e.code}: ${e.message}`));
sb.on('close', (d) => {
  if (!d.reconnect) {
    log(`closed with ${d.code} (${d.name}): not reconnecting`);
    process.exitCode = d.code === 1000 || d.code === 1001 ? 0 : 1;
  }
});

let seen = 0;
const room = sb.subscribe(args.room, (ev) => {
  console.log(JSON.stringify(ev));
  if (ev.id && maxEvents > 0 && ++seen >= maxEvents) sb.close();
});
room.on('subscribed', (d) => {
  log(`subscribed to ${args.room}: ${d.members} member(s)` + (d.resubscribed ? `, recovered=${d.recovered}` : ''));
  if (d.recovered === false) log('some events were lost for good: reload the state from the backend');
});
sb.connect();

if (args.say) {
  // Queued until connected; acknowledged once, even if sent again after a
  // reconnect.
  room.publish({ text: args.say, name: 'node' }).then(
    (ack) => log(`published ${ack.event_id}`),
    (e) => log(`not published (${e.code}): ${e.message}`),
  );
}

process.on('SIGINT', () => sb.close());
process.on('SIGTERM', () => sb.close());
