// Case 4: HTML in a message, a name and a room is shown as text, never run.
'use strict';
const { run, check } = require('./lib');

const MSG = '<img src=x onerror="window.__pwned=1">';
const NAME = '<img src=y onerror="window.__pwned=2"><b>eve</b>';
const ROOM = '<svg onload="window.__pwned=3">';

run('xss', async (t) => {
  const a = await t.page('eve');
  const b = await t.page('bob');
  await t.join(b, 'bob', ROOM);
  await t.join(a, NAME, ROOM);   // after bob, so bob's page shows the join notice
  await t.say(a, MSG);
  await t.say(b, '<script>window.__pwned=4</script>');
  await t.waitMessage(b, NAME, MSG, "eve's HTML message on bob's page");
  await t.waitMessage(a, 'bob', '<script>window.__pwned=4</script>', "bob's script message on eve's page");
  await t.waitFor(b, (n) => [...document.querySelectorAll('#who li')].some((l) => l.textContent === n), NAME,
    "eve's HTML name in bob's who list");
  await t.waitFor(b, (n) => [...document.querySelectorAll('#log .notice')].some((l) => l.textContent === n + ' joined'),
    NAME, "eve's join notice");
  await b.waitForTimeout(300);   // give any injected handler time to fire
  for (const [p, who] of [[a, 'eve'], [b, 'bob']]) {
    const r = await p.evaluate(() => ({
      pwned: typeof window.__pwned,
      imgs: document.querySelectorAll('#log img, #who img, header img, #log script, #log svg, header svg').length,
      bold: document.querySelectorAll('#log b, #who b').length,
      where: document.getElementById('where').textContent,
    }));
    check(r.pwned === 'undefined', `window.__pwned is set on ${who}'s page`);
    check(r.imgs === 0 && r.bold === 0, `${who}'s page has elements made from user text: ${JSON.stringify(r)}`);
    check(r.where === '#' + ROOM, `${who}'s room heading is ${JSON.stringify(r.where)}`);
    const msgs = await t.messages(p);
    check(msgs.some((m) => m.name === NAME && m.text === MSG), `${who}: eve's message not shown literally`);
  }
});
