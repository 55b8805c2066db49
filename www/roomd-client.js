// roomd-client: the JavaScript client of roomd's chat protocol (roomd-protocol(7)),
// for browsers and Node >= 18, with no dependencies. It answers heartbeats,
// reconnects with backoff and jitter, re-enters every room with its last
// position, and hands the application each message exactly once, in offset order.
//
// This file is the one source: roomd serves it from www/ to its own chat page,
// and the npm package roomd-client (clients/js) ships the same bytes.

const PING = '{"event":"heartbeat","message":"ping"}';
const PONG = '{"event":"heartbeat","message":"pong"}';

const DEFAULTS = {
  reconnect: { minDelay: 500, maxDelay: 20000, jitter: 0.5 },
  maxQueued: 100,          // messages waiting to be sent, per client
  maxBuffered: 10000,      // messages held per room while it catches up
  maxSocketBuffer: 1 << 20, // bytes the socket may hold unsent before we queue instead
  refreshMargin: 30000,    // refresh the token this long before it expires
  pingInterval: 25000,     // ping a silent server after this long
  pongTimeout: 10000,      // and give up on it this long after
  queryTimeout: 10000,     // who() and history() answers
  answerTimeout: 5000,     // for the handshake, an enter, a token refresh; then a new connection
  storagePrefix: 'roomd-client:',
};

// Codes with which an enter fails for good (the others are worth a retry).
const ENTER_FATAL = new Set(['forbidden', 'too_many_rooms', 'bad_field']);

/** An error the server sent ({"event":"error"}) or the client made up; `code` says which. */
export class RoomdError extends Error {
  constructor(code, message, room) {
    super(message || code);
    this.name = 'RoomdError';
    this.code = code;
    this.room = room || null;
  }
}

// The claims of a JWT (its payload, unverified: the server checks it), or {}.
function claimsOf(token) {
  try {
    const part = String(token).split('.')[1];
    const claims = JSON.parse(atob(part.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((part.length + 3) % 4)));
    return claims && typeof claims === 'object' ? claims : {};
  } catch (e) {
    return {};
  }
}

/** The "exp" claim of a JWT, in seconds since the epoch, or null (no exp, or not a JWT). */
export function tokenExpiry(token) {
  const exp = claimsOf(token).exp;
  return typeof exp === 'number' ? exp : null;
}

/** A storage adapter that lives as long as the process (the Web Storage calls over a Map). */
export function memoryStorage() {
  const m = new Map();
  return {
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => { m.set(k, String(v)); },
    removeItem: (k) => { m.delete(k); },
  };
}

// A minimal emitter: on() returns its own undo; a throwing listener is reported
// asynchronously and never breaks the client's state in the middle of an update.
class Emitter {
  constructor() {
    this._listeners = new Map();
  }

  on(name, fn) {
    if (!this._listeners.has(name))
      this._listeners.set(name, new Set());
    this._listeners.get(name).add(fn);
    return () => this.off(name, fn);
  }

  once(name, fn) {
    const off = this.on(name, (...a) => { off(); fn(...a); });
    return off;
  }

  off(name, fn) {
    const s = this._listeners.get(name);
    if (s)
      s.delete(fn);
  }

  _emit(name, ...args) {
    const s = this._listeners.get(name);
    if (!s)
      return;
    for (const fn of [...s]) {
      try {
        fn(...args);
      } catch (e) {
        queueMicrotask(() => { throw e; });
      }
    }
  }
}

/**
 * One room the client is in. Made by client.join(); its events are message,
 * enter, out, gap, state and error.
 */
export class Room extends Emitter {
  constructor(client, id, history) {
    super();
    this.client = client;
    this.id = id;
    this.state = 'connecting';
    this.num = null;
    this._k = history;
    this._pos = null;        // {offset, epoch} of the last message delivered (or skipped on purpose)
    this._resume = false;    // _pos came from storage: the first catch-up also fetches context
    this._unsure = false;    // the server said it lost messages: the epoch must be learnt again
    this._sinceUnsure = false; // a message was delivered since then
    this._entered = false;   // enter sent on the current connection
    this._echoed = false;    // its own enter came back on the current connection
    this._catch = null;      // the catch-up asked on this connection, until "recovered"
    this._ctx = null;        // waiting for the context of a resumed join
    this._queries = [];      // who() and history() waiting for their answers, in order
    this._retry = null;      // timer of an enter to send again
    this._fails = 0;         // enters refused in a row (rate limited, Redis away)
  }

  /** The room's position: the last message the application was handed, or null. */
  get position() {
    return this._pos ? { offset: this._pos.offset, epoch: this._pos.epoch } : null;
  }

