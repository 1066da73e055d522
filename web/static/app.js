// app.js: Parley's chat page, and the reference client for front-end
// developers. client.js speaks the protocol; this module draws the page.
//
// The protocol, step by step (parley.v1.json: one protojson Envelope per
// WebSocket text frame; every request carries an "id", and the server answers
// it with exactly one {"ack":{"requestId":id,...}} or {"error":{"requestId":id,
// "code":...,"text":...}}; data that answers a request arrives BEFORE its ack):
//
//  1. Connect: new WebSocket("ws(s)://host/ws", ["parley.v1.json"]).
//  2. Log in:  {"id":"1","hello":{"name":"ann","watchOnline":true}}
//     <- {"welcome":{"sessionId","name","maxMessageBytes","maxRooms","idleTimeoutMs"}}
//     <- {"ack":{"requestId":"1"}}
//     <- {"presence":{"members":[{"name":"bob","devices":1}]}}   online snapshot
//     <- {"presence":{"joined":["ann"]}} / {"presence":{"left":["bob"]}}  deltas
//  3. List rooms: {"id":"2","rooms":{}}
//     <- {"roomList":{"rooms":[{"name":"general","members":3}]}}, then the ack.
//  4. Join:    {"id":"3","join":{"room":"general"}}           first time
//              {"id":"3","join":{"room":"general","since":"41"}}   resuming
//     <- {"event":{...}} for each replayed message (recent ones, or seq > since)
//     <- {"ack":{"requestId":"3","room":"general","seq":"57","members":[...]}}
//     <- {"presence":{"room":"general","joined":["ann"]}} and later deltas.
//  5. Post:    {"id":"4","post":{"room":"general","text":"hi","clientMsgId":"<random>"}}
//     <- {"ack":{"requestId":"4","room":"general","seq":"58"}}
//     <- {"event":{"room":"general","seq":"58","timeMs":"1767…","sender":"ann",
//                  "text":"hi","clientMsgId":"<random>"}}   to every member, us too
//  6. Typing:  {"typing":{"room":"general"}}  (no id: never answered), at most
//     every 2 s while typing; others get {"typing":{"room":"general","user":"ann"}}.
//  7. Scrollback: {"id":"5","history":{"room":"general","beforeSeq":"8","limit":50}}
//     <- {"historyPage":{"room":"general","events":[...ascending],"hasMore":true}}, ack.
//  8. Leave:   {"id":"6","leave":{"room":"general"}} <- ack.
//  9. Keepalive: {"id":"7","ping":{}} every 30 s (or a third of idleTimeoutMs).
// 10. Any frame may be {"batch":{"items":[envelope,...]}}: handle each in order.
// 11. Lost connection: reconnect with exponential backoff and full jitter, say
//     hello again, re-join every room with since = last seq seen there, then
//     re-send unacknowledged posts with their original clientMsgId (the server
//     stores each once). Show every seq once, ordered by seq.
//
// Safety: every string that came from a user (names, rooms, messages) is put
// in the page with textContent or as an attribute value, never as HTML.

import { ParleyClient, defaultURL, ServerError } from './client.js';

// ------------------------------------------------------------------ helpers

const $ = (id) => document.getElementById(id);

/**
 * el('li', {class: 'x', dataset: {seq: 3}, text: 'hi'}, child...) builds an
 * element. Text goes in as textContent and attributes through setAttribute:
 * nothing a user wrote can become markup.
 */
function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v == null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c != null) e.append(c); // strings become text nodes
  return e;
}

const ERROR_TEXT = {
  ERROR_CODE_BAD_REQUEST: 'The server did not accept that',
  ERROR_CODE_NOT_LOGGED_IN: 'Not signed in',
  ERROR_CODE_INVALID_NAME: 'That name is not allowed',
  ERROR_CODE_NOT_JOINED: 'You are not in that room',
  ERROR_CODE_TOO_MANY_ROOMS: 'You are in too many rooms',
  ERROR_CODE_RATE_LIMITED: 'You are going too fast',
  ERROR_CODE_TOO_LONG: 'That message is too long',
  ERROR_CODE_UNAVAILABLE: 'The server is busy',
  ERROR_CODE_INTERNAL: 'The server had a problem',
};

function describeError(err) {
  if (err instanceof ServerError) {
    const what = ERROR_TEXT[err.code] ?? 'Error';
    return err.message && err.message !== err.code ? `${what}: ${err.message}` : what;
  }
  return err?.message ?? String(err);
}

