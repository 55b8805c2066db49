// Case 10: a page entering a room shows its last 50 messages (never one
// twice), and says "you missed messages you cannot see" when the server
// answers recovered:false. ann says h1..h60; bob joins and must show
// h11..h60. The script prints READY; the test flushes Redis (the room's
// history is lost) and writes a line; ann says one more, and bob's page
// shows the gap line once, then that message.
'use strict';
const { run, check, nextLine } = require('./lib');

run('history', async (t) => {
  const a = await t.page('ann');
  await t.join(a, 'ann', 'hist');
  await a.evaluate(() => {
    const text = document.getElementById('text'), form = document.getElementById('composer');
    for (let i = 1; i <= 60; i++) {
      text.value = `h${i}`;
      form.requestSubmit();
    }
  });
  await t.waitMessage(a, 'ann', 'h60', 'h60 on ann\'s page');
  const b = await t.page('bob');
  await t.join(b, 'bob', 'hist');
  await t.waitMessage(b, 'ann', 'h60', 'h60 on bob\'s page');
  await b.waitForTimeout(200);
  const texts = () => b.$$eval('#log .msg .text', (els) => els.map((e) => e.textContent));
  const want = [];
  for (let i = 11; i <= 60; i++) want.push(`h${i}`);
  let got = await texts();
  check(JSON.stringify(got) === JSON.stringify(want), `bob's page shows ${JSON.stringify(got)}`);

  console.log('READY');
  check(await nextLine() !== null, 'stdin closed before the test flushed Redis');
  await t.say(a, 'after the flush');
  await t.waitMessage(b, 'ann', 'after the flush', "the message after the flush on bob's page");
  await b.waitForTimeout(300);
  const log = await b.$$eval('#log li', (els) => els.map((e) => [e.className, e.textContent]));
  const gaps = log.filter(([c]) => c.includes('gap'));
  check(gaps.length === 1 && /missed messages you cannot see/.test(gaps[0][1]),
    `bob's gap lines: ${JSON.stringify(gaps)}`);
  const gi = log.findIndex(([c]) => c.includes('gap'));
  const mi = log.findIndex(([, x]) => x.includes('after the flush'));
  check(gi >= 0 && gi < mi, 'the gap line does not come before the first message after the loss');
  got = await texts();
  check(JSON.stringify(got) === JSON.stringify(want.concat(['after the flush'])), `bob's page shows ${JSON.stringify(got)}`);
  const shot = require('path').join(t.outdir, 'gap-line.png');
  await b.screenshot({ path: shot });
  t.log(`screenshot of the gap line: ${shot}`);
});
