// permessage-deflate with Chromium's own WebSocket (it offers
// "permessage-deflate; client_max_window_bits" by default). The page joins
// #zip as ann and prints "READY <negotiated extensions>"; the test connects a
// Python deflate client to #zip and writes one JSON line on stdin:
// {"from_py": text, "from_page": text}. The page must show the Python
// client's long message intact, then sends its own long message (the test
// checks the Python client gets it intact) and shows that too; prints SHOWN.
'use strict';
const { run, check, nextLine } = require('./lib');

run('deflate', async (t) => {
  const a = await t.page('ann');
  // Keep the page's sockets so we can read what was negotiated.
  await a.addInitScript(() => {
    const W = window.WebSocket;
    window.__sockets = [];
    window.WebSocket = class extends W {
      constructor(...args) {
        super(...args);
        window.__sockets.push(this);
      }
    };
  });
  await t.join(a, 'ann', 'zip');
  const ext = await a.evaluate(() => window.__sockets.map((s) => s.extensions).join(' | '));
  check(ext.startsWith('permessage-deflate'), `the page's WebSocket negotiated "${ext}"`);
  console.log(`READY ${ext}`);

  const line = await nextLine();
  check(line !== null, 'stdin closed before the test sent the texts');
  const { from_py: fromPy, from_page: fromPage } = JSON.parse(line);
  await t.waitMessage(a, 'py', fromPy, `py's long message (${fromPy.length} chars) on the page`);
  await t.say(a, fromPage);
  await t.waitMessage(a, 'ann', fromPage, "ann's own long message on her page");
  const shown = (await t.messages(a)).filter((m) => m.name === 'py');
  check(shown.length === 1 && shown[0].text === fromPy, `py's message shown as ${JSON.stringify(shown).slice(0, 200)}`);
  console.log('SHOWN');
});
