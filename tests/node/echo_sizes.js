// echo_sizes.js URL [--big]: text and binary messages of every length-form
// boundary (and 4 MiB with --big) come back unchanged.
'use strict';

const { SIZES, open, next, roundTrip, closeWith, check, main } = require('./lib');

main('echo_sizes', async (url) => {
  const sizes = SIZES.concat(process.argv.includes('--big') ? [4 << 20] : []);
  const ws = await open(url);
  for (const n of sizes) {
    let text = '';
    for (let i = 0; i < n; i++) text += String.fromCharCode(0x61 + (i % 26));
    await roundTrip(ws, text, `text of ${n} bytes`);
    const bin = Buffer.alloc(n);
    for (let i = 0; i < n; i++) bin[i] = (i * 31 + 7) & 0xff;
    await roundTrip(ws, bin, `binary of ${n} bytes`);
  }
  // Multi-byte text: 2-, 3- and 4-byte characters.
  await roundTrip(ws, 'héllo wörld € 😀 \u{10FFFF}'.repeat(1000), 'multi-byte text');
  // A fragmented message from the client.
  ws.send('frag', { fin: false });
  ws.send('men', { fin: false });
  ws.send('ted', { fin: true });
  const m = await next(ws);
  check(!m.isBinary && m.data.toString() === 'fragmented', `fragmented echo: ${m.data}`);
  const c = await closeWith(ws, 1000);
  check(c.code === 1000, `close reply ${c.code}`);
  return `${sizes.length * 2 + 2} messages`;
});