/** A hue per name, so people are recognisable at a glance. */
function hue(name) {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return h % 360;
}

function avatar(name, size = '') {
  const a = el('span', { class: `avatar ${size}`, 'aria-hidden': 'true', text: [...name][0]?.toUpperCase() ?? '?' });
  a.style.setProperty('--hue', hue(name)); // CSSOM, allowed by the page's CSP
  return a;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

/** Validates a user or room name as the server does (1-32 characters, no control characters, not blank). */
function nameProblem(s) {
  const n = [...s].length;
  if (n === 0 || s.trim() === '') return 'Please enter a name.';
  if (n > 32) return `That is ${n} characters; at most 32 are allowed.`;
  if (/\p{Cc}/u.test(s)) return 'Names cannot contain control characters.';
  return '';
}

const GROUP_MS = 5 * 60_000; // consecutive messages of one sender within 5 minutes form a group
const TYPING_SHOWN_MS = 4_000;
const STORE_NAME = 'parley.name';
const STORE_ROOMS = 'parley.rooms';

function load(key, fallback) {
  try {
    return JSON.parse(localStorage.getItem(key)) ?? fallback;
  } catch {
    return fallback;
  }
}

function save(key, value) {
  try {
    if (value == null) localStorage.removeItem(key);
    else localStorage.setItem(key, JSON.stringify(value));
  } catch {
    /* private mode: fine, we just do not remember */
  }
}

// ------------------------------------------------------------------ state

/** @type {ParleyClient|null} */
let client = null;
let me = '';
let active = null; // name of the room on screen
let connState = { state: 'connecting' };
const rooms = new Map(); // name -> RoomView
const online = new Map(); // user -> devices, server-wide
let activeRooms = []; // from the server's room list
let roomListTimer = 0;

/** What the page holds for one joined room. */
class RoomView {
  constructor(name) {
    this.name = name;
    this.seqs = []; // shown seqs, ascending
    this.bySeq = new Map(); // seq -> <li>
    this.pending = new Map(); // clientMsgId -> <li> of a post not yet stored
    this.members = new Map(); // user -> devices
    this.typing = new Map(); // user -> timeout
    this.unread = 0;
    this.syncing = true; // initial join: replayed history is not "unread"
    this.joined = false; // acked on the current connection
    this.hasMore = false;
    this.loadingOlder = false;

    this.top = el('div', { class: 'history-top' });
    this.list = el('ol', { class: 'messages', 'aria-label': `Messages in ${name}` });
    this.pendingList = el('ol', { class: 'messages pending-list', 'aria-label': 'Messages being sent' });
    this.view = el('section', { class: 'room-view', dataset: { room: name }, tabindex: '0', 'aria-label': `#${name}`, hidden: true },
      this.top, this.list, this.pendingList);
    this.view.addEventListener('scroll', () => onScroll(this), { passive: true });

    this.badge = el('span', { class: 'badge', hidden: true });
    this.button = el('button', { class: 'room-btn', type: 'button', onclick: () => showRoom(name) },
      el('span', { class: 'hash', 'aria-hidden': 'true', text: '#' }), el('span', { class: 'room-name', text: name }), this.badge);
    this.item = el('li', { dataset: { room: name } }, this.button);
    this.renderTop();
  }

  atBottom() {
    const v = this.view;
    return v.scrollHeight - v.scrollTop - v.clientHeight < 48;
  }

  scrollToBottom() {
    this.view.scrollTop = this.view.scrollHeight;
  }

  renderTop() {
    this.top.replaceChildren();
    if (this.loadingOlder) this.top.append(el('p', { class: 'muted', text: 'Loading older messages…' }));
    else if (this.hasMore) {
      this.top.append(el('button', { class: 'link-btn', type: 'button', onclick: () => loadOlder(this), text: 'Load older messages' }));
    } else if (!this.syncing) {
      this.top.append(el('div', { class: 'room-start' },
        el('p', { class: 'room-start-title', text: `This is the start of #${this.name}` }),
        this.seqs.length ? null : el('p', { class: 'muted', text: 'No messages yet. Say hello!' })));
    }
  }
}

// ------------------------------------------------------------------ messages

function messageItem(ev) {
  const when = new Date(ev.timeMs);
  const time = el('time', { class: 'msg-time', datetime: when.toISOString(), title: fullFmt.format(when), text: timeFmt.format(when) });
  return el('li', { class: 'msg', dataset: { seq: ev.seq, sender: ev.sender, time: ev.timeMs } },
    avatar(ev.sender),
    el('div', { class: 'msg-body' },
      el('div', { class: 'msg-head' }, el('span', { class: 'msg-sender', text: ev.sender }), time),
      el('div', { class: 'msg-text', text: ev.text })));
}

/** Marks li as a continuation of the previous message (same sender, soon after): no repeated name and avatar. */
function regroup(li) {
  if (!li || !li.classList.contains('msg')) return;
  const prev = li.previousElementSibling;
  const cont = !!prev && prev.dataset.sender === li.dataset.sender && Number(li.dataset.time) - Number(prev.dataset.time) < GROUP_MS;
  li.classList.toggle('cont', cont);
}

/** Index of the first shown seq greater than seq (binary search). */
function insertionIndex(seqs, seq) {
  let lo = 0;
  let hi = seqs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (seqs[mid] < seq) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Shows events in room, each seq once and in seq order. Returns how many were new. */
function addEvents(room, events) {
  let added = 0;
  for (const ev of events) {
    if (room.bySeq.has(ev.seq)) continue; // never show a seq twice
    const li = messageItem(ev);
    const i = insertionIndex(room.seqs, ev.seq);
    const next = i < room.seqs.length ? room.bySeq.get(room.seqs[i]) : null;
    room.list.insertBefore(li, next);
    room.seqs.splice(i, 0, ev.seq);
    room.bySeq.set(ev.seq, li);
    regroup(li);
    regroup(next);
    added++;
  }
  return added;
}

function onEvent(ev) {
  const room = rooms.get(ev.room);
  if (!room) return;
  const stick = room.atBottom();
  // Our own post came back with its seq: it replaces the "sending" copy.
  const mine = ev.clientMsgId && room.pending.get(ev.clientMsgId);
  if (mine) {
    mine.remove();
    room.pending.delete(ev.clientMsgId);
  }
  if (!addEvents(room, [ev])) return;
  if (room.seqs.length === 1 && !room.syncing) room.renderTop(); // no longer empty
  stopTyping(room, ev.sender);
  const seen = room.name === active && !document.hidden;
  if (!room.syncing && ev.sender !== me && !seen) {
    room.unread++;
    renderUnread(room);
  }
  if (room.name === active) {
    if (stick || mine) room.scrollToBottom();
    else $('jump').hidden = false;
    if (!room.syncing && ev.sender !== me) $('announce').textContent = `${ev.sender}: ${ev.text}`;
  }
}

function onHistory({ room: name, events, hasMore }) {
  const room = rooms.get(name);
  if (!room) return;
  // Keep the messages on screen where they are while older ones appear above.
  const v = room.view;
  const before = v.scrollHeight - v.scrollTop;
  addEvents(room, events);
  room.hasMore = hasMore && events.length > 0;
  room.loadingOlder = false;
  room.renderTop();
  v.scrollTop = v.scrollHeight - before;
}

async function loadOlder(room) {
  if (room.loadingOlder || !room.hasMore || !room.joined) return;
  room.loadingOlder = true;
  room.renderTop();
  try {
    await client.history(room.name, room.seqs[0] ?? 0, 50);
  } catch (err) {
    room.loadingOlder = false;
    room.renderTop();
    if (err instanceof ServerError) toast(describeError(err));
  }
}

function onScroll(room) {
  if (room.view.scrollTop < 120) loadOlder(room);
  if (room.name === active && room.atBottom()) $('jump').hidden = true;
}

// ------------------------------------------------------------------ sending

function pendingItem(clientMsgId, text) {
  const li = el('li', { class: 'msg pending', dataset: { clientMsgId } },
    avatar(me),
    el('div', { class: 'msg-body' },
      el('div', { class: 'msg-head' }, el('span', { class: 'msg-sender', text: me }), el('span', { class: 'msg-status', text: statusText() })),
      el('div', { class: 'msg-text', text })));
  return li;
}

function statusText() {
  return client?.connected ? 'Sending…' : 'Will send when reconnected';
}

function send() {
  const input = $('composer-input');
  const text = input.value.replace(/\s+$/u, '');
  if (!active || text.trim() === '') return;
  const room = rooms.get(active);
  const id = client.post(room.name, text);
  const li = pendingItem(id, text);
  room.pending.set(id, li);
  room.pendingList.append(li);
  room.scrollToBottom();
  input.value = '';
  autosize(input);
}

function onPostAcked({ room: name, clientMsgId, seq }) {
  const room = rooms.get(name);
  const li = room?.pending.get(clientMsgId);
  if (!li) return;
  if (room.bySeq.has(seq)) {
    // A retried post the server had stored already: it is on screen.
    li.remove();
    room.pending.delete(clientMsgId);
  } else {
    li.querySelector('.msg-status').textContent = 'Sent';
  }
}

function onPostFailed({ room: name, clientMsgId, error }) {
  const li = rooms.get(name)?.pending.get(clientMsgId);
  if (!li) return;
  li.classList.add('failed');
  const status = li.querySelector('.msg-status');
  status.textContent = `Not sent: ${describeError(error)}`;
  status.after(el('button', {
    class: 'link-btn', type: 'button', text: 'Dismiss',
    onclick: () => {
      li.remove();
      rooms.get(name)?.pending.delete(clientMsgId);
    },
  }));
}

function autosize(t) {
  t.style.height = 'auto';
  t.style.height = `${Math.min(t.scrollHeight, window.innerHeight * 0.4)}px`;
}

// ------------------------------------------------------------------ rooms

function joinRoom(name, { show = true } = {}) {
  let room = rooms.get(name);
  if (!room) {
    room = new RoomView(name);
    rooms.set(name, room);
    $('rooms').append(room.view);
    $('room-list').append(room.item);
    client.join(name);
    saveRooms();
    renderBrowse();
  }
  if (show) showRoom(name);
  return room;
}

function leaveRoom(name) {
  const room = rooms.get(name);
  if (!room) return;
  client.leave(name);
  for (const t of room.typing.values()) clearTimeout(t);
  room.view.remove();
  room.item.remove();
  rooms.delete(name);
  saveRooms();
  if (active === name) showRoom(rooms.keys().next().value ?? null);
  renderBrowse();
  renderTitle();
  refreshRoomList();
}

function saveRooms() {
  save(STORE_ROOMS, [...rooms.keys()]);
}

function showRoom(name) {
  const prev = rooms.get(active);
  if (prev) {
    prev.view.hidden = true;
    prev.button.removeAttribute('aria-current');
  }
  active = name;
  const room = rooms.get(name);
  $('empty').hidden = !!room;
  $('jump').hidden = true;
  const input = $('composer-input');
  if (!room) {
    $('room-title').textContent = 'Parley';
    $('room-meta').textContent = '';
    input.disabled = true;
    $('send-btn').disabled = true;
    $('leave-btn').hidden = true;
    $('members-toggle').hidden = true;
    renderMembers();
    renderTyping();
    renderTitle();
    return;
  }
  room.view.hidden = false;
  room.button.setAttribute('aria-current', 'page');
  $('room-title').textContent = `# ${name}`;
  input.placeholder = `Message #${name}`;
  $('composer-label').textContent = `Message #${name}`;
  input.disabled = false;
  $('send-btn').disabled = false;
  $('leave-btn').hidden = false;
  $('members-toggle').hidden = false;
  room.unread = 0;
  renderUnread(room);
  renderMembers();
  renderTyping();
  room.scrollToBottom();
  closeSidebar();
  if (window.matchMedia('(hover: hover)').matches) input.focus();
}

function onJoined({ room: name, members, resumed }) {
  const room = rooms.get(name);
  if (!room) return;
  room.joined = true;
  room.view.dataset.joined = 'true'; // for tests and styling: live on this connection
  room.members = new Map(members.map((m) => [m.name, m.devices]));
  if (!resumed) {
    // First join: the replay was the room's recent window. Older messages
    // exist if the oldest one we got is not seq 1.
    room.hasMore = room.seqs.length > 0 && room.seqs[0] > 1;
    room.syncing = false;
    room.renderTop();
    if (name === active) room.scrollToBottom();
  }
  renderMembers();
  refreshRoomList();
}

function onRewound({ room: name }) {
  const room = rooms.get(name);
  if (!room) return;
  room.list.replaceChildren();
  room.seqs = [];
  room.bySeq.clear();
  room.syncing = true;
  toast(`#${name} lost its history on the server; showing it afresh.`, 'info');
}

function onJoinFailed({ room: name, error }) {
  toast(`Could not join #${name}: ${describeError(error)}`);
  const room = rooms.get(name);
  if (room) {
    room.view.remove();
    room.item.remove();
    rooms.delete(name);
    saveRooms();
    if (active === name) showRoom(rooms.keys().next().value ?? null);
  }
}

function renderUnread(room) {
  room.badge.hidden = room.unread === 0;
  room.badge.dataset.count = String(room.unread);
  room.badge.replaceChildren(room.unread > 99 ? '99+' : String(room.unread), el('span', { class: 'visually-hidden', text: ' unread' }));
  room.button.classList.toggle('has-unread', room.unread > 0);
  renderTitle();
}

function renderTitle() {
  let total = 0;
  for (const r of rooms.values()) total += r.unread;
  document.title = `${total ? `(${total}) ` : ''}${active ? `#${active} · ` : ''}Parley`;
  const mb = $('menu-badge');
  mb.hidden = total === 0;
  mb.textContent = String(total);
}

/** The server's active rooms we are not in, to join with one click. */
function renderBrowse() {
  const list = $('browse-list');
  const others = activeRooms.filter((r) => !rooms.has(r.name));
  list.replaceChildren(...others.map((r) => el('li', {},
    el('button', { class: 'room-btn', type: 'button', onclick: () => joinRoom(r.name), title: `Join #${r.name}` },
      el('span', { class: 'hash', 'aria-hidden': 'true', text: '#' }),
      el('span', { class: 'room-name', text: r.name }),
      el('span', { class: 'count', text: String(r.members) },
        el('span', { class: 'visually-hidden', text: r.members === 1 ? ' member' : ' members' }))))));
  $('browse-empty').hidden = others.length > 0;
}

function refreshRoomList() {
  clearTimeout(roomListTimer);
  // Debounced: a burst of joins after a reconnect asks once.
  roomListTimer = setTimeout(() => client?.connected && client.listRooms().catch(() => {}), 300);
}

// ------------------------------------------------------------------ people

function personItem(name, devices, { dot = true } = {}) {
  const isOnline = online.has(name);
  return el('li', { class: 'person', dataset: { user: name } },
    avatar(name, 'small'),
    dot ? el('span', { class: `presence ${isOnline ? 'on' : 'off'}`, role: 'img', 'aria-label': isOnline ? 'online' : 'offline', title: isOnline ? 'online' : 'offline' }) : null,
    el('span', { class: 'person-name', text: name }),
    name === me ? el('span', { class: 'muted small', text: '(you)' }) : null,
    devices > 1 ? el('span', { class: 'muted small', text: `${devices} devices` }) : null);
}

const byName = (a, b) => a.localeCompare(b);

function renderOnline() {
  const names = [...online.keys()].sort(byName);
  $('online-list').replaceChildren(...names.map((n) => personItem(n, online.get(n), { dot: true })));
  $('online-count').textContent = String(names.length);
}

function renderMembers() {
  const room = rooms.get(active);
  const names = room ? [...room.members.keys()].sort(byName) : [];
  $('member-list').replaceChildren(...names.map((n) => personItem(n, room.members.get(n))));
  $('members-count').textContent = room ? String(names.length) : '';
  $('room-meta').textContent = room ? `${names.length} ${names.length === 1 ? 'member' : 'members'}` : '';
}

function onPresence({ room: name, snapshot, members, joined, left }) {
  const target = name === '' ? online : rooms.get(name)?.members;
  if (!target) return;
  if (snapshot) {
    target.clear();
    for (const m of members) target.set(m.name, m.devices);
  }
  for (const u of joined) target.set(u, target.get(u) ?? 1);
  for (const u of left) target.delete(u);
  if (name === '') {
    renderOnline();
    renderMembers(); // online dots
  } else {
    if (left.length) for (const u of left) stopTyping(rooms.get(name), u);
    if (name === active) renderMembers();
    refreshRoomList();
  }
}

// ------------------------------------------------------------------ typing

function onTyping({ room: name, user }) {
  const room = rooms.get(name);
  if (!room || user === me) return;
  clearTimeout(room.typing.get(user));
  room.typing.set(user, setTimeout(() => stopTyping(room, user), TYPING_SHOWN_MS));
  if (name === active) renderTyping();
}

function stopTyping(room, user) {
  if (!room || !room.typing.has(user)) return;
  clearTimeout(room.typing.get(user));
  room.typing.delete(user);
  if (room.name === active) renderTyping();
}

function renderTyping() {
  const users = [...(rooms.get(active)?.typing.keys() ?? [])];
  let text = '';
  if (users.length === 1) text = `${users[0]} is typing…`;
  else if (users.length === 2) text = `${users[0]} and ${users[1]} are typing…`;
  else if (users.length > 2) text = 'Several people are typing…';
  $('typing').textContent = text;
}

// ------------------------------------------------------------------ connection state

let countdown = 0;

function onState(s) {
  connState = s;
  clearInterval(countdown);
  const conn = $('conn');
  conn.dataset.state = s.state;
  conn.dataset.attempt = String(s.attempt ?? 0);
  const retry = $('conn-retry');
  const banner = $('banner');
  retry.hidden = s.state !== 'waiting';
  banner.hidden = s.state === 'online' || s.state === 'stopped';
  $('conn-countdown').textContent = '';
  if (s.state === 'online') {
    $('conn-text').textContent = 'Connected';
  } else if (s.state === 'connecting') {
    // Not on every attempt: the status is a live region, and screen
    // readers would repeat it.
    if (!$('conn-text').textContent.startsWith('Reconnecting')) $('conn-text').textContent = 'Connecting…';
    $('banner-text').textContent = 'Connecting…';
    $('banner-retry').hidden = true;
  } else if (s.state === 'waiting') {
    // Count down to the next attempt, so a person knows something is
    // happening (outside the live region, which says it once).
    const at = Date.now() + s.retryInMs;
    const why = s.code === 1001 ? 'The server is restarting.' : 'Connection lost.';
    $('conn-text').textContent = 'Reconnecting';
    const tick = () => {
      const secs = Math.max(0, Math.ceil((at - Date.now()) / 1000));
      $('conn-countdown').textContent = secs > 0 ? `in ${secs} s…` : '…';
      $('banner-text').textContent = `${why} Reconnecting${secs > 0 ? ` in ${secs} s` : ''}…`;
    };
    tick();
    countdown = setInterval(tick, 1000);
    $('banner-retry').hidden = false;
  } else {
    $('conn-text').textContent = 'Offline';
  }
  for (const room of rooms.values()) {
    if (s.state !== 'online') {
      room.joined = false;
      room.view.dataset.joined = 'false';
    }
    for (const li of room.pending.values()) {
      const st = li.querySelector('.msg-status');
      if (!li.classList.contains('failed') && st.textContent !== 'Sent') st.textContent = statusText();
    }
  }
}

// ------------------------------------------------------------------ toasts

function toast(text, kind = 'error') {
  const t = el('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' },
    el('span', { text }),
    el('button', { class: 'icon-btn', type: 'button', 'aria-label': 'Dismiss', text: '✕', onclick: () => t.remove() }));
  $('toasts').append(t);
  setTimeout(() => t.remove(), kind === 'error' ? 8000 : 5000);
  while ($('toasts').children.length > 4) $('toasts').firstElementChild.remove();
}

// ------------------------------------------------------------------ sidebar (phones)

function openSidebar() {
  document.body.classList.add('sidebar-open');
  $('menu-toggle').setAttribute('aria-expanded', 'true');
  $('scrim').hidden = false;
  $('join-input').focus();
}

function closeSidebar() {
  if (!document.body.classList.contains('sidebar-open')) return;
  const hadFocus = $('sidebar').contains(document.activeElement);
  document.body.classList.remove('sidebar-open');
  $('menu-toggle').setAttribute('aria-expanded', 'false');
  $('scrim').hidden = true;
  // Focus must not stay in a panel that is now hidden.
  if (hadFocus) (rooms.has(active) ? $('composer-input') : $('menu-toggle')).focus();
}

function toggleMembers(open) {
  const show = open ?? !document.body.classList.contains('members-open');
  document.body.classList.toggle('members-open', show);
  $('members-toggle').setAttribute('aria-expanded', String(show));
}

// ------------------------------------------------------------------ sign in / out

function start(name) {
  me = name;
  client = new ParleyClient({ url: defaultURL(), name });
  client.addEventListener('state', (e) => onState(e.detail));
  client.addEventListener('welcome', () => {
    save(STORE_NAME, name);
    showApp();
  });
  client.addEventListener('fatal', (e) => {
    save(STORE_NAME, null);
    showLogin(describeError(e.detail.error));
  });
  client.addEventListener('event', (e) => onEvent(e.detail));
  client.addEventListener('history', (e) => onHistory(e.detail));
  client.addEventListener('joined', (e) => onJoined(e.detail));
  client.addEventListener('rewound', (e) => onRewound(e.detail));
  client.addEventListener('joinfailed', (e) => onJoinFailed(e.detail));
  client.addEventListener('presence', (e) => onPresence(e.detail));
  client.addEventListener('typing', (e) => onTyping(e.detail));
  client.addEventListener('rooms', (e) => {
    activeRooms = e.detail.rooms;
    renderBrowse();
  });
  client.addEventListener('postacked', (e) => onPostAcked(e.detail));
  client.addEventListener('postfailed', (e) => onPostFailed(e.detail));
  client.addEventListener('notice', (e) => toast(e.detail.text, 'info'));
  client.addEventListener('reset', (e) =>
    toast(`Some messages in #${e.detail.room} were deleted before you could see them (older than #${e.detail.oldestSeq}).`, 'info'));
  client.addEventListener('servererror', (e) => toast(describeError(e.detail.error)));
  // Rooms shown before a refused sign-in are joined again under the new name.
  for (const n of rooms.keys()) client.join(n);
  client.start();
}

let appShown = false;

function showApp() {
  $('login').hidden = true;
  $('app').hidden = false;
  $('me-name').textContent = me;
  if (appShown) return;
  appShown = true;
  const saved = load(STORE_ROOMS, null);
  const names = Array.isArray(saved) && saved.length ? saved : ['general'];
  for (const n of names) if (typeof n === 'string' && !nameProblem(n)) joinRoom(n, { show: false });
  showRoom(rooms.keys().next().value ?? null);
  setInterval(() => !document.hidden && refreshRoomList(), 30_000);
}

function showLogin(error = '') {
  $('app').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = error;
  $('name-input').value = me || load(STORE_NAME, '');
  $('name-input').focus();
}

function signOut() {
  client?.stop();
  save(STORE_NAME, null);
  save(STORE_ROOMS, null);
  location.reload(); // the simplest way to drop every bit of state
}

// ------------------------------------------------------------------ wiring

function wire() {
  $('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const name = $('name-input').value.trim();
    const problem = nameProblem(name);
    $('login-error').textContent = problem;
    if (!problem) start(name);
  });

  $('join-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = $('join-input');
    const name = input.value.trim().replace(/^#/, '');
    const problem = nameProblem(name);
    if (problem) {
      toast(problem.replace('name', 'room name'));
      return;
    }
    input.value = '';
    joinRoom(name);
  });

  const input = $('composer-input');
  input.addEventListener('keydown', (e) => {
    // Enter sends; Shift+Enter is a new line. isComposing: Enter also
    // confirms an IME composition (Japanese, Chinese...), which must not send.
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && !e.altKey && !e.ctrlKey && !e.metaKey) {
      e.preventDefault();
      send();
    }
  });
  input.addEventListener('input', () => {
    autosize(input);
    if (active && input.value.trim() !== '') client.typing(active);
  });
  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    send();
    input.focus();
  });

  $('leave-btn').addEventListener('click', () => active && leaveRoom(active));
  $('jump').addEventListener('click', () => {
    rooms.get(active)?.scrollToBottom();
    $('jump').hidden = true;
  });
  $('conn-retry').addEventListener('click', () => client?.retryNow());
  $('banner-retry').addEventListener('click', () => client?.retryNow());
  $('logout').addEventListener('click', signOut);
  $('menu-toggle').addEventListener('click', openSidebar);
  $('sidebar-close').addEventListener('click', closeSidebar);
  $('scrim').addEventListener('click', () => {
    closeSidebar();
    toggleMembers(false);
  });
  $('members-toggle').addEventListener('click', () => toggleMembers());
  $('members-close').addEventListener('click', () => toggleMembers(false));
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      closeSidebar();
      toggleMembers(false);
    }
  });
  document.addEventListener('visibilitychange', () => {
    const room = rooms.get(active);
    if (!document.hidden && room) {
      room.unread = 0;
      renderUnread(room);
    }
  });
  // The network came back: no point waiting out the backoff.
  window.addEventListener('online', () => client?.retryNow());
}

wire();
const savedName = load(STORE_NAME, '');
if (typeof savedName === 'string' && savedName && !nameProblem(savedName)) {
  start(savedName);
  showApp(); // optimistic: the server may still refuse the name
} else {
  showLogin();
}
