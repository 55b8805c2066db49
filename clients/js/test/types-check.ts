// Compiled (never run) by `tsc --noEmit -p clients/js`: the declarations
// describe the API as README.md shows it, and refuse what it does not allow.
import {
  RoomdClient, RoomdError, memoryStorage, tokenExpiry,
  type Gap, type MessageEvent, type Position, type Room, type WebSocketConstructor,
} from '../roomd-client.js';

declare const WS: WebSocketConstructor;
declare function log(...a: unknown[]): void;   // no DOM or Node types: the declarations need neither

const client = new RoomdClient('ws://127.0.0.1:8080/', {
  name: 'ann',
  WebSocket: WS,
  reconnect: { minDelay: 200, maxDelay: 10000, jitter: 0.5 },
  storage: memoryStorage(),
  maxQueued: 50,
  getToken: async () => 'a.b.c',
});
const byUrl = new RoomdClient(() => 'ws://127.0.0.1:8081/', { token: 'a.b.c' });
byUrl.close();

const room: Room = client.join('tea', { history: 50 });
const stop: () => void = room.on('message', (ev: MessageEvent) => {
  const o: number = ev.offset;
  const who: string = ev.name;
  log(o, who, ev.message.toUpperCase());
});
stop();
room.on('gap', (g: Gap) => log(g.from ?? 'unknown', g.to, g.epoch));
room.on('state', (s, prev) => {
  const joined: boolean = s === 'joined' || prev === 'left';
  log(joined);
});
room.on('enter', (ev) => log(ev.name, ev.num));
room.on('error', (e: RoomdError) => log(e.code, e.room));
client.on('disconnected', (d) => log(d.code, d.reconnect, d.delay));
client.on('state', (s) => { if (s === 'connected') log('up'); });
client.on('error', (e) => log(e.code));
client.connect();

const sent: boolean = room.send('hello');
async function later(): Promise<void> {
  const w = await room.who();
  const names: string[] = w.members;
  const page = await room.history({ before: 10, limit: 5 });
  const first: MessageEvent | undefined = page.messages[0];
  const pos: Position | null = room.position;
  log(names, first, pos?.epoch, page.epoch, tokenExpiry('x.y.z'), sent);
  room.leave();
  client.close();
}
void later;

// What the declarations refuse:
// @ts-expect-error a name is a string
new RoomdClient('ws://x/', { name: 7 });
// @ts-expect-error the url is a string or a function
new RoomdClient(8080);
// @ts-expect-error send takes text
room.send({ text: 'hi' });
// @ts-expect-error no such event
room.on('messages', () => {});
// @ts-expect-error a message event has no "text"
room.on('message', (ev) => log(ev.text));
// @ts-expect-error history's limit is a number
void room.history({ limit: 'ten' });
// @ts-expect-error the state is read-only
client.state = 'connected';
// @ts-expect-error join's history is a number
client.join('x', { history: true });
// @ts-expect-error a storage needs removeItem
new RoomdClient('ws://x/', { name: 'a', storage: { getItem: () => null, setItem: () => {} } });
