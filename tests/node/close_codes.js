// close_codes.js URL: the server answers a close with the client's code
// (1000, 1012, 1013, 1014, 3000, 4999: every kind IANA's registry assigns),
// and a subprotocol offer "foo, echo" gets "echo".
'use strict';

const { open, roundTrip, closeWith, check, main } = require('./lib');

main('close_codes', async (url) => {
  for (const code of [1000, 1012, 1013, 1014, 3000, 4999]) {
    const ws = await open(url);
    await roundTrip(ws, `closing with ${code}`, 'echo before close');
    const c = await closeWith(ws, code, 'bye');
    check(c.code === code, `closed with ${code}, server answered ${c.code}`);
  }
  const ws = await open(url, { protocols: ['foo', 'echo'] });
  check(ws.protocol === 'echo', `subprotocol '${ws.protocol}', want 'echo'`);
  await closeWith(ws, 1000);
  return 'codes 1000 3000 4999';
});
