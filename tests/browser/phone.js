// Case 7: on a 390x700 phone viewport the messages and the composer are in
// view and nothing scrolls sideways.
'use strict';
const { run, check } = require('./lib');

const VIEW = { width: 390, height: 700 };

run('phone', async (t) => {
  const a = await t.page('ann', VIEW);
  const b = await t.page('bob', VIEW);
  await t.join(a, 'ann', 'tea');
  await t.join(b, 'bob-with-a-rather-long-name', 'tea');
  await t.say(a, 'hi from a phone');
  await t.say(b, 'https://example.org/a/very/long/link/without/any/spaces/' + 'y'.repeat(200));
  await t.waitMessage(a, 'bob-with-a-rather-long-name', 'https://example.org/a/very/long/link/without/any/spaces/' + 'y'.repeat(200));
  await t.waitMessage(b, 'ann', 'hi from a phone');
  await a.waitForTimeout(100);
  for (const [p, n] of [[a, 'ann'], [b, 'bob']]) {
    const r = await p.evaluate(() => {
      const box = (s) => { const r = document.querySelector(s).getBoundingClientRect();
        return { l: Math.round(r.left), r: Math.round(r.right), t: Math.round(r.top), b: Math.round(r.bottom) }; };
      return {
        sw: document.documentElement.scrollWidth, cw: document.documentElement.clientWidth,
        bodySw: document.body.scrollWidth, logSw: document.getElementById('log').scrollWidth,
        logCw: document.getElementById('log').clientWidth,
        text: box('#text'), send: box('#send'), log: box('#log'), leave: box('#leave'),
        msgs: [...document.querySelectorAll('#log .msg')].map((m) => {
          const r = m.getBoundingClientRect(); return { l: r.left, r: r.right, t: r.top, b: r.bottom }; }),
      };
    });
    const inView = (x) => x.l >= 0 && x.r <= 390 && x.t >= 0 && x.b <= 700;
    const j = JSON.stringify(r);
    check(r.sw <= r.cw && r.bodySw <= r.cw, `${n}: the page scrolls sideways: ${j}`);
    check(r.logSw <= r.logCw, `${n}: the log scrolls sideways: ${j}`);
    for (const k of ['text', 'send', 'log', 'leave'])
      check(inView(r[k]), `${n}: #${k} is not within the 390x700 viewport: ${j}`);
    check(r.send.r - r.send.l >= 40 && r.text.r - r.text.l >= 150, `${n}: the composer is squeezed: ${j}`);
    check(r.msgs.length === 2 && r.msgs.every(inView), `${n}: messages not all in view: ${j}`);
  }
  await t.screenshots('phone');
});