  /** Say text in the room; false (and an error event) when the send queue is full. */
  send(text) {
    return this.client._say(this, text);
  }

  /** The names of everyone in the room: {members, num}. */
  who() {
    return this.client._query(this, 'who', { event: 'who', roomid: this.id });
  }

  /** A page of the room's history, oldest first: {messages, offset, epoch}. */
  history({ before, limit } = {}) {
    const f = { event: 'history', roomid: this.id };
    if (limit !== undefined) {
      if (!Number.isInteger(limit) || limit < 1)
        return Promise.reject(new TypeError('history: limit must be a whole number >= 1'));
      f.limit = limit;
    }
    if (before !== undefined) {
      if (!Number.isInteger(before) || before < 0)
        return Promise.reject(new TypeError('history: before must be a whole number (an offset)'));
      f.before = before;
    }
    return this.client._query(this, 'history', f);
  }

  /** Leave the room: the server hears "out", the stored position is forgotten. */
  leave() {
    this.client._leave(this);
  }

  _setState(s) {
    if (s === this.state)
      return;
    const prev = this.state;
    this.state = s;
    this._emit('state', s, prev);
  }
}

/**
 * A connection to roomd that keeps itself up: new RoomdClient(url, options),
 * join() rooms, connect(). Events: state, connected, disconnected, error.
 */
export class RoomdClient extends Emitter {
  constructor(url, options = {}) {
    super();
    if (typeof url !== 'string' && typeof url !== 'function')
      throw new TypeError('RoomdClient: url must be a string or a function returning one');
    this.url = url;
    this.options = Object.assign({}, DEFAULTS, options);
    this.options.reconnect = Object.assign({}, DEFAULTS.reconnect, options.reconnect);
    this._WebSocket = options.WebSocket || null;
    this.token = options.token || null;
    this.name = options.name || null;
    if (!this.name && this.token && typeof claimsOf(this.token).sub === 'string')
      this.name = claimsOf(this.token).sub;
    if (!this.name && !options.getToken)
      throw new TypeError('RoomdClient: a name is needed (options.name, or a token with "sub")');
    this.state = 'disconnected';
    this.rooms = new Map();
    this._ws = null;
    this._wanted = false;    // connect() was called and close() was not
    this._attempt = 0;
    this._timers = new Set();
    this._retryTimer = null;
    this._refreshTimer = null;
    this._liveTimer = null;
    this._backlogTimer = null;
    this._windowTimer = null;
    this._control = [];      // enters and refreshes, each waiting for the answer before the next
    this._window = null;     // the one in flight: {kind, room}; errors meanwhile are its
    this._outbox = [];       // messages and queries, sent in order once no window is open
    this._queued = 0;        // messages among them
    this._histMax = null;    // the server's history_size, once an error told it
    this._lastRecv = 0;
    this._pinged = false;
  }

  /** Start connecting (and keep reconnecting until close()). */
  connect() {
    if (this._wanted)
      return;
    this._wanted = true;
    this._attempt = 0;
    this._open();
  }

  /** Close for good: no reconnect, no timer left. Rooms keep their positions for a later connect(). */
  close() {
    const was = this._wanted;
    this._wanted = false;
    for (const t of this._timers)
      clearTimeout(t);
    this._timers.clear();
    this._retryTimer = this._refreshTimer = this._liveTimer = this._backlogTimer = this._windowTimer = null;
    for (const r of this.rooms.values())
      r._retry = null;
    this._drop(1000, 'closed by the client');
    this._setState('disconnected');
    if (was)
      this._emit('disconnected', { code: 1000, reason: 'closed by the client', reconnect: false, delay: null });
  }

  /** Drop the connection and open a new one now (a network change; tests). */
  reconnect() {
    if (!this._wanted)
      return;
    this._clearTimer('_retryTimer');
    this._drop(1000, 'reconnecting');
    this._emit('disconnected', { code: 1000, reason: 'reconnect', reconnect: true, delay: 0 });
    this._open();
  }

  /** Enter a room (now, or when connected); history: the last K messages to hand over on entering. */
  join(roomid, { history = 0 } = {}) {
    if (typeof roomid !== 'string' || roomid === '')
      throw new TypeError('join: the room id must be a non-empty string');
    if (!Number.isInteger(history) || history < 0)
      throw new TypeError('join: history must be a whole number >= 0');
    let room = this.rooms.get(roomid);
    if (room)
      return room;
    room = new Room(this, roomid, history);
    const stored = this._load(roomid);
    if (stored) {
      room._pos = stored;
      room._resume = true;
    }
    this.rooms.set(roomid, room);
    if (this.state === 'connected') {
      this._control.push({ kind: 'enter', room });
      this._pump();
    }
    return room;
  }

