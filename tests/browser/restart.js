// Case 5: roomd restarts under the page. The script joins two pages, prints
// READY and waits for a line on stdin; meanwhile the test stops roomd (SIGTERM)
// and starts it again on the same port, then writes a line. Both pages must go
// reconnecting -> online, say "Reconnected: back in #tea as NAME", be back in
// the room ("2 online") and chat on.
'use strict';
const { run, check, nextLine } = require('./lib');

run('restart', async (t) => {
  const pages = [[await t.page('ann'), 'ann'], [await t.page('bob'), 'bob']];
  const [[a], [b]] = pages;
  for (const [p, n] of pages)
    await t.join(p, n, 'tea');
  await t.say(a, 'before the restart');
  await t.waitMessage(b, 'ann', 'before the restart');
  const mark = await Promise.all(pages.map(([p]) => p.evaluate(() => window.__statuses.length)));

  console.log('READY');
  const line = await nextLine();
  check(line !== null, 'stdin closed before the test said roomd was restarted');
  t.log(`test says: ${line}`);

  for (const [i, [p, n]] of pages.entries()) {
    await t.waitFor(p, (nm) => [...document.querySelectorAll('#log .notice')]
      .some((li) => li.textContent === 'Reconnected: back in #tea as ' + nm), n,
    `"Reconnected: back in #tea as ${n}" on ${n}'s page`, 15000);
    await t.waitFor(p, () => document.getElementById('status').className === 'online', null, `${n} online again`);
    const seq = (await p.evaluate(() => window.__statuses)).slice(mark[i]);
    check(seq.includes('reconnecting'), `${n}'s status never showed reconnecting: ${JSON.stringify(seq)}`);
    check(seq[seq.length - 1] === 'online' && seq.indexOf('online') > seq.indexOf('reconnecting'),
      `${n}'s status went ${JSON.stringify(seq)}, not reconnecting -> online`);
    const lost = await p.$$eval('#log .notice', (els) => els.some((e) => e.textContent.startsWith('Connection lost')));
    check(lost, `${n}'s page did not say the connection was lost`);
  }
  for (const [p, n] of pages)
    await t.waitFor(p, () => document.getElementById('count').textContent === '2 online', null,
      `"2 online" on ${n}'s page after the restart`);
  await t.say(a, 'after the restart, from ann');
  await t.waitMessage(b, 'ann', 'after the restart, from ann', "ann's message reaching bob after the restart");
  await t.say(b, 'after the restart, from bob');
  await t.waitMessage(a, 'bob', 'after the restart, from bob', "bob's message reaching ann after the restart");
  const errs = await a.$$eval('#log .notice.error', (els) => els.map((e) => e.textContent));
  check(errs.length === 0, `error notices on ann's page: ${JSON.stringify(errs)}`);
});
