// roomd chat page: join a room, chat, see who is here. roomd-client does the
// connection: it reconnects, recovers what was said meanwhile, and hands each
// message over once, in order; the page shows what it is handed.
import { RoomdClient } from './roomd-client.js';

const $ = (id) => document.getElementById(id);
const ui = {
  join: $('join'), name: $('name'), room: $('room'), chat: $('chat'), log: $('log'),
  who: $('who'), text: $('text'), composer: $('composer'), leave: $('leave'),
  count: $('count'), status: $('status'), where: $('where'),
};

const HISTORY = 50;   // messages shown on entering a room
// The WebSocket lives at the page's own path (a chat route), on ws: or wss:.
const wsUrl = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + location.pathname;
const params = new URLSearchParams(location.search);
ui.room.value = params.get('room') || 'lobby';
ui.name.value = sessionStorage.getItem('roomd.name') || '';

let client = null;
let room = null;
let wasConnected = false;   // this page was online in this room: a new connection is a reconnect
let whoTimer = null;

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
  const mine = ev.name === client.name;
  const follow = mine || atEnd();
  const li = document.createElement('li');
  li.className = 'msg' + (mine ? ' mine' : '');
  li.dataset.offset = ev.offset;
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
    if (n === client.name) li.className = 'me';
    return li;
  }));
}

// Ask who is here, at most a few times a second however busy the room is.
function refreshWho() {
  clearTimeout(whoTimer);
  const r = room;
  whoTimer = setTimeout(() => {
    r.who().then((w) => {
      if (r !== room) return;
      renderWho(w.members);
      setCount(w.num);
    }, () => {});   // not in the room right now: the next enter asks again
  }, 150);
}

// The line that says what could not be recovered (the server said recovered:false).
function gapLine(g) {
  if (g.from !== null && g.to !== null) {
    const n = g.to - g.from + 1;
    return `You missed ${n} message${n === 1 ? '' : 's'} you cannot see`;
  }
  if (g.newEpoch) return "You may have missed messages you cannot see: the room's history was lost";
  return 'You missed messages you cannot see';
}

function enterRoom(name, roomid) {
  client = new RoomdClient(wsUrl, { name, storage: sessionStorage, storagePrefix: 'roomd.pos:' });
  room = client.join(roomid, { history: HISTORY });
  wasConnected = false;
  room.on('enter', (ev) => {
    setCount(ev.num);
    notice(ev.name === client.name ? 'You joined #' + ev.roomid : ev.name + ' joined');
    refreshWho();
  });
  room.on('out', (ev) => {
    setCount(ev.num);
    notice(ev.name + ' left');
    refreshWho();
  });
  room.on('message', (ev) => {
    setCount(ev.num);
    addMessage(ev);
  });
  room.on('gap', (g) => notice(gapLine(g), 'gap'));
  client.on('state', (s) => {
    if (s === 'connected') setStatus('online');
    else if (s === 'connecting') setStatus(wasConnected ? 'reconnecting' : 'connecting',
      wasConnected ? 'reconnecting…' : 'connecting');
    else setStatus('offline');
  });
  client.on('connected', () => {
    if (wasConnected) notice('Reconnected: back in #' + roomid + ' as ' + client.name);
    wasConnected = true;
  });
  client.on('disconnected', (d) => {
    if (d.reconnect && wasConnected)
      notice('Connection lost' + (d.code ? ' (' + d.code + ')' : '') + '; reconnecting in ' +
        (d.delay / 1000).toFixed(1) + ' s');
  });
  client.on('error', (e) => {
    if (e.code === 'queue_full') notice('Not connected: your message was not sent', 'error');
    else notice('Error: ' + e.message, 'error');
  });
  client.connect();
}

function showRoom(roomid) {
  const url = new URL(location.href);
  url.searchParams.set('room', roomid);
  history.replaceState(null, '', url);
  ui.where.textContent = '#' + roomid;
  document.title = '#' + roomid + ' · roomd';
  ui.join.hidden = true;
  ui.chat.hidden = false;
  ui.text.focus();
}

ui.join.addEventListener('submit', (e) => {
  e.preventDefault();
  const name = ui.name.value.trim();
  const roomid = ui.room.value.trim() || 'lobby';
  if (!name) return;
  sessionStorage.setItem('roomd.name', name);
  sessionStorage.setItem('roomd.in', roomid);
  showRoom(roomid);
  enterRoom(name, roomid);
});

ui.composer.addEventListener('submit', (e) => {
  e.preventDefault();
  const text = ui.text.value;
  if (!text.trim()) return;
  // Sent now, or queued until the connection is back; false: the queue is full.
  if (room.send(text)) ui.text.value = '';
});

ui.leave.addEventListener('click', () => {
  clearTimeout(whoTimer);
  room.leave();
  client.close();
  room = client = null;
  sessionStorage.removeItem('roomd.in');
  ui.chat.hidden = true;
  ui.join.hidden = false;
  ui.log.replaceChildren();
  ui.who.replaceChildren();
  ui.count.textContent = '\u00a0';
  ui.where.textContent = '';
  setStatus('offline');
});

// A reload of a page that was in this room goes straight back in: the
// client recovers from the position it kept in sessionStorage.
if (ui.name.value && sessionStorage.getItem('roomd.in') === ui.room.value) {
  showRoom(ui.room.value);
  enterRoom(ui.name.value, ui.room.value);
}
