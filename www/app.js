// roomd chat page: join a room, chat, see who is here; survives dropped connections.
'use strict';

const $ = (id) => document.getElementById(id);
const ui = {
  join: $('join'), name: $('name'), room: $('room'), chat: $('chat'), log: $('log'),
  who: $('who'), text: $('text'), composer: $('composer'), leave: $('leave'),
  count: $('count'), status: $('status'), where: $('where'),
};

// The WebSocket lives at the page's own path (a chat route), on ws: or wss:.
const wsUrl = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + location.pathname;
const params = new URLSearchParams(location.search);
ui.room.value = params.get('room') || 'lobby';
ui.name.value = sessionStorage.getItem('roomd.name') || '';

const me = { name: null, room: null };   // set once the user joins
let ws = null;
let attempt = 0;          // reconnect attempts since the last good connection
let retryTimer = null;
let whoTimer = null;
let wasConnected = false;

function setStatus(state, text) {
  ui.status.className = state;
  ui.status.textContent = text || state;
}

// Whether the reader is at (or near) the newest line; measured before adding
// one, since a tall new message would otherwise look like the reader scrolled up.
function atEnd() {
  return ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 80;
}

function scrollToEnd() {
  ui.log.scrollTop = ui.log.scrollHeight;
}

// Every piece of user text goes in with textContent: shown as text, never run as HTML.
function notice(text, kind) {
  const li = document.createElement('li');
  li.className = 'notice' + (kind ? ' ' + kind : '');
  li.textContent = text;
  ui.log.append(li);
  scrollToEnd();
}

function addMessage(ev) {
  const mine = ev.name === me.name;
  const follow = mine || atEnd();
  const li = document.createElement('li');
  li.className = 'msg' + (mine ? ' mine' : '');
  const who = document.createElement('span');
  who.className = 'who';
  who.textContent = ev.name;
  const text = document.createElement('span');
  text.className = 'text';
  text.textContent = ev.message;
  li.append(who, text);
  if (ev.ts) {
    const t = document.createElement('time');
    const d = new Date(ev.ts);
    t.dateTime = d.toISOString();
    t.textContent = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    li.append(t);
  }
  ui.log.append(li);
  if (follow) scrollToEnd();
}

function setCount(n) {
  if (typeof n === 'number') ui.count.textContent = n + ' online';
}

function renderWho(names) {
  ui.who.replaceChildren(...names.slice().sort().map((n) => {
    const li = document.createElement('li');
    li.textContent = n;
    if (n === me.name) li.className = 'me';
    return li;
  }));
}

function send(obj) {
  if (ws && ws.readyState === WebSocket.OPEN) {
    ws.send(JSON.stringify(obj));
    return true;
  }
  return false;
}

// Ask who is here, at most a few times a second however busy the room is.
function refreshWho() {
  clearTimeout(whoTimer);
  whoTimer = setTimeout(() => send({ event: 'who', roomid: me.room }), 150);
}

function onEvent(ev) {
  if ('num' in ev) setCount(ev.num);
  switch (ev.event) {
    case 'enter':
      notice(ev.name === me.name ? 'You joined #' + ev.roomid : ev.name + ' joined');
      refreshWho();
      break;
    case 'out':
      if (ev.name !== me.name || ev.roomid !== me.room) notice(ev.name + ' left');
      refreshWho();
      break;
    case 'message':
      addMessage(ev);
      break;
    case 'who':
      renderWho(ev.members || []);
      break;
    case 'heartbeat':
      if (ev.message === 'ping') send({ event: 'heartbeat', message: 'pong' });
      break;
    case 'error':
      notice('Error: ' + ev.message, 'error');
      break;
  }
}

function connect() {
  clearTimeout(retryTimer);
  setStatus(wasConnected ? 'reconnecting' : 'connecting');
  const sock = new WebSocket(wsUrl);
  ws = sock;
  sock.onopen = () => {
    if (sock !== ws) return;
    const rejoin = wasConnected;
    attempt = 0;
    wasConnected = true;
    setStatus('online');
    send({ event: 'enter', message: me.name, roomid: me.room });
    if (rejoin) notice('Reconnected: back in #' + me.room + ' as ' + me.name);
  };
  sock.onmessage = (e) => {
    let ev;
    try { ev = JSON.parse(e.data); } catch (err) { return; }
    onEvent(ev);
  };
  sock.onclose = (e) => {
    if (sock !== ws) return;
    ws = null;
    if (!me.room) { setStatus('offline'); return; }
    // Exponential backoff with jitter: a restarted server is not stampeded.
    const base = Math.min(30000, 500 * 2 ** attempt);
    const delay = Math.round(base / 2 + Math.random() * base / 2);
    attempt++;
    setStatus('reconnecting', 'reconnecting…');
    notice('Connection lost' + (e.code ? ' (' + e.code + ')' : '') + '; reconnecting in ' +
      (delay / 1000).toFixed(1) + ' s');
    retryTimer = setTimeout(connect, delay);
  };
}

ui.join.addEventListener('submit', (e) => {
  e.preventDefault();
  me.name = ui.name.value.trim();
  me.room = ui.room.value.trim() || 'lobby';
  if (!me.name) return;
  sessionStorage.setItem('roomd.name', me.name);
  const url = new URL(location.href);
  url.searchParams.set('room', me.room);
  history.replaceState(null, '', url);
  ui.where.textContent = '#' + me.room;
  document.title = '#' + me.room + ' · roomd';
  ui.join.hidden = true;
  ui.chat.hidden = false;
  ui.text.focus();
  connect();
});

ui.composer.addEventListener('submit', (e) => {
  e.preventDefault();
  const text = ui.text.value;
  if (!text.trim()) return;
  if (send({ event: 'message', message: text, roomid: me.room })) ui.text.value = '';
  else notice('Not connected: your message was not sent', 'error');
});

ui.leave.addEventListener('click', () => {
  send({ event: 'out', roomid: me.room });
  me.room = null;
  clearTimeout(retryTimer);
  wasConnected = false;   // joining again is a fresh join, not a reconnect
  attempt = 0;
  if (ws) ws.close(1000, 'left');
  ui.chat.hidden = true;
  ui.join.hidden = false;
  ui.log.replaceChildren();
  ui.who.replaceChildren();
  ui.count.textContent = '\u00a0';
  ui.where.textContent = '';
  setStatus('offline');
});