  // ---- the connection ----

  _setState(s) {
    if (s === this.state)
      return;
    const prev = this.state;
    this.state = s;
    for (const r of this.rooms.values())
      if (s !== 'connected' && r.state !== 'left')
        r._setState('connecting');
    this._emit('state', s, prev);
  }

  _timer(fn, ms) {
    const t = setTimeout(() => { this._timers.delete(t); fn(); }, ms);
    this._timers.add(t);
    return t;
  }

  _clearTimer(field) {
    if (this[field]) {
      clearTimeout(this[field]);
      this._timers.delete(this[field]);
      this[field] = null;
    }
  }

  async _open() {
    this._retryTimer = null;
    if (!this._wanted)
      return;
    this._setState('connecting');
    const WS = this._WebSocket || globalThis.WebSocket;
    if (typeof WS !== 'function') {
      this._wanted = false;
      this._setState('disconnected');
      this._emit('error', new RoomdError('no_websocket',
        'no WebSocket: pass options.WebSocket (e.g. the ws package) on Node < 22'));
      return;
    }
    let url;
    try {
      url = String(typeof this.url === 'function' ? this.url() : this.url);
      const tok = await this._freshToken();
      if (tok)
        url += (url.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(tok);
    } catch (e) {
      this._emit('error', new RoomdError(url === undefined ? 'connect' : 'token',
        (url === undefined ? 'url() failed: ' : 'getToken failed: ') + (e && e.message || e)));
      this._retry({ code: 0, reason: url === undefined ? 'no url' : 'no token' });
      return;
    }
    if (!this._wanted || this._ws)
      return;
    let ws;
    try {
      ws = new WS(url);
    } catch (e) {
      this._emit('error', new RoomdError('connect', String(e && e.message || e)));
      this._retry({ code: 0, reason: 'bad url' });
      return;
    }
    this._ws = ws;
    this._clearTimer('_windowTimer');
    this._windowTimer = this._timer(() => {
      this._windowTimer = null;
      this._drop(1000, 'no answer', true);
      this._retry({ code: 1006, reason: 'the handshake took too long' });
    }, this.options.answerTimeout);
    ws.onopen = () => { if (ws === this._ws) this._onOpen(); };
    ws.onmessage = (e) => { if (ws === this._ws) this._onFrame(e.data); };
    ws.onclose = (e) => { if (ws === this._ws) this._onClose(e.code, e.reason); };
    ws.onerror = () => {};   // the close that follows says it
  }

  // The token to connect with: a new one when there is none or it is about to expire.
  async _freshToken() {
    const get = this.options.getToken;
    if (get && (!this.token || this._tokenDelay() <= 0)) {
      const t = await get();
      if (typeof t !== 'string' || t === '')
        throw new Error('getToken returned no token');
      this.token = t;
      if (!this.name)
        this.name = typeof claimsOf(t).sub === 'string' ? claimsOf(t).sub : 'anonymous';
    }
    return this.token;
  }

  // Milliseconds until the token should be refreshed; Infinity when it never expires.
  _tokenDelay() {
    const exp = this.token ? tokenExpiry(this.token) : null;
    if (exp === null)
      return Infinity;
    const left = exp * 1000 - Date.now();
    return left - Math.min(this.options.refreshMargin, left / 2);
  }

  _onOpen() {
    this._clearTimer('_windowTimer');
    this._lastRecv = Date.now();
    this._pinged = false;
    this._window = null;
    this._control = [];
    for (const r of this.rooms.values()) {
      r._entered = r._echoed = false;
      r._catch = r._ctx = null;
      this._control.push({ kind: 'enter', room: r });
    }
    if (this.rooms.size === 0)
      this._attempt = 0;
    this._setState('connected');
    this._emit('connected');
    this._scheduleRefresh();
    this._armLive();
    this._pump();
  }

  _onClose(code, reason) {
    this._ws = null;
    this._reset();
    if (!this._wanted)
      return;
    if (code === 4001 && !this.options.getToken) {
      // The token expired or was refused, and there is no way to get another.
      this._wanted = false;
      this._clearAll();
      this._setState('disconnected');
      this._emit('error', new RoomdError('auth', reason || 'the server refused the token (4001)'));
      this._emit('disconnected', { code, reason, reconnect: false, delay: null });
      return;
    }
    if (code === 4001)
      this.token = null;   // get a fresh one before the next try
    this._retry({ code, reason });
  }

  _retry({ code, reason }) {
    if (!this._wanted)
      return;
    const o = this.options.reconnect;
    const base = Math.min(o.maxDelay, o.minDelay * 2 ** Math.min(this._attempt, 30));
    const delay = Math.round(base * (1 - o.jitter * Math.random()));
    this._attempt++;
    this._setState('connecting');
    this._emit('disconnected', { code, reason, reconnect: true, delay });
    this._clearTimer('_retryTimer');
    this._retryTimer = this._timer(() => this._open(), delay);
  }

  // Forget the socket (it is not ours any more) without waiting for its close;
  // one whose peer stopped answering is cut (ws's terminate) rather than
  // left waiting for a closing handshake that will not come.
  _drop(code, reason, dead = false) {
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.onerror = () => {};
      try {
        if (dead && typeof ws.terminate === 'function')
          ws.terminate();
        else
          ws.close(code, reason);
      } catch (e) { /* already closing */ }
    }
    this._reset();
  }

