// roomd-client against real roomd instances and a real Redis (started by
// tests/test_js_client.py, which runs one test of this file at a time with
// --test-name-pattern and the servers that test needs; see lib.mjs).
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { RoomdClient, memoryStorage, tokenExpiry } from '../../www/roomd-client.js';
import {
  URLS, PIDFILES, WebSocket, spyWebSocket, record, waitFor, sleep, assertExactly, assertIncreasing,
  assertNoTimers, workerPids, masterPid, redis, signToken, writer, stopWriters,
} from './lib.mjs';

const FAST = { minDelay: 20, maxDelay: 300, jitter: 0.5 };

// Every client a test made is closed after it, passed or failed, so a failure
// ends the process instead of leaving it waiting on open sockets.
const made = [];
afterEach(() => {
  stopWriters();
  for (const c of made.splice(0))
    c.close();
});

function track(c) {
  made.push(c);
  return c;
}

function client(name, opts = {}) {
  return track(new RoomdClient(opts.url || URLS[0], Object.assign({ name, WebSocket, reconnect: FAST }, opts)));
}

async function joined(room, what) {
  await waitFor(() => room.state === 'joined', `${what} joined`);
}

// A reader (with readerOpts) and a writer in room, both joined; what the
// reader's room hands over is recorded.
async function readerAndWriter(room, readerOpts = {}) {
  const rc = client('reader', readerOpts);
  const rr = rc.join(room);
  const g = record(rr);
  rc.connect();
  const wc = client('writer');
  const rw = wc.join(room);
  wc.connect();
  await joined(rr, 'reader');
  await joined(rw, 'writer');
  return { rc, rr, g, wc, rw };
}

test('basics', async () => {
  // join, chat, who, history, leave; close() leaves no timer behind.
  const a = client('ann');
  const b = client('bob');
  const ra = a.join('tea');
  const ga = record(ra);
  a.connect();
  await joined(ra, 'ann');
  const rb = b.join('tea');
  const gb = record(rb);
  b.connect();
  await joined(rb, 'bob');
  await waitFor(() => ga.enters.some((e) => e.name === 'bob'), "bob's enter on ann's side");
  for (const t of ['one', 'two', 'three'])
    assert.equal(rb.send(t), true);
  await waitFor(() => ga.messages.length === 3, 'three messages at ann');
  assert.deepEqual(ga.texts(), ['one', 'two', 'three']);
  assert.deepEqual(ga.offsets(), [1, 2, 3]);
  assert.deepEqual(ga.messages.map((m) => m.name), ['bob', 'bob', 'bob']);
  await waitFor(() => gb.messages.length === 3, "bob's own three");
  assert.deepEqual(ra.position.offset, 3);
  assert.equal(typeof ra.position.epoch, 'string');
  const w = await ra.who();
  assert.deepEqual(w.members.slice().sort(), ['ann', 'bob']);
  assert.equal(w.num, 2);
  const h = await ra.history({ limit: 2 });
  assert.deepEqual(h.messages.map((m) => m.message), ['two', 'three']);
  assert.equal(h.offset, 3);
  assert.equal(h.epoch, ra.position.epoch);
  const h2 = await ra.history({ limit: 5, before: 2 });
  assert.deepEqual(h2.messages.map((m) => m.message), ['one']);
  ra.leave();
  assert.equal(ra.state, 'left');
  await waitFor(() => gb.outs.some((e) => e.name === 'ann'), "ann's out at bob");
  assert.equal(a.rooms.size, 0);
  assert.equal(ra.send('after leaving'), false);
  assert.equal(ga.errors.at(-1).code, 'left');
  await assert.rejects(ra.who(), { code: 'left' });
  assert.deepEqual(ga.gaps, []);
  a.close();
  b.close();
  assert.equal(a.state, 'disconnected');
  await assertNoTimers('basics', [a, b]);
});

