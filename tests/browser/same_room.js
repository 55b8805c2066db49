// Case 1: two pages in one room see each other's messages; each page marks its
// own messages "mine"; both show "2 online". Saves two-people.png (900x560).
'use strict';
const path = require('path');
const { run, check } = require('./lib');

run('same_room', async (t) => {
  const a = await t.page('ann');
  const b = await t.page('bob');
  await t.join(a, 'ann', 'tea');
  await t.join(b, 'bob', 'tea');
  for (const p of [a, b])
    await t.waitFor(p, () => document.getElementById('count').textContent === '2 online', null, '"2 online"');

  await t.say(a, 'hello bob, the kettle is on');
  await t.waitMessage(b, 'ann', 'hello bob, the kettle is on', "ann's message on bob's page");
  await t.say(b, 'lovely, two sugars please');
  await t.waitMessage(a, 'bob', 'lovely, two sugars please', "bob's message on ann's page");
  await t.waitMessage(b, 'bob', 'lovely, two sugars please', "bob's own message on his page");

  const want = [['ann', 'hello bob, the kettle is on'], ['bob', 'lovely, two sugars please']];
  for (const [page, me] of [[a, 'ann'], [b, 'bob']]) {
    const got = await t.messages(page);
    check(JSON.stringify(got.map((m) => [m.name, m.text])) === JSON.stringify(want),
      `${me}'s page shows ${JSON.stringify(got)}`);
    for (const m of got)
      check(m.mine === (m.name === me), `on ${me}'s page, ${m.name}'s message has mine=${m.mine}`);
    check(await page.textContent('#count') === '2 online', `${me}'s count is not "2 online"`);
    check(await page.textContent('#where') === '#tea', `${me}'s page does not say #tea`);
  }
  await t.waitFor(a, () => document.querySelectorAll('#who li').length === 2, null, 'who list of 2');
  await a.waitForTimeout(150);
  const shot = path.join(t.outdir, 'two-people.png');
  await a.screenshot({ path: shot });
  t.log(`screenshot of two people chatting: ${shot}`);
});
