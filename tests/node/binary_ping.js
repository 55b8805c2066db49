// binary_ping.js URL: every byte value in a binary message; pings with
// payloads get pongs carrying the same payload.
'use strict';

const { open, roundTrip, closeWith, check, main } = require('./lib');

function ping(ws, payload) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no pong for a ${payload.length}-byte ping`)), 5000);
    ws.once('pong', (data) => {
      clearTimeout(t);
      if (!Buffer.from(data).equals(payload)) reject(new Error(`pong payload differs: ${data.toString('hex')}`));
      else resolve();
    });
    ws.ping(payload);
  });
}

main('binary_ping', async (url) => {
  const ws = await open(url, { perMessageDeflate: false });
  const all = Buffer.alloc(256 * 4);
  for (let i = 0; i < all.length; i++) all[i] = i & 0xff;
  await roundTrip(ws, all, 'every byte value');
  await roundTrip(ws, Buffer.alloc(0), 'empty binary');
  for (const n of [0, 1, 5, 125]) {
    const p = Buffer.alloc(n);
    for (let i = 0; i < n; i++) p[i] = (i * 7 + n) & 0xff;
    await ping(ws, p);
  }
  await roundTrip(ws, 'after pings', 'text after pings');
  const c = await closeWith(ws, 1000);
  check(c.code === 1000, `close reply ${c.code}`);
  return '4 pings';
});
