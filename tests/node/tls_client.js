// tls_client.js wss://HOST:PORT CA.pem: Node's ws over TLS against roomd.
// Without the CA the self-signed certificate must be refused; with it
// (the `ca` option) echo of every length form comes back unchanged on /echo,
// and two chat clients on / see each other's enter and message.
'use strict';

const fs = require('fs');
const { SIZES, open, next, roundTrip, closeWith, check, main } = require('./lib');

// The next JSON event on ws for which pred holds (others are skipped).
async function until(ws, pred, what) {
  for (;;) {
    const m = await next(ws, 5000).catch((e) => { throw new Error(`${what}: ${e.message}`); });
    const ev = JSON.parse(m.data.toString());
    if (ev.event === 'heartbeat' && ev.message === 'ping') ws.send('{"event":"heartbeat","message":"pong"}');
    if (pred(ev)) return ev;
  }
}

main('tls_client', async (base) => {
  const caFile = process.argv[3];
  check(base.startsWith('wss://') && caFile, 'usage: node tls_client.js wss://HOST:PORT CA.pem');
  const ca = fs.readFileSync(caFile);

  // The certificate is really checked: no CA, no connection.
  let refused = null;
  try {
    const ws = await open(`${base}/echo`);
    ws.terminate();
  } catch (e) {
    refused = e;
  }
  check(refused && /self[- ]signed|certificate|verify/i.test(refused.message),
    `connected without the CA (${refused && refused.message})`);

  const echo = await open(`${base}/echo`, { ca });
  const proto = echo._socket.getProtocol();
  for (const n of SIZES.concat([1 << 20])) {
    await roundTrip(echo, 'e'.repeat(n), `text of ${n} bytes`);
    const bin = Buffer.alloc(n);
    for (let i = 0; i < n; i++) bin[i] = (i * 13 + 5) & 0xff;
    await roundTrip(echo, bin, `binary of ${n} bytes`);
  }
  const c = await closeWith(echo, 1000);
  check(c.code === 1000, `close reply ${c.code}`);

  const room = `tls-${process.pid}`;
  const ann = await open(`${base}/`, { ca });
  const bob = await open(`${base}/`, { ca });
  ann.send(JSON.stringify({ event: 'enter', message: 'ann', roomid: room }));
  await until(ann, (e) => e.event === 'enter' && e.name === 'ann', 'ann entered');
  bob.send(JSON.stringify({ event: 'enter', message: 'bob', roomid: room }));
  const seen = await until(ann, (e) => e.event === 'enter' && e.name === 'bob', 'ann sees bob enter');
  check(seen.num === 2, `num ${seen.num} after two enters`);
  bob.send(JSON.stringify({ event: 'message', message: 'over tls', roomid: room }));
  const m = await until(ann, (e) => e.event === 'message', 'ann gets bob\'s message');
  check(m.name === 'bob' && m.message === 'over tls' && m.roomid === room, `message ${JSON.stringify(m)}`);
  await until(bob, (e) => e.event === 'message' && e.message === 'over tls', 'bob gets his own message');
  await closeWith(ann, 1000);
  await closeWith(bob, 1000);
  return `${proto}, ${SIZES.length * 2 + 2} echoes, chat`;
});