  // What belonged to the connection that ended: windows, catch-ups, queries in flight.
  _reset() {
    this._window = null;
    this._clearTimer('_windowTimer');
    this._control = [];
    this._clearTimer('_liveTimer');
    this._clearTimer('_refreshTimer');
    this._clearTimer('_backlogTimer');
    for (const r of this.rooms.values()) {
      r._entered = r._echoed = false;
      r._catch = r._ctx = null;
      if (r._retry) {
        clearTimeout(r._retry);
        this._timers.delete(r._retry);
        r._retry = null;
      }
      this._failQueries(r, new RoomdError('disconnected', 'the connection closed', r.id));
    }
    // Queries not yet sent fail too; messages stay queued.
    this._outbox = this._outbox.filter((o) => o.kind === 'message');
  }

  _clearAll() {
    for (const t of this._timers)
      clearTimeout(t);
    this._timers.clear();
    this._retryTimer = this._refreshTimer = this._liveTimer = this._backlogTimer = this._windowTimer = null;
  }

  // A silent server is pinged, and dropped if it stays silent.
  _armLive() {
    const o = this.options;
    this._clearTimer('_liveTimer');
    const quiet = Date.now() - this._lastRecv;
    if (this._pinged && quiet >= o.pingInterval + o.pongTimeout) {
      this._drop(1000, 'no answer', true);
      this._retry({ code: 1006, reason: 'the server stopped answering' });
      return;
    }
    if (!this._pinged && quiet >= o.pingInterval) {
      this._pinged = true;
      this._raw(PING);
    }
    const next = this._pinged ? o.pingInterval + o.pongTimeout - quiet : o.pingInterval - quiet;
    this._liveTimer = this._timer(() => this._armLive(), Math.max(50, next));
  }

  _scheduleRefresh() {
    this._clearTimer('_refreshTimer');
    if (!this.options.getToken || !this.token)
      return;
    const d = this._tokenDelay();
    if (d === Infinity)
      return;
    this._refreshTimer = this._timer(() => this._refresh(), Math.max(0, Math.min(d, 2 ** 31 - 1)));
  }

  async _refresh() {
    this._refreshTimer = null;
    const ws = this._ws;
    let tok;
    try {
      tok = await this.options.getToken();
    } catch (e) {
      tok = null;
    }
    if (ws !== this._ws || !ws)
      return;
    if (typeof tok !== 'string' || tok === '') {
      this._emit('error', new RoomdError('token', 'getToken failed; trying again'));
      this._refreshTimer = this._timer(() => this._refresh(), 1000);
      return;
    }
    this.token = tok;
    this._control.push({ kind: 'refresh', token: tok });
    this._pump();
  }

  // Whether frames may go out now: a closing socket takes them and drops them.
  _open1() {
    return this._ws !== null && this._ws.readyState === 1 && this.state === 'connected';
  }

  _raw(s) {
    try {
      this._ws.send(s);
      return true;
    } catch (e) {
      return false;
    }
  }

  _send(obj) {
    return this._raw(JSON.stringify(obj));
  }

