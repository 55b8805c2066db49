// Case 3: the who list shows both names on both pages, own name marked "me";
// it follows a Leave, and joining again after Leave is a fresh join.
'use strict';
const { run, check } = require('./lib');

run('who', async (t) => {
  const a = await t.page('ann');
  const b = await t.page('bob');
  await t.join(a, 'ann', 'tea');
  await t.join(b, 'bob', 'tea');
  for (const [p, me] of [[a, 'ann'], [b, 'bob']]) {
    await t.waitFor(p, () => [...document.querySelectorAll('#who li')].map((l) => l.textContent).join() === 'ann,bob',
      null, `who list "ann,bob" on ${me}'s page`);
    const mine = await p.$$eval('#who li.me', (els) => els.map((e) => e.textContent));
    check(mine.join() === me, `${me}'s page marks ${JSON.stringify(mine)} as me`);
  }
  // Leaving updates the other page's list and count.
  await b.click('#leave');
  await t.waitFor(a, () => [...document.querySelectorAll('#who li')].map((l) => l.textContent).join() === 'ann',
    null, "bob gone from ann's who list");
  await t.waitFor(a, () => document.getElementById('count').textContent === '1 online', null, '"1 online" after bob left');
  await t.waitFor(a, () => [...document.querySelectorAll('#log .notice')].some((n) => n.textContent === 'bob left'),
    null, '"bob left" notice');
  check(await b.isVisible('#join') && !(await b.isVisible('#chat')), 'after Leave, bob sees the join form');
  check(await b.getAttribute('#status', 'class') === 'offline', 'after Leave, bob is offline');

  // Joining again after Leave is a fresh join, not a reconnect.
  await b.click('#enter');
  await t.waitFor(b, () => [...document.querySelectorAll('#log .notice')].some((n) => n.textContent === 'You joined #tea'),
    null, "bob's fresh join after Leave");
  await t.waitFor(a, () => document.getElementById('count').textContent === '2 online', null, '"2 online" after bob came back');
  const notes = await b.$$eval('#log .notice', (els) => els.map((e) => e.textContent));
  check(!notes.some((n) => n.startsWith('Reconnected')), `joining after Leave says ${JSON.stringify(notes)}`);
  const seq = await b.evaluate(() => window.__statuses);
  check(!seq.includes('reconnecting'), `joining after Leave showed reconnecting: ${JSON.stringify(seq)}`);
});
