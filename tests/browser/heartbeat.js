// Case 8: run against roomd with heartbeat_interval 1s, heartbeat_misses 2: the
// page answers the JSON heartbeat and stays connected for 4 s.
'use strict';
const { run, check } = require('./lib');

run('heartbeat', async (t) => {
  const a = await t.page('ann');
  // Record what the page sends, to see the pongs.
  await a.addInitScript(() => {
    window.__sent = [];
    const send = WebSocket.prototype.send;
    WebSocket.prototype.send = function (d) { window.__sent.push(String(d)); return send.call(this, d); };
  });
  await t.join(a, 'ann', 'tea');
  await a.waitForTimeout(4000);
  const r = await a.evaluate(() => ({
    statuses: window.__statuses,
    pongs: window.__sent.filter((s) => { const o = JSON.parse(s); return o.event === 'heartbeat' && o.message === 'pong'; }).length,
    notices: [...document.querySelectorAll('#log .notice')].map((n) => n.textContent),
  }));
  const j = JSON.stringify(r);
  check(r.pongs >= 2, `the page answered ${r.pongs} heartbeats in 4 s: ${j}`);
  check(r.statuses[r.statuses.length - 1] === 'online' && !r.statuses.includes('reconnecting'),
    `the page did not stay online: ${j}`);
  check(!r.notices.some((n) => /Connection lost|Error/.test(n)), `the connection dropped: ${j}`);
  await t.say(a, 'still here');
  await t.waitMessage(a, 'ann', 'still here', 'a message after 4 s of heartbeats');
});