  // Send what may go now: the next enter or refresh (one at a time, so an error
  // is known to be its answer), else the queued messages and queries in order.
  _pump() {
    const ws = this._ws;
    if (!this._open1())
      return;
    while (!this._window && this._control.length > 0) {
      const op = this._control.shift();
      if (op.kind === 'enter') {
        if (op.room.state === 'left' || this.rooms.get(op.room.id) !== op.room || op.room._echoed)
          continue;
        this._window = { kind: 'enter', room: op.room };
        this._sendEnter(op.room);
      } else {
        this._window = { kind: 'refresh' };
        this._send({ event: 'refresh', token: op.token });
      }
    }
    if (this._window) {
      // A server that never answers (seen after a worker restart) is left for another connection.
      if (!this._windowTimer)
        this._windowTimer = this._timer(() => {
          this._windowTimer = null;
          const w = this._window;
          this._emit('error', new RoomdError('timeout', `no answer to ${w.kind === 'enter' ? 'entering' : 'the token refresh'}` +
            ` in ${this.options.answerTimeout} ms; reconnecting`, w.room ? w.room.id : null));
          this._drop(1000, 'no answer', true);
          this._retry({ code: 1006, reason: 'the server did not answer' });
        }, this.options.answerTimeout);
      return;
    }
    while (this._outbox.length > 0) {
      const o = this._outbox[0];
      if (!o.room._entered && o.room.state !== 'left')
        return;     // its enter is being retried
      if (ws.bufferedAmount > this.options.maxSocketBuffer) {
        if (!this._backlogTimer)
          this._backlogTimer = this._timer(() => { this._backlogTimer = null; this._pump(); }, 50);
        return;
      }
      this._outbox.shift();
      if (o.kind === 'message') {
        this._queued--;
        if (o.room.state === 'left')
          continue;
        this._send({ event: 'message', message: o.text, roomid: o.room.id });
      } else if (o.room.state === 'left') {
        this._settle(o.q, new RoomdError('left', 'you left the room', o.room.id));
      } else {
        o.room._queries.push(o.q);
        this._send(o.frame);
      }
    }
  }

  // The enter: with the last position when there is one, else asking for
  // history so the answer ("recovered") says where the room is.
  _sendEnter(room) {
    const f = { event: 'enter', message: this.name, roomid: room.id };
    let k = room._k;
    if (this._histMax !== null)
      k = Math.min(k, this._histMax);
    if (room._pos && room._pos.epoch) {
      f.since = { offset: room._pos.offset, epoch: room._pos.epoch };
      if (k > 0)
        f.history = k;
      room._catch = { since: room._pos, hide: false, k, buf: [], overflow: false };
    } else if (this._histMax !== 0) {
      f.history = Math.max(k, 1);
      room._catch = { since: null, hide: k === 0, k, buf: [], overflow: false };
    } else {
      room._catch = null;     // a server without history: the room starts now
    }
    room._entered = true;
    room._setState('joining');
    this._send(f);
  }

  _closeWindow() {
    this._window = null;
    this._clearTimer('_windowTimer');
    this._pump();
  }

  // ---- what the server says ----

  _onFrame(data) {
    this._lastRecv = Date.now();
    this._pinged = false;
    let ev;
    try {
      ev = JSON.parse(typeof data === 'string' ? data : String(data));
    } catch (e) {
      return;
    }
    if (!ev || typeof ev !== 'object')
      return;
    const room = typeof ev.roomid === 'string' ? this.rooms.get(ev.roomid) : null;
    if (room && typeof ev.num === 'number')
      room.num = ev.num;
    switch (ev.event) {
      case 'heartbeat':
        if (ev.message === 'ping')
          this._raw(PONG);
        if (typeof ev.num === 'number' && this.rooms.size === 1)
          for (const r of this.rooms.values())
            r.num = ev.num;
        break;
      case 'message':
        if (room)
          this._onMessage(room, ev);
        break;
      case 'enter':
        if (room)
          this._onEnter(room, ev);
        break;
      case 'out':
        if (room && room.state !== 'left')
          room._emit('out', ev);
        break;
      case 'recovered':
        if (room)
          this._onRecovered(room, ev);
        break;
      case 'who':
      case 'history':
        if (room)
          this._onAnswer(room, ev);
        break;
      case 'refresh':
        if (this._window && this._window.kind === 'refresh')
          this._closeWindow();
        this._scheduleRefresh();
        break;
      case 'noAuth':
        this._emit('error', new RoomdError('no_auth', ev.message || 'not allowed'));
        break;
      case 'error':
        this._onError(ev);
        break;
    }
  }

  _onEnter(room, ev) {
    if (room.state === 'left')
      return;
    if (!room._echoed) {
      // The first enter of the room on this connection is our own: a member
      // gets nothing of a room before it (and a non-member nothing at all).
      room._echoed = true;
      room._entered = true;
      room._fails = 0;
      if (room._retry) {
        clearTimeout(room._retry);
        this._timers.delete(room._retry);
        room._retry = null;
      }
      if (!room._catch)
        this._joined(room);
      room._emit('enter', ev);
      if (this._window && this._window.room === room)
        this._closeWindow();
      return;
    }
    room._emit('enter', ev);
  }