test('first-entry', async () => {
  // history K hands over the last K; history 0 hands over nothing but the
  // room's position is known all the same (the first message never came), so
  // a fast reconnect right after entering recovers what was said meanwhile.
  const w = client('writer');
  const rw = w.join('news');
  w.connect();
  for (let i = 1; i <= 5; i++)
    rw.send(`old${i}`);
  await waitFor(() => rw.position && rw.position.offset === 5, "the writer's five");
  const c3 = client('three');
  const r3 = c3.join('news', { history: 3 });
  const g3 = record(r3);
  c3.connect();
  await joined(r3, 'three');
  assert.deepEqual(g3.texts(), ['old3', 'old4', 'old5']);

  const spy = spyWebSocket();
  const c0 = client('zero', { WebSocket: spy.WebSocket });
  const r0 = c0.join('news');
  const g0 = record(r0);
  c0.connect();
  await joined(r0, 'zero');
  assert.deepEqual(g0.messages, [], 'history 0 hands over nothing');
  assert.equal(r0.position.offset, 5, 'the position is known without a message');
  // Reconnect at once, and have the writer talk while it does.
  c0.reconnect();
  rw.send('said during the reconnect');
  rw.send('and another');
  await waitFor(() => g0.messages.length === 2, 'the two said meanwhile');
  await sleep(200);
  assertExactly(g0.texts(), ['said during the reconnect', 'and another'], 'zero');
  assert.deepEqual(g0.offsets(), [6, 7]);
  assert.deepEqual(g0.gaps, []);
  assert.equal(spy.opened, 2);
  for (const c of [w, c3, c0])
    c.close();
  await assertNoTimers('first-entry', [w, c3, c0]);
});

// A reader on instance 0, a writer on instance 1 (so the writer's messages all
// get through); fault() breaks the reader's connection while the writer talks.
async function survives(fault, what, { rounds = 1, opts = {} } = {}) {
  const wc = client('writer', { url: URLS[1] });
  const rw = wc.join('fault');
  wc.connect();
  await joined(rw, 'writer');
  const spy = spyWebSocket();
  const rc = client('reader', Object.assign({ WebSocket: spy.WebSocket }, opts));
  const rr = rc.join('fault');
  const g = record(rr);
  const log = [];   // what the client went through, for a failure's message
  rc.on('state', (st) => log.push(st));
  rc.on('disconnected', (d) => log.push(`closed ${d.code} retry in ${d.delay}`));
  rc.on('error', (e) => log.push(`error ${e.code}`));
  rr.on('state', (st) => log.push(`room ${st}`));
  rc.connect();
  await joined(rr, 'reader');
  const wr = writer(rw, 'w', 4);
  for (let i = 0; i < rounds; i++) {
    const opened = spy.opened;
    await waitFor(() => g.messages.length > 0, 'a message before the fault');
    await fault(i, rc);
    await waitFor(() => spy.opened > opened && rr.state === 'joined', `${what}: back in the room`, 20000)
      .catch((e) => {
        throw new Error(`${e.message}; client ${rc.state}, room ${rr.state}, ${spy.opened} connections, ` +
          `last events ${JSON.stringify(spy.frames.slice(-4))}, events ${JSON.stringify(log.slice(-12))}`);
      });
    const n = g.messages.length;
    await waitFor(() => g.messages.length > n, `${what}: a live message after the fault`);
  }
  wr.stop();
  await waitFor(() => g.messages.length >= wr.sent.length, `${what}: every message`, 15000)
    .catch((e) => {
      const missing = wr.sent.filter((t) => !g.texts().includes(t));
      throw new Error(`${e.message}: ${g.messages.length} of ${wr.sent.length}, missing ${missing.slice(0, 8)}, ` +
        `gaps ${JSON.stringify(g.gaps)}, events ${JSON.stringify(log.slice(-16))}`);
    });
  await sleep(300);
  assertExactly(g.texts(), wr.sent, what);
  assertIncreasing(g.offsets(), what);
  assert.deepEqual(g.gaps, [], `${what}: no gap`);
  assert.ok(spy.opened >= rounds + 1, `${what}: it reconnected (${spy.opened} connections)`);
  wc.close();
  rc.close();
  await assertNoTimers(what, [wc, rc]);
}

