// Helpers for the roomd-client tests (client.test.mjs): the servers are
// started by tests/test_js_client.py and named in the environment:
//   ROOMD_URLS      ws://127.0.0.1:PORT/ of each roomd instance, comma-separated
//   ROOMD_PIDFILES  their pidfiles (to signal a master or its workers)
//   REDIS_ADDR      host:port of the Redis they share (for FLUSHALL)
//   ROOMD_AUTH_SECRET  the auth_secret, when auth is on
// The ws package comes from NODE_PATH (tests/node's node_modules).
import { createRequire } from 'node:module';
import { createHmac } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';
import assert from 'node:assert/strict';

const require = createRequire(import.meta.url);
export const WebSocket = require('ws');

export const URLS = (process.env.ROOMD_URLS || '').split(',').filter(Boolean);
export const PIDFILES = (process.env.ROOMD_PIDFILES || '').split(',').filter(Boolean);
export const SECRET = process.env.ROOMD_AUTH_SECRET || '';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Poll pred until it holds; fail with what after timeout ms.
export async function waitFor(pred, what, timeout = 10000) {
  const end = Date.now() + timeout;
  for (;;) {
    if (await pred())
      return;
    if (Date.now() > end)
      throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(20);
  }
}

// A ws WebSocket that keeps every event the server sent, and counts connections.
export function spyWebSocket() {
  const spy = { frames: [], opened: 0 };
  spy.WebSocket = class extends WebSocket {
    constructor(...a) {
      super(...a);
      spy.opened++;
    }

    set onmessage(fn) {
      super.onmessage = fn && ((e) => {
        try { spy.frames.push(JSON.parse(e.data)); } catch (err) { /* not JSON */ }
        fn(e);
      });
    }

    get onmessage() {
      return super.onmessage;
    }
  };
  return spy;
}

// What a room handed the application: messages, gaps, errors, states.
export function record(room) {
  const r = { messages: [], gaps: [], errors: [], states: [], enters: [], outs: [] };
  room.on('message', (ev) => r.messages.push(ev));
  room.on('gap', (g) => r.gaps.push(g));
  room.on('error', (e) => r.errors.push(e));
  room.on('state', (s) => r.states.push(s));
  room.on('enter', (ev) => r.enters.push(ev));
  room.on('out', (ev) => r.outs.push(ev));
  r.texts = () => r.messages.map((m) => m.message);
  r.offsets = () => r.messages.map((m) => m.offset);
  return r;
}

// Every text exactly once, in the order sent.
export function assertExactly(got, want, what) {
  const dup = got.filter((t, i) => got.indexOf(t) !== i);
  assert.deepEqual(dup, [], `${what}: delivered twice: ${dup.slice(0, 5)}`);
  const missing = want.filter((t) => !got.includes(t));
  assert.deepEqual(missing, [], `${what}: never delivered: ${missing.slice(0, 5)} (of ${want.length})`);
  assert.deepEqual(got, want, `${what}: not in the order sent`);
}

// Offsets that only go up (within one epoch).
export function assertIncreasing(offsets, what) {
  for (let i = 1; i < offsets.length; i++)
    assert.ok(offsets[i] > offsets[i - 1], `${what}: offset ${offsets[i]} after ${offsets[i - 1]}`);
}

// No timer left after close(): none in the clients at once, and none in the
// process once the sockets' closing handshakes (ws's own timers) are over.
export async function assertNoTimers(what, clients) {
  for (const c of clients)
    assert.equal(c._timers.size, 0, `${what}: ${c.name} holds timers after close()`);
  const end = Date.now() + 3000;
  let left;
  do {
    await sleep(50);
    left = process.getActiveResourcesInfo().filter((x) => x === 'Timeout');
  } while (left.length > 0 && Date.now() < end);
  assert.deepEqual(left, [], `${what}: timers left in the process after close()`);
}

// The live worker pids of the roomd whose pidfile is given.
export function workerPids(pidfile) {
  const master = Number(readFileSync(pidfile, 'utf8').trim());
  const out = [];
  for (const task of readdirSync(`/proc/${master}/task`)) {
    let kids = '';
    try { kids = readFileSync(`/proc/${master}/task/${task}/children`, 'utf8'); } catch (e) { continue; }
    for (const k of kids.split(/\s+/).filter(Boolean)) {
      try {
        const comm = readFileSync(`/proc/${k}/comm`, 'utf8').trim();
        const state = readFileSync(`/proc/${k}/stat`, 'utf8').split(') ')[1][0];
        if (comm.startsWith('roomd-w') && state !== 'Z')
          out.push(Number(k));
      } catch (e) { /* gone */ }
    }
  }
  return out.sort((a, b) => a - b);
}

export function masterPid(pidfile) {
  return Number(readFileSync(pidfile, 'utf8').trim());
}

// One Redis command over RESP; the reply's first line.
export function redis(...args) {
  const [host, port] = (process.env.REDIS_ADDR || '127.0.0.1:6379').split(':');
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(port), host);
    let buf = '';
    s.on('connect', () => s.write(`*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')));
    s.on('data', (d) => {
      buf += d;
      if (buf.includes('\r\n')) {
        s.end();
        resolve(buf.split('\r\n')[0]);
      }
    });
    s.on('error', reject);
  });
}

const b64url = (b) => Buffer.from(b).toString('base64url');

// An HS256 JWT for sub, valid for ttl seconds (and extra claims, e.g. rooms).
export function signToken(sub, ttl, extra = {}, secret = SECRET) {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify(Object.assign({ sub, exp: Math.floor(Date.now() / 1000) + ttl }, extra)));
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

const writers = new Set();

// Stop every writer (after a test, passed or failed).
export function stopWriters() {
  for (const w of writers)
    w.stop();
}

// A writer that says w0, w1, ... every `every` ms until stop(); sent lists them.
export function writer(room, prefix, every = 5) {
  const sent = [];
  let k = 0, timer = null, stopped = false;
  const tick = () => {
    if (stopped)
      return;
    const t = `${prefix}${k++}`;
    if (room.send(t))
      sent.push(t);
    timer = setTimeout(tick, every);
  };
  tick();
  const w = {
    sent,
    stop() {
      stopped = true;
      clearTimeout(timer);
      writers.delete(w);
    },
  };
  writers.add(w);
  return w;
}