  _joined(room) {
    this._attempt = 0;
    room._setState('joined');
  }

  _onMessage(room, ev) {
    if (room.state === 'left' || typeof ev.offset !== 'number')
      return;
    if (room._catch) {
      const c = room._catch;
      if (c.buf.length < this.options.maxBuffered)
        c.buf.push(ev);
      else
        c.overflow = true;
      return;
    }
    if (room._ctx) {
      if (room._ctx.live.length < this.options.maxBuffered) {
        room._ctx.live.push(ev);
        return;
      }
      this._contextDone(room, null);   // too much meanwhile: go on without the context
    }
    this._deliver(room, ev);
  }

  // Hand a message to the application unless it had it already; remember where it is.
  _deliver(room, ev) {
    const p = room._pos;
    if (p && !room._unsure && ev.offset <= p.offset)
      return;
    if (room._unsure)
      room._sinceUnsure = true;
    room._pos = { offset: ev.offset, epoch: p ? p.epoch : null };
    this._save(room);
    room._emit('message', ev);
  }

  _onRecovered(room, ev) {
    if (room.state === 'left')
      return;
    const c = room._catch;
    if (!c) {
      if (ev.recovered === false)
        this._lostLive(room, ev);
      return;
    }
    room._catch = null;
    const same = c.since && ev.epoch === c.since.epoch;
    let list = c.buf.slice().sort((a, b) => a.offset - b.offset);
    let gap = null;
    if (c.since) {
      if (same)
        list = list.filter((m) => m.offset > c.since.offset);
      if (ev.recovered === false || c.overflow) {
        const to = same ? (list.length > 0 ? list[0].offset - 1 : ev.offset) : null;
        gap = { roomid: room.id, epoch: c.since.epoch, from: c.since.offset + 1,
          to: to !== null && to >= c.since.offset + 1 ? to : null, newEpoch: !same ? ev.epoch : null };
        if (c.overflow)
          list = [];
      }
    } else {
      list = c.hide ? [] : list.slice(-c.k);
      if (ev.recovered === false)
        gap = { roomid: room.id, epoch: ev.epoch, from: null, to: null, newEpoch: null };
    }
    room._unsure = false;
    const first = list.length > 0 ? list[0].offset - 1 : ev.offset;
    // Back into a new epoch (Redis lost the room while we were away): what
    // the new epoch holds before the first message we have is not lost; it is
    // fetched (at most history_size, 50 while that is unknown, maxBuffered)
    // and handed over after the gap, before anything newer.
    if (gap && gap.newEpoch && !c.overflow && first > 0 && this._histMax !== 0) {
      room._resume = false;
      room._emit('gap', gap);
      room._ctx = { rec: ev, list, since: { offset: first, epoch: ev.epoch }, live: [] };
      room._pos = { offset: 0, epoch: ev.epoch };    // a reconnect meanwhile asks from there
      this._save(room);
      const limit = Math.min(first, this._histMax !== null ? this._histMax : 50, this.options.maxBuffered);
      this._query(room, 'history', { event: 'history', roomid: room.id, limit, before: first + 1 }, true)
        .then((h) => this._contextDone(room, h), () => this._contextDone(room, null));
      return;
    }
    // A resumed join (position from storage) that missed fewer than K: the
    // ones before its position are fetched too, so the application sees the
    // last K as on a first entry, each once, before anything newer.
    const want = c.k - list.length;
    if (room._resume && !gap && c.since && want > 0 && c.since.offset > 0 && this._histMax !== 0) {
      room._ctx = { rec: ev, list, since: c.since, live: [] };
      const limit = this._histMax !== null ? Math.min(want, this._histMax) : want;
      this._query(room, 'history', { event: 'history', roomid: room.id, limit, before: c.since.offset + 1 }, true)
        .then((h) => this._contextDone(room, h), () => this._contextDone(room, null));
      return;
    }
    room._resume = false;
    if (gap)
      room._emit('gap', gap);
    room._pos = { offset: Math.min(first, ev.offset), epoch: ev.epoch };
    for (const m of list)
      this._deliver(room, m);
    room._pos = { offset: ev.offset, epoch: ev.epoch };
    this._save(room);
    this._joined(room);
  }