test('server-close', async () => {
  // SIGHUP: the master starts new workers and the old ones close their clients (1001).
  await survives(async () => process.kill(masterPid(PIDFILES[0]), 'SIGHUP'), 'graceful worker restart',
    { opts: { answerTimeout: 2000 } });
});

test('worker-kill', async () => {
  // SIGKILL every worker of the reader's instance: the master starts new
  // ones. (A respawned worker sometimes never answers an enter that reaches
  // it as it starts; the client gives up on it after answerTimeout and
  // connects again.)
  await survives(async () => {
    for (const pid of workerPids(PIDFILES[0]))
      process.kill(pid, 'SIGKILL');
  }, 'workers SIGKILLed', { rounds: 2, opts: { answerTimeout: 2000 } });
});

test('silent-server', async () => {
  // Every worker of the reader's instance stopped (SIGSTOP): its connection
  // stays open but nothing answers. The client notices (a ping, no answer),
  // gives up on handshakes that hang in the stopped workers' backlogs, and
  // once they run again (SIGCONT) it is back in the room with every message.
  await survives(async (i, rc) => {
    const pids = workerPids(PIDFILES[0]);
    for (const pid of pids)
      process.kill(pid, 'SIGSTOP');
    try {
      await waitFor(() => rc.state !== 'connected', 'the client to notice the silence', 5000);
      await sleep(1500);
    } finally {
      for (const pid of pids)
        process.kill(pid, 'SIGCONT');
    }
  }, 'workers stopped', { opts: { pingInterval: 300, pongTimeout: 300, answerTimeout: 400 } });
});

test('fifty-reconnects', async () => {
  // 50 reconnects in a row, each to the other instance, while a writer talks:
  // half wait until the room is caught up, half reconnect while the catch-up
  // is still in flight. Every message once, in order, and no gap.
  let n = 0;
  const spy = spyWebSocket();
  const rc = client('hopper', { url: () => URLS[n++ % 2], WebSocket: spy.WebSocket });
  const rr = rc.join('hop');
  const g = record(rr);
  rc.connect();
  await joined(rr, 'hopper');
  const wc = client('writer');
  const rw = wc.join('hop');
  wc.connect();
  await joined(rw, 'writer');
  const wr = writer(rw, 'h', 3);
  let inflight = 0;
  for (let i = 0; i < 50; i++) {
    const have = g.messages.length;
    if (i % 2 === 0) {
      await waitFor(() => rr.state === 'joined' && g.messages.length > have, `round ${i}: caught up and live`);
      rc.reconnect();
    } else {
      // Reconnect once this connection's enter is out and its catch-up not
      // yet in: at once, or a few milliseconds later.
      await new Promise((resolve) => {
        const off = rr.on('state', (s) => {
          if (s !== 'joining')
            return;
          off();
          const go = () => {
            if (rr.state === 'joining')
              inflight++;
            rc.reconnect();
            resolve();
          };
          if (i % 4 === 1)
            queueMicrotask(go);
          else
            setTimeout(go, Math.random() * 3);
        });
      });
    }
  }
  await waitFor(() => rr.state === 'joined', 'joined after the last round');
  wr.stop();
  await waitFor(() => g.messages.length >= wr.sent.length, 'every message', 20000);
  await sleep(300);
  assertExactly(g.texts(), wr.sent, 'fifty reconnects');
  assertIncreasing(g.offsets(), 'fifty reconnects');
  assert.deepEqual(g.gaps, []);
  assert.equal(spy.opened, 51);
  assert.ok(inflight >= 10, `only ${inflight} reconnects came while a catch-up was in flight`);
  const recovered = spy.frames.filter((f) => f.event === 'recovered');
  assert.ok(recovered.every((f) => f.recovered === true), 'a recovery failed');
  wc.close();
  rc.close();
  await assertNoTimers('fifty-reconnects', [wc, rc]);
});

