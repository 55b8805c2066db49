// deflate_client.js URL [OPTIONS_JSON]: Node's ws client with
// perMessageDeflate OPTIONS_JSON (e.g. {"threshold":0,"serverMaxWindowBits":10})
// against roomd's /echo: the extension must be negotiated, and text and binary
// messages of every size (identical ones in a row, so a client that kept
// context the server told it to drop would be caught by a 1007) come back
// intact. Prints "deflate_client: ok ([negotiated extension] N messages)".
'use strict';

const crypto = require('crypto');
const { open, next, roundTrip, closeWith, check, main } = require('./lib');

const SIZES = [0, 1, 63, 64, 1000, 65536, 1 << 20];

function textOf(n, seed) {
  const words = ['the ', 'kettle ', 'is ', 'on ', 'héllo ', 'wörld ', '€uro ', '😀 ', 'room ', 'chat\n'];
  let s = '';
  let size = 0;
  for (let i = seed; size < n; i++) {
    let w = words[(i * 7 + Math.floor(i / 3)) % words.length];
    if (size + Buffer.byteLength(w) > n) w = 'x'.repeat(n - size);
    s += w;
    size += Buffer.byteLength(w);
  }
  return s;
}

main('deflate_client', async (url) => {
  const pmd = process.argv[3] ? JSON.parse(process.argv[3]) : {};
  const ws = await open(url, { perMessageDeflate: pmd, maxPayload: 4 << 20 });
  const ext = ws.upgradeHeaders['sec-websocket-extensions'] || '';
  check(ws.extensions === 'permessage-deflate' && ext.startsWith('permessage-deflate'),
    `permessage-deflate not negotiated: "${ws.extensions}", server answered "${ext}"`);
  let count = 0;
  for (const n of SIZES) {
    const reps = n < 65536 ? 3 : 1;
    for (let r = 0; r < reps; r++) {
      await roundTrip(ws, textOf(n, n), `text of ${n} bytes (#${r + 1})`);
      const bin = Buffer.alloc(n);
      for (let i = 0; i < n; i++) bin[i] = (i * 31 + 7) & 0xff;
      await roundTrip(ws, bin, `binary of ${n} bytes (#${r + 1})`);
      count += 2;
    }
  }
  // Incompressible bytes, and a burst of similar messages without waiting.
  await roundTrip(ws, crypto.randomBytes(65536), 'random 64 KiB');
  const burst = [];
  for (let i = 0; i < 50; i++) burst.push(`message ${i % 5}: ` + textOf(500 + i, i));
  for (const m of burst) ws.send(m);
  for (const m of burst) {
    const got = await next(ws);
    check(!got.isBinary && got.data.toString() === m, `burst message differs: ${got.data.toString().slice(0, 40)}`);
  }
  count += 51;
  // A fragmented message: ws compresses each fragment of one message in one stream.
  ws.send(textOf(3000, 1), { fin: false });
  ws.send(textOf(3000, 2), { fin: false });
  ws.send(textOf(10, 3), { fin: true });
  const f = await next(ws);
  check(f.data.toString() === textOf(3000, 1) + textOf(3000, 2) + textOf(10, 3), 'fragmented echo differs');
  count += 1;
  const c = await closeWith(ws, 1000);
  check(c.code === 1000, `close reply ${c.code}`);
  return `[${ext}] ${count} messages`;
});
