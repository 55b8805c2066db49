// Case 9: the page over roomd-client survives a worker restart and a reload
// without losing or doubling a message. Two roomd instances share one Redis:
// ann reads on the first (argv PORT), bob writes on the second (ROOMD_PORT_B),
// so every message bob's page sends gets through. The script prints READY;
// the test SIGKILLs every worker of the first instance (the master starts new
// ones) and writes a line; ann's page reconnects, then is reloaded, while
// bob's page keeps sending. Ann's log must hold every message once, in order.
'use strict';
const { run, check, nextLine } = require('./lib');

// Bob's page says s1, s2, ... through its composer every 100 ms; __sent lists
// what the page took (the composer is cleared when a message is sent or queued).
function startSending() {
  const text = document.getElementById('text'), form = document.getElementById('composer');
  window.__sent = [];
  let i = 0;
  window.__loop = setInterval(() => {
    const t = 's' + (++i);
    text.value = t;
    form.requestSubmit();
    if (text.value === '') window.__sent.push(t);
  }, 100);
}

// The s-messages a page shows, in order.
async function shown(page) {
  return page.$$eval('#log .msg .text', (els) => els.map((e) => e.textContent).filter((t) => /^s\d+$/.test(t)));
}

// shown is exactly s<from>..s<k> for some k >= to: nothing missing, nothing twice, in order.
function checkRun(got, from, to, what) {
  const last = got.length > 0 ? Number(got[got.length - 1].slice(1)) : 0;
  check(last >= to, `${what}: the last message shown is ${got[got.length - 1]}, not s${to} or later`);
  to = last;
  const want = [];
  for (let i = from; i <= to; i++) want.push('s' + i);
  const dup = got.filter((t, i) => got.indexOf(t) !== i);
  check(dup.length === 0, `${what}: shown twice: ${JSON.stringify(dup.slice(0, 5))}`);
  check(JSON.stringify(got) === JSON.stringify(want),
    `${what}: shows ${got.length} (${got[0]}..${got[got.length - 1]}), want s${from}..s${to}: ` +
    `missing ${JSON.stringify(want.filter((t) => !got.includes(t)).slice(0, 5))}`);
}

run('recover', async (t) => {
  const a = await t.page('ann');
  const b = await t.page('bob');
  await t.join(a, 'ann', 'tea');
  const tb = Object.create(t);
  tb.base = `http://127.0.0.1:${process.env.ROOMD_PORT_B}`;
  await tb.join(b, 'bob', 'tea');
  await b.evaluate(startSending);
  await t.waitFor(a, () => [...document.querySelectorAll('#log .msg .text')].some((e) => e.textContent === 's5'),
    null, 's5 on ann\'s page');

  console.log('READY');
  const line = await nextLine();
  check(line !== null, 'stdin closed before the test said the workers were killed');
  t.log(`test says: ${line}`);
  await t.waitFor(a, () => [...document.querySelectorAll('#log .notice')]
    .some((li) => li.textContent === 'Reconnected: back in #tea as ann'), null, 'ann reconnected', 15000);
  // Up to answerTimeout (5 s) more: a respawned worker sometimes never
  // answers an enter that reaches it as it starts, and the page reconnects.
  let n = (await b.evaluate(() => window.__sent.length)) + 5;
  await t.waitFor(a, (s) => [...document.querySelectorAll('#log .msg .text')].some((e) => e.textContent === s),
    's' + n, `s${n} on ann's page after the restart`, 20000);
  checkRun(await shown(a), 1, n, 'after the worker restart');

  // A reload once there is more than a screenful: the page goes back into
  // the room by itself and recovers.
  await t.waitFor(a, () => [...document.querySelectorAll('#log .msg .text')].some((e) => e.textContent === 's60'),
    null, 's60 on ann\'s page', 15000);
  const before = await b.evaluate(() => window.__sent.length);
  await a.reload();
  await t.waitFor(a, () => document.getElementById('status').className === 'online', null, 'ann online after the reload');
  n = (await b.evaluate(() => window.__sent.length)) + 5;
  await t.waitMessage(a, 'bob', 's' + n, `s${n} on ann's page after the reload`);
  await b.evaluate(() => clearInterval(window.__loop));
  const sent = await b.evaluate(() => window.__sent.length);
  await t.waitMessage(a, 'bob', 's' + sent, `the last message, s${sent}, on ann's page`);
  await a.waitForTimeout(300);
  const got = await shown(a);
  // The reloaded page shows the last 50 up to its return (most of them seen
  // before the reload), then everything said since.
  check(got.length > 0 && Number(got[0].slice(1)) <= before - 25,
    `after the reload the log starts at ${got[0]}: not the last 50 before s${before}`);
  checkRun(got, Number(got[0].slice(1)), sent, 'after the reload');
  const notes = await a.$$eval('#log .notice', (els) => els.map((e) => e.textContent));
  check(!notes.some((x) => /cannot see|^Error/.test(x)), `ann's notices: ${JSON.stringify(notes)}`);
  t.log(`ann saw s1..s${sent}; ${got.length} after the reload`);
});