test('gap-live', async () => {
  // Redis flushed under a connected room: the server says recovered:false
  // once, the gap event fires once, and the new epoch's messages (offsets
  // from 1 again) are delivered, not taken for duplicates. A reconnect after
  // that recovers in the new epoch without another gap.
  const spy = spyWebSocket();
  const { rc, rr, g, wc, rw } = await readerAndWriter('flush', { WebSocket: spy.WebSocket });
  for (const t of ['a1', 'a2', 'a3'])
    rw.send(t);
  await waitFor(() => g.messages.length === 3, 'three before the flush');
  const oldEpoch = rr.position.epoch;
  assert.equal(await redis('FLUSHALL'), '+OK');
  for (const t of ['b1', 'b2', 'b3'])
    rw.send(t);
  await waitFor(() => g.messages.length === 6, 'three after the flush');
  assert.deepEqual(g.texts(), ['a1', 'a2', 'a3', 'b1', 'b2', 'b3']);
  const lost = spy.frames.filter((f) => f.event === 'recovered' && f.recovered === false);
  assert.equal(lost.length, 1, 'the server said recovered:false once');
  assert.equal(g.gaps.length, 1, 'one gap event');
  assert.equal(g.gaps[0].from, 4);
  await waitFor(() => rr.position.epoch !== oldEpoch, 'the new epoch learnt');
  assert.equal(rr.position.offset, 3, 'at offset 3 of the new epoch');
  rc.reconnect();
  rw.send('c1');
  await waitFor(() => g.messages.length === 7, 'the message said during the reconnect');
  await joined(rr, 'reader again');
  assert.equal(g.gaps.length, 1, 'no second gap');
  assert.ok(spy.frames.filter((f) => f.event === 'recovered').at(-1).recovered, 'recovered:true after the reconnect');
  assertExactly(g.texts(), ['a1', 'a2', 'a3', 'b1', 'b2', 'b3', 'c1'], 'gap-live');
  rc.close();
  wc.close();
  await assertNoTimers('gap-live', [rc, wc]);
});

test('gap-offline', async () => {
  // Positions kept in a storage adapter survive the client (a page reload):
  // a new client with the same storage recovers what was said while it was
  // away, and the last K before it as context, each once; after Redis was
  // flushed meanwhile it hears recovered:false once, as a gap.
  const store = memoryStorage();
  const wc = client('writer');
  const rw = wc.join('away');
  wc.connect();
  await joined(rw, 'writer');
  const c1 = client('reader', { storage: store });
  const r1 = c1.join('away', { history: 4 });
  const g1 = record(r1);
  c1.connect();
  await joined(r1, 'reader');
  for (const t of ['m1', 'm2', 'm3'])
    rw.send(t);
  await waitFor(() => g1.messages.length === 3, 'three');
  c1.close();
  for (const t of ['m4', 'm5'])
    rw.send(t);
  await waitFor(() => rw.position && rw.position.offset === 5, "the writer's two while the reader is away");
  // A new client over the same storage: the two it missed, and two of the three it had as context.
  const c2 = client('reader', { storage: store });
  const r2 = c2.join('away', { history: 4 });
  const g2 = record(r2);
  c2.connect();
  await joined(r2, 'reader again');
  rw.send('m6');
  await waitFor(() => g2.messages.length === 5, 'context, missed, live');
  assertExactly(g2.texts(), ['m2', 'm3', 'm4', 'm5', 'm6'], 'resumed');
  assert.deepEqual(g2.gaps, []);
  c2.close();
  // Now the room's history is lost while the reader is away.
  const epoch = r2.position.epoch;
  assert.equal(await redis('FLUSHALL'), '+OK');
  for (const t of ['n1', 'n2'])
    rw.send(t);
  await waitFor(() => rw.position && rw.position.epoch !== epoch && rw.position.offset === 2, "the writer's new epoch", 15000);
  const spy = spyWebSocket();
  const c3 = client('reader', { storage: store, WebSocket: spy.WebSocket });
  const r3 = c3.join('away', { history: 4 });
  const g3 = record(r3);
  c3.connect();
  await joined(r3, 'reader after the flush');
  const lost = spy.frames.filter((f) => f.event === 'recovered' && f.recovered === false);
  assert.equal(lost.length, 1);
  assert.equal(g3.gaps.length, 1);
  assert.deepEqual([g3.gaps[0].epoch, g3.gaps[0].from, g3.gaps[0].newEpoch], [epoch, 7, lost[0].epoch]);
  assertExactly(g3.texts(), ['n1', 'n2'], 'after the flush: the new epoch');
  assert.deepEqual(r3.position, { offset: 2, epoch: lost[0].epoch });
  for (const c of [c3, wc])
    c.close();
  await assertNoTimers('gap-offline', [c1, c2, c3, wc]);
});