  // The context of a resumed join came (h) or could not be had (null): hand
  // over context, what was missed, and what arrived meanwhile, in order.
  _contextDone(room, h) {
    const x = room._ctx;
    if (!x || this.rooms.get(room.id) !== room)
      return;
    room._ctx = null;
    room._resume = false;
    let ctx = [];
    if (h && h.epoch === x.rec.epoch && Array.isArray(h.messages))
      ctx = h.messages.filter((m) => typeof m.offset === 'number' && m.offset <= x.since.offset)
        .sort((a, b) => a.offset - b.offset);
    const all = ctx.concat(x.list);
    room._pos = { offset: all.length > 0 ? all[0].offset - 1 : x.rec.offset, epoch: x.rec.epoch };
    for (const m of all)
      this._deliver(room, m);
    if (room._pos.offset < x.rec.offset)
      room._pos = { offset: x.rec.offset, epoch: x.rec.epoch };
    this._save(room);
    this._joined(room);
    for (const m of x.live)
      this._onMessage(room, m);
  }

  // The server lost messages of a room we are in. If it says up to where, we
  // carry on after that; if not (the room's history restarted, or the server
  // starts over from its next message), the epoch is learnt again.
  _lostLive(room, ev) {
    const p = room._pos;
    const same = p && ev.epoch === p.epoch;
    room._emit('gap', { roomid: room.id, epoch: ev.epoch, from: same ? p.offset + 1 : null,
      to: same && ev.offset > p.offset ? ev.offset : null, newEpoch: null });
    if (same && ev.offset > p.offset) {
      room._pos = { offset: ev.offset, epoch: ev.epoch };
      this._save(room);
      return;
    }
    room._unsure = true;
    room._sinceUnsure = false;
    if (this._histMax !== 0)
      this._query(room, 'history', { event: 'history', roomid: room.id, limit: 1 }, true).catch(() => {});
  }

  // The position after a loss: the epoch an answer names, and 0 in it when
  // nothing of that epoch was delivered yet.
  _learnEpoch(room, epoch) {
    if (!room._unsure || typeof epoch !== 'string' || epoch === '')
      return;
    room._unsure = false;
    const p = room._pos;
    if (!p || p.epoch !== epoch)
      room._pos = { offset: room._sinceUnsure && p ? p.offset : 0, epoch };
    this._save(room);
  }

  _onAnswer(room, ev) {
    const i = room._queries.findIndex((q) => q.kind === ev.event);
    if (ev.event === 'history')
      this._learnEpoch(room, ev.epoch);
    if (i < 0)
      return;
    const q = room._queries.splice(i, 1)[0];
    this._settle(q, null, ev.event === 'who' ? { members: ev.members || [], num: ev.num }
      : { messages: ev.messages || [], offset: ev.offset, epoch: ev.epoch });
  }

  _onError(ev) {
    const code = typeof ev.code === 'string' ? ev.code : 'error';
    const msg = typeof ev.message === 'string' ? ev.message : code;
    const w = this._window;
    // An enter that asked for more history than the server keeps: it says how much.
    const hm = /"history" must be a whole number from 0 to (\d+)/.exec(msg);
    if (hm && w && w.kind === 'enter') {
      this._histMax = Number(hm[1]);
      const room = w.room;
      room._entered = false;
      room._catch = null;
      this._control.unshift({ kind: 'enter', room });
      this._closeWindow();
      return;
    }
    if (code === 'bad_field' && /"limit"|keeps no history/.test(msg)) {
      const lm = /from 1 to (\d+)/.exec(msg);
      this._histMax = lm ? Number(lm[1]) : 0;
      for (const r of this.rooms.values()) {
        const i = r._queries.findIndex((q) => q.kind === 'history' && (this._histMax === 0 || q.limit > this._histMax));
        if (i >= 0) {
          const q = r._queries.splice(i, 1)[0];
          this._settle(q, new RoomdError(code, msg, r.id));
          if (!q.internal)
            this._emit('error', new RoomdError(code, msg, r.id));
          return;
        }
      }
    }
    if (w && w.kind === 'enter') {
      const room = w.room;
      const err = new RoomdError(code, msg, room.id);
      if (code === 'already_in_room') {
        this._closeWindow();     // an enter sent again after all went through: its enter event comes
        return;
      }
      if (ENTER_FATAL.has(code)) {
        this._emit('error', err);
        room._emit('error', err);
        this._forget(room, err);
      } else {
        // Rate limited, Redis away, no memory: the same enter again after a
        // backoff, unless its enter event shows it went through meanwhile
        // (the catch-up it asked for stays expected until then). Said once
        // per run of refusals, not once a second while Redis is away.
        if (room._fails++ === 0) {
          this._emit('error', err);
          room._emit('error', err);
        }
        room._entered = false;
        const delay = Math.min(this.options.reconnect.maxDelay, 1000 * 2 ** Math.min(room._fails - 1, 10));
        room._retry = this._timer(() => {
          room._retry = null;
          if (!room._echoed && this.rooms.get(room.id) === room && this.state === 'connected') {
            this._control.push({ kind: 'enter', room });
            this._pump();
          }
        }, delay);
      }
      this._closeWindow();
      return;
    }
    if (w && w.kind === 'refresh') {
      this._emit('error', new RoomdError(code, 'token refresh: ' + msg));
      this._closeWindow();
      return;
    }
    this._emit('error', new RoomdError(code, msg));
  }

