// Case 6: Enter sends (and clears the composer); a long message without
// spaces wraps inside the log; after 50 messages the newest is in view on
// both the sender's and the reader's page, while a reader who scrolled up
// to read history is left where he is.
'use strict';
const { run, check } = require('./lib');

run('scroll', async (t) => {
  const a = await t.page('ann');
  const b = await t.page('bob');
  await t.join(a, 'ann', 'tea');
  await t.join(b, 'bob', 'tea');

  await a.fill('#text', 'sent with Enter');
  await a.press('#text', 'Enter');
  await t.waitMessage(b, 'ann', 'sent with Enter');
  check(await a.inputValue('#text') === '', 'the composer was not cleared after Enter');
  check(await a.evaluate(() => document.activeElement.id) === 'text', 'focus left the composer after Enter');

  const long = 'x'.repeat(1500);
  await t.say(a, long);
  for (const [p, n] of [[a, 'ann'], [b, 'bob']]) {
    await t.waitMessage(p, 'ann', long, `the long message on ${n}'s page`);
    const r = await p.evaluate(() => {
      const log = document.getElementById('log');
      const msgs = log.querySelectorAll('.msg');
      const li = msgs[msgs.length - 1];
      return { li: li.getBoundingClientRect().width, log: log.clientWidth, sw: log.scrollWidth,
        docSw: document.documentElement.scrollWidth, docW: document.documentElement.clientWidth };
    });
    check(r.li <= r.log, `${n}: the long message is ${r.li}px wide in a ${r.log}px log`);
    check(r.sw <= r.log, `${n}: the log scrolls sideways (${r.sw} > ${r.log})`);
    check(r.docSw <= r.docW, `${n}: the page scrolls sideways (${r.docSw} > ${r.docW})`);
  }

  // 50 more through the composer form (fast: Enter itself is checked above).
  await a.evaluate(() => {
    const text = document.getElementById('text'), form = document.getElementById('composer');
    for (let i = 1; i <= 50; i++) {
      text.value = `message number ${i}`;
      form.requestSubmit();
    }
  });
  for (const [p, n] of [[a, 'ann'], [b, 'bob']]) {
    await t.waitMessage(p, 'ann', 'message number 50', `message 50 on ${n}'s page`);
    await p.waitForTimeout(100);
    const r = await p.evaluate(() => {
      const log = document.getElementById('log');
      const last = log.lastElementChild.getBoundingClientRect(), box = log.getBoundingClientRect();
      return { top: log.scrollTop, ch: log.clientHeight, sh: log.scrollHeight,
        lastBottom: last.bottom, logBottom: box.bottom };
    });
    check(r.sh > r.ch, `${n}: the log does not overflow after 50 messages (${JSON.stringify(r)})`);
    check(r.sh - r.top - r.ch <= 10, `${n}: the log is not scrolled to the end: ${JSON.stringify(r)}`);
    check(r.lastBottom <= r.logBottom + 1, `${n}: the newest message is below the log's edge: ${JSON.stringify(r)}`);
  }

  // A reader who scrolled up to read history is left there by new messages.
  await b.evaluate(() => { document.getElementById('log').scrollTop = 0; });
  await t.say(a, 'one more');
  await t.waitMessage(b, 'ann', 'one more');
  check(await b.evaluate(() => document.getElementById('log').scrollTop) === 0,
    'a new message yanked bob back to the end while he was reading history');
});
