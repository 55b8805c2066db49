// Case 2: a page in another room sees none of the first room's messages or
// members, and shows "1 online"; its own message stays in its room.
'use strict';
const { run, check } = require('./lib');

run('other_room', async (t) => {
  const a = await t.page('ann');
  const b = await t.page('bob');
  const c = await t.page('cy');
  await t.join(a, 'ann', 'tea');
  await t.join(b, 'bob', 'tea');
  await t.join(c, 'cy', 'coffee');
  await t.say(a, 'only for #tea');
  await t.say(b, 'also only for #tea');
  await t.say(c, 'only for #coffee');
  await t.waitMessage(c, 'cy', 'only for #coffee');
  await t.waitMessage(a, 'bob', 'also only for #tea');
  await t.waitMessage(b, 'ann', 'only for #tea');
  // Let anything misrouted arrive before looking.
  await c.waitForTimeout(400);

  const seen = await t.messages(c);
  check(seen.length === 1 && seen[0].name === 'cy', `cy (in #coffee) sees ${JSON.stringify(seen)}`);
  const notices = await c.$$eval('#log .notice', (els) => els.map((e) => e.textContent));
  check(!notices.some((n) => /ann|bob/.test(n)), `cy sees notices about #tea: ${JSON.stringify(notices)}`);
  check(await c.textContent('#count') === '1 online', `cy's count is ${await c.textContent('#count')}`);
  await t.waitFor(c, () => [...document.querySelectorAll('#who li')].map((l) => l.textContent).join() === 'cy',
    null, 'who list of just cy');
  for (const [p, n] of [[a, 'ann'], [b, 'bob']]) {
    const m = await t.messages(p);
    check(!m.some((x) => x.name === 'cy'), `${n} in #tea sees cy's message: ${JSON.stringify(m)}`);
    check(await p.textContent('#count') === '2 online', `${n}'s count is ${await p.textContent('#count')}`);
  }
});