  // ---- the application's calls ----

  _say(room, text) {
    if (typeof text !== 'string')
      throw new TypeError('send: the message must be a string');
    if (room.state === 'left' || this.rooms.get(room.id) !== room) {
      const err = new RoomdError('left', 'you left the room', room.id);
      this._emit('error', err);
      room._emit('error', err);
      return false;
    }
    if (this._open1() && !this._window && this._outbox.length === 0 && room._entered &&
        this._ws.bufferedAmount <= this.options.maxSocketBuffer)
      return this._send({ event: 'message', message: text, roomid: room.id });
    if (this._queued >= this.options.maxQueued) {
      const err = new RoomdError('queue_full',
        `not sent: ${this._queued} messages are waiting for the connection already`, room.id);
      this._emit('error', err);
      room._emit('error', err);
      return false;
    }
    this._outbox.push({ kind: 'message', room, text });
    this._queued++;
    this._pump();
    return true;
  }

  _query(room, kind, frame, internal = false) {
    if (room.state === 'left' || this.rooms.get(room.id) !== room)
      return Promise.reject(new RoomdError('left', 'you left the room', room.id));
    if (this.state !== 'connected' || !room._entered)
      return Promise.reject(new RoomdError('not_joined', 'not in the room right now', room.id));
    return new Promise((resolve, reject) => {
      const q = { kind, resolve, reject, internal, limit: frame.limit || 50, timer: null };
      q.timer = this._timer(() => {
        q.timer = null;
        const i = room._queries.indexOf(q);
        if (i >= 0)
          room._queries.splice(i, 1);
        this._outbox = this._outbox.filter((o) => o.q !== q);
        reject(new RoomdError('timeout', `no answer to ${kind}`, room.id));
      }, this.options.queryTimeout);
      this._outbox.push({ kind: 'query', room, frame, q });
      this._pump();
    });
  }

  _settle(q, err, value) {
    if (q.timer) {
      clearTimeout(q.timer);
      this._timers.delete(q.timer);
      q.timer = null;
    }
    if (err)
      q.reject(err);
    else
      q.resolve(value);
  }

  _failQueries(room, err) {
    const qs = room._queries;
    room._queries = [];
    for (const q of qs)
      this._settle(q, err);
    for (const o of this._outbox)
      if (o.kind === 'query' && o.room === room)
        this._settle(o.q, err);
  }

  _leave(room) {
    if (room.state === 'left')
      return;
    if (room._entered && this.state === 'connected')
      this._send({ event: 'out', roomid: room.id });
    this._forget(room, new RoomdError('left', 'you left the room', room.id));
    if (this.storage)
      this.storage.removeItem(this.options.storagePrefix + room.id);
  }

  // The room is gone from the client: its queued messages and queries with it.
  _forget(room, err) {
    if (room._retry) {
      clearTimeout(room._retry);
      this._timers.delete(room._retry);
      room._retry = null;
    }
    this._failQueries(room, err);
    this._outbox = this._outbox.filter((o) => o.room !== room);
    this._queued = this._outbox.filter((o) => o.kind === 'message').length;
    if (this.rooms.get(room.id) === room)
      this.rooms.delete(room.id);
    room._catch = room._ctx = null;
    room._setState('left');
  }

  // ---- positions that outlive the page ----

  get storage() {
    return this.options.storage || null;
  }

  _load(roomid) {
    if (!this.storage)
      return null;
    try {
      const p = JSON.parse(this.storage.getItem(this.options.storagePrefix + roomid));
      if (p && Number.isInteger(p.offset) && p.offset >= 0 && typeof p.epoch === 'string' && p.epoch !== '')
        return { offset: p.offset, epoch: p.epoch };
    } catch (e) { /* nothing usable stored */ }
    return null;
  }

  _save(room) {
    const p = room._pos;
    if (!this.storage || !p || typeof p.epoch !== 'string' || room._unsure)
      return;
    try {
      this.storage.setItem(this.options.storagePrefix + room.id, JSON.stringify({ offset: p.offset, epoch: p.epoch }));
    } catch (e) { /* storage full or denied: recovery still works within this client */ }
  }
}