test('gap-new-epoch', async () => {
  // A reader that asked for no history is away while Redis loses the room
  // and the writer says three more: back, it hears one gap (naming the new
  // epoch) and then the new epoch's three, which the server still holds,
  // then live ones: nothing the server has is missed, nothing twice.
  let away = false;
  const { rc, rr, g, wc, rw } = await readerAndWriter('epoch', { url: () => (away ? 'ws://127.0.0.1:9/' : URLS[0]) });
  for (const t of ['a1', 'a2'])
    rw.send(t);
  await waitFor(() => g.messages.length === 2, 'two before');
  const oldEpoch = rr.position.epoch;
  away = true;
  rc.reconnect();
  await waitFor(() => rc.state !== 'connected', 'the reader away');
  assert.equal(await redis('FLUSHALL'), '+OK');
  for (const t of ['n1', 'n2', 'n3'])
    rw.send(t);
  await waitFor(() => rw.position && rw.position.epoch !== oldEpoch && rw.position.offset === 3,
    "the writer's three in the new epoch", 15000);
  away = false;
  await waitFor(() => g.messages.length === 5, 'the new epoch after the reconnect');
  await joined(rr, 'reader again');
  rw.send('n4');
  await waitFor(() => g.messages.length === 6, 'a live one');
  await sleep(200);
  assertExactly(g.texts(), ['a1', 'a2', 'n1', 'n2', 'n3', 'n4'], 'gap-new-epoch');
  assert.equal(g.gaps.length, 1, 'one gap');
  assert.deepEqual([g.gaps[0].epoch, g.gaps[0].from, g.gaps[0].newEpoch], [oldEpoch, 3, rw.position.epoch]);
  assert.deepEqual(rr.position, rw.position);
  rc.close();
  wc.close();
  await assertNoTimers('gap-new-epoch', [rc, wc]);
});

test('token-refresh', async () => {
  // Tokens that live 3 s; getToken signs a new one each time. The server
  // would end the session 3 s + its 5 s leeway after the first; it outlives
  // that on one connection, refreshing before each token expires.
  let issued = 0;
  const getToken = () => { issued++; return signToken('tok', 3); };
  const spy = spyWebSocket();
  const c = track(new RoomdClient(URLS[0], { getToken, WebSocket: spy.WebSocket, reconnect: FAST }));
  const r = c.join('auth');
  const g = record(r);
  const errors = [];
  c.on('error', (e) => errors.push(e));
  c.connect();
  await joined(r, 'tok');
  assert.equal(c.name, 'tok', 'the name comes from the first token');
  const first = issued;
  await sleep(9000);
  assert.equal(spy.opened, 1, 'one connection all along');
  assert.ok(issued - first >= 3, `refreshed ${issued - first} times in 9 s`);
  const answers = spy.frames.filter((f) => f.event === 'refresh');
  assert.ok(answers.length >= 3 && answers.every((f) => f.exp > Date.now() / 1000 - 10), JSON.stringify(answers));
  assert.ok(tokenExpiry(c.token) > Date.now() / 1000);
  r.send('still here');
  await waitFor(() => g.messages.length === 1, 'a message after 9 s');
  assert.equal(g.messages[0].name, 'tok');
  assert.deepEqual(errors, []);
  c.close();
  await assertNoTimers('token-refresh', [c]);
});

