// lib.js: shared helpers for the roomd interoperability scripts. Each script
// takes a ws:// URL as argv[2], prints one result line and exits 0 or 1.
'use strict';

const WebSocket = require('ws');

const SIZES = [0, 1, 125, 126, 127, 65535, 65536];

// Open a connection; resolves with a socket whose messages are queued for next()
// and whose ws.upgradeHeaders are the 101's headers (lower-case names).
function open(url, options = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, options.protocols, { maxPayload: 64 << 20, ...options });
    ws.queue = [];
    ws.waiters = [];
    ws.on('upgrade', (res) => { ws.upgradeHeaders = res.headers; });
    ws.on('message', (data, isBinary) => {
      const m = { data, isBinary };
      if (ws.waiters.length) ws.waiters.shift().resolve(m);
      else ws.queue.push(m);
    });
    ws.on('close', (code, reason) => {
      ws.closed = { code, reason: reason.toString() };
      for (const w of ws.waiters.splice(0)) w.reject(new Error(`closed with ${code} while waiting for a message`));
    });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (req, res) => reject(new Error(`HTTP ${res.statusCode} instead of 101`)));
  });
}

// The next message on ws.
function next(ws, ms = 10000) {
  if (ws.queue.length) return Promise.resolve(ws.queue.shift());
  if (ws.closed) return Promise.reject(new Error(`closed with ${ws.closed.code}`));
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no message within ' + ms + 'ms')), ms);
    ws.waiters.push({
      resolve: (m) => { clearTimeout(t); resolve(m); },
      reject: (e) => { clearTimeout(t); reject(e); },
    });
  });
}

// Send data and check that the same bytes come back with the same type.
async function roundTrip(ws, data, what) {
  const binary = Buffer.isBuffer(data);
  ws.send(data, { binary });
  const m = await next(ws);
  if (m.isBinary !== binary) throw new Error(`${what}: came back as ${m.isBinary ? 'binary' : 'text'}`);
  const want = binary ? data : Buffer.from(data, 'utf8');
  if (!Buffer.from(m.data).equals(want)) throw new Error(`${what}: echo differs (${m.data.length} bytes, want ${want.length})`);
}

// Close with code and resolve with what the server's close frame said.
function closeWith(ws, code, reason = '') {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no close reply to ${code}`)), 5000);
    ws.once('close', (c, r) => { clearTimeout(t); resolve({ code: c, reason: r.toString() }); });
    ws.close(code, reason);
  });
}

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

// Run fn(url) and report: "<name>: ok (detail)" or "<name>: FAIL <why>".
function main(name, fn) {
  const url = process.argv[2];
  if (!url || !/^wss?:\/\//.test(url)) {
    console.log(`${name}: FAIL usage: node ${name}.js ws://HOST:PORT/PATH`);
    process.exit(1);
  }
  const timer = setTimeout(() => {
    console.log(`${name}: FAIL timed out`);
    process.exit(1);
  }, 60000);
  fn(url).then((detail) => {
    clearTimeout(timer);
    console.log(`${name}: ok${detail ? ` (${detail})` : ''}`);
    process.exit(0);
  }, (err) => {
    clearTimeout(timer);
    console.log(`${name}: FAIL ${err && err.message ? err.message : err}`);
    process.exit(1);
  });
}

module.exports = { SIZES, open, next, roundTrip, closeWith, check, main };