test('token-expiry', async () => {
  // A token without a way to refresh it: at expiry the server closes with
  // 4001, and the client stops (an error, no reconnect loop).
  const spy = spyWebSocket();
  const c = track(new RoomdClient(URLS[0], { token: signToken('short', 2), WebSocket: spy.WebSocket, reconnect: FAST }));
  assert.equal(c.name, 'short');
  const r = c.join('auth');
  const errors = [];
  const gone = [];
  c.on('error', (e) => errors.push(e));
  c.on('disconnected', (d) => gone.push(d));
  c.connect();
  await joined(r, 'short');
  await waitFor(() => c.state === 'disconnected', 'the session ended at expiry', 15000);
  assert.equal(gone.at(-1).code, 4001);
  assert.equal(gone.at(-1).reconnect, false);
  assert.equal(errors.at(-1).code, 'auth');
  await sleep(500);
  assert.equal(spy.opened, 1, 'no reconnect with an expired token');
  await assertNoTimers('token-expiry', [c]);
});

test('send-queue', async () => {
  // While the client cannot connect, sends queue up to maxQueued and the rest
  // are refused with queue_full; once connected the queued ones go out, in order, once.
  let offline = false;
  const dead = 'ws://127.0.0.1:9/';   // discard port: nothing listens on it
  const c = client('sender', { url: () => (offline ? dead : URLS[0]), maxQueued: 5 });
  const r = c.join('queue');
  const errors = [];
  c.on('error', (e) => errors.push(e));
  c.connect();
  await joined(r, 'sender');
  const rc = client('reader');
  const rr = rc.join('queue');
  const g = record(rr);
  rc.connect();
  await joined(rr, 'reader');
  offline = true;
  c.reconnect();
  await sleep(100);
  assert.notEqual(c.state, 'connected');
  const took = [];
  for (let i = 1; i <= 7; i++)
    took.push(r.send(`q${i}`));
  assert.deepEqual(took, [true, true, true, true, true, false, false]);
  assert.deepEqual(errors.filter((e) => e.code === 'queue_full').map((e) => e.room), ['queue', 'queue']);
  offline = false;
  await waitFor(() => g.messages.length === 5, 'the five queued');
  await sleep(300);
  assertExactly(g.texts(), ['q1', 'q2', 'q3', 'q4', 'q5'], 'queued sends');
  c.close();
  rc.close();
  await assertNoTimers('send-queue', [c, rc]);
});

test('enter-errors', async () => {
  // The server's errors name no request; the client still knows which room
  // they answer. A token whose rooms claim leaves one room out: that room
  // fails (error forbidden, state left), the others work, and its queued
  // message is dropped with it. history above the server's history_size
  // (20 here): the client learns the limit from the error and enters with 20.
  const w = client('writer');
  const rw = w.join('open');
  w.connect();
  await joined(rw, 'writer');
  for (let i = 1; i <= 30; i++)
    rw.send(`o${i}`);
  await waitFor(() => rw.position && rw.position.offset === 30, "the writer's thirty");
  const c = track(new RoomdClient(URLS[0], { token: signToken('ann', 60, { rooms: ['open', 'other'] }), WebSocket,
    reconnect: FAST }));
  const errors = [];
  c.on('error', (e) => errors.push(e));
  const bad = c.join('closed');
  const gBad = record(bad);
  bad.send('into a closed room');
  const open = c.join('open', { history: 50 });
  const gOpen = record(open);
  const other = c.join('other');
  c.connect();
  await joined(open, 'open');
  await joined(other, 'other');
  assert.equal(bad.state, 'left');
  assert.deepEqual(gBad.errors.map((e) => e.code), ['forbidden']);
  assert.deepEqual(errors.map((e) => [e.code, e.room]), [['forbidden', 'closed']]);
  assert.equal(c.rooms.has('closed'), false);
  const want = [];
  for (let i = 11; i <= 30; i++)
    want.push(`o${i}`);
  assertExactly(gOpen.texts(), want, 'history 50 on a server that keeps 20');
  other.send('into the other room');
  await waitFor(() => other.position && other.position.offset === 1, 'a message in the other room');
  c.close();
  w.close();
  await assertNoTimers('enter-errors', [c, w]);
});
