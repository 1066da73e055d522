// app.js: Parley's chat page. The protocol is spoken by @parley/client
// (clients/ts), bundled into parley-client.js; this module draws the page.
//
// The protocol, step by step (parley.v1.json: one protojson Envelope per
// WebSocket text frame; every request carries an "id", and the server answers
// it with exactly one {"ack":{"requestId":id,...}} or {"error":{"requestId":id,
// "code":...,"text":...}}; data that answers a request arrives BEFORE its ack):
//
//  1. Connect: new WebSocket("ws(s)://host/ws", ["parley.v1.json"]).
//  2. Log in:  {"id":"1","hello":{"name":"ann"}}
//     <- {"welcome":{"sessionId","name","maxMessageBytes","maxRooms","idleTimeoutMs",
//                    "rooms":[{"name":"team","kind":"ROOM_KIND_PRIVATE","role":"ROLE_OWNER",...}]}}
//     <- {"ack":{"requestId":"1"}}
//     Presence is per room: who is connected to the rooms joined (step 4).
//  3. List rooms: {"id":"2","rooms":{}}   the public ones and our own
//     <- {"roomList":{"rooms":[{"name":"general","members":3,"role":"ROLE_MEMBER"}]}}, then the ack.
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
//     Read:    {"id":"8","markRead":{"room":"general","seq":"58"}} <- ack; every
//     connection of ours gets {"room":{...,"readSeq":"58","unread":"0",
//     "unreadMentions":0}} (also in the welcome's rooms and the room list):
//     the badges, shared by our devices. The page asks at most every 300 ms
//     per room, for what it shows.
//  9. Keepalive: {"id":"7","ping":{}} every 30 s (or a third of idleTimeoutMs).
// 10. Any frame may be {"batch":{"items":[envelope,...]}}: handle each in order.
//     A room's log holds posts and changes under one seq: an event with
//     "change" set ({"kind":"CHANGE_KIND_BANNED","user":"bob","reason":...},
//     no text) says who did what to whom; the page shows it as a quiet line.
//     {"room":{RoomInfo}} says the user's own standing in a room changed.
// 11. Lost connection: reconnect with exponential backoff and full jitter, say
//     hello again, re-join every room with since = last seq seen there, then
//     re-send unacknowledged posts with their original clientMsgId (the server
//     stores each once). Show every seq once, ordered by seq.
//
// The SDK does all of that; the page listens to its typed events. Opened as
// /?token=<JWT>, the page logs in with the token (its subject is the name)
// instead of asking for one.
//
// Safety: every string that came from a user (names, rooms, messages) is put
// in the page with textContent or as an attribute value, never as HTML.

import { ChangeKind, ModAction, ParleyClient, ParleyError, Role, RoomKind, SenderKind, newClientMsgId } from './parley-client.js';

/** The page's own /ws endpoint, ws: or wss: to match http: or https:. */
function defaultURL(loc = window.location) {
  return `${loc.protocol === 'https:' ? 'wss:' : 'ws:'}//${loc.host}/ws`;
}

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
  ERROR_CODE_ROOM_FULL: 'That room is full',
  ERROR_CODE_FORBIDDEN: 'You are not allowed to do that',
  ERROR_CODE_TOKEN_EXPIRED: 'Your sign-in expired',
  ERROR_CODE_NO_SUCH_ROOM: 'That room does not exist',
  ERROR_CODE_ROOM_EXISTS: 'That room name is taken',
  ERROR_CODE_BANNED: 'You are banned from that room',
  ERROR_CODE_MUTED: 'You are muted in that room',
  ERROR_CODE_NOT_MEMBER: 'They are not a member',
  ERROR_CODE_NO_SUCH_MESSAGE: 'That message does not exist',
  ERROR_CODE_NOT_YOURS: 'That is not your message',
  ERROR_CODE_NOT_ALLOWED: 'That cannot be done to this message',
  ERROR_CODE_ALREADY_DELETED: 'That message was deleted',
};

function describeError(err) {
  if (err instanceof ParleyError) {
    const what = ERROR_TEXT[err.codeName] ?? 'Error';
    return err.message && err.message !== err.codeName ? `${what}: ${err.message}` : what;
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
const QUICK_EMOJI = ['👍', '❤️', '😂', '🎉', '😮'];
const QUOTE_CHARS = 80;
const MAX_COMPLETIONS = 8;

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
const infos = new Map(); // room name -> RoomInfo: its kind, title, topic, our role (welcome, 'room' events, the room list)
let activeRooms = []; // from the server's room list
let roomListTimer = 0;
let selected = null; // { room, user } whose panel is open in the member list
let formJoin = ''; // the room last joined from the form, whose refusal shows there

/** What the page holds for one joined room. */
class RoomView {
  constructor(name) {
    this.name = name;
    this.seqs = []; // shown seqs (messages and changes), ascending
    this.minSeq = Infinity; // the oldest seq seen, shown or not (edits, deletes and reactions show on their message)
    this.far = new Map(); // seq -> { sender, text, deleted } of replied-to messages not shown (older than the loaded history)
    this.replyTo = 0; // the seq the next post replies to, shown above the composer
    this.toolsRole = null; // our role the messages' actions were drawn for
    this.posts = 0; // messages shown
    this.bySeq = new Map(); // seq -> <li>
    this.pending = new Map(); // clientMsgId -> <li> of a post not yet stored
    this.members = new Map(); // user -> devices: who is connected
    this.roster = new Map(); // user -> MemberInfo: members, invited, banned, with roles
    this.rosterTimer = 0;
    this.typing = new Map(); // user -> timeout
    // Unread state: the server's read cursor, shared by all our devices
    // (readSeq, and the unread counts as of srvLast), raised here by events
    // the server's last word did not count yet. See unreadState().
    this.known = false; // the server told us our cursor here (we are a member)
    this.readSeq = 0; // the server's read cursor
    this.srvLast = 0; // the room's last seq when the server counted (readSeq + unread)
    this.srvMentions = 0; // the server's unread mentions, as of srvLast
    this.maxSeq = 0; // the newest seq received (posts and changes)
    this.seenSeq = 0; // the newest seq shown while the room was viewed (sent, or about to be, as markRead)
    this.replaySeq = 0; // while the server tells us no cursor: the history replayed at our join is not unread
    this.mentionSeqs = new Set(); // posts received mentioning us, in case the server did not count them yet
    this.sentSeq = 0; // the highest markRead sent
    this.markTimer = 0;
    this.lastMarkMs = 0;
    this.unread = 0; // shown on the badge (unreadState())
    this.unreadMentions = 0; // of the unread, posts that mention us
    this.syncing = true; // initial join: replayed history is not "unread"...
    this.newToUs = false; // ...unless the room is a conversation someone just started with us
    this.joined = false; // acked on the current connection
    this.hasMore = false;
    this.loadingOlder = false;
    this.positions = new Map(); // user -> seq: how far other members have read, when the room shows it

    this.top = el('div', { class: 'history-top' });
    this.list = el('ol', { class: 'messages', 'aria-label': `Messages in ${name}` });
    this.pendingList = el('ol', { class: 'messages pending-list', 'aria-label': 'Messages being sent' });
    this.view = el('section', { class: 'room-view', dataset: { room: name }, tabindex: '0', 'aria-label': `#${name}`, hidden: true },
      this.top, this.list, this.pendingList);
    this.view.addEventListener('scroll', () => onScroll(this), { passive: true });

    this.badge = el('span', { class: 'badge', hidden: true });
    this.hash = el('span', { class: 'hash', 'aria-hidden': 'true', text: '#' });
    this.label = el('span', { class: 'room-name', text: name });
    this.button = el('button', { class: 'room-btn', type: 'button', onclick: () => showRoom(name) }, this.hash, this.label, this.badge);
    this.item = el('li', { dataset: { room: name } }, this.button);
    this.renderLabel();
    this.renderTop();
  }

  /** A direct room shows as the other person ("@ bob"), the rest by name. */
  renderLabel() {
    const info = infos.get(this.name);
    const dm = info?.kind === RoomKind.DIRECT && info.directWith;
    this.hash.textContent = dm ? '@' : '#';
    this.label.textContent = dm ? info.directWith : this.name;
    this.item.dataset.kind = dm ? 'direct' : info?.kind === RoomKind.PRIVATE ? 'private' : 'public';
    this.view.setAttribute('aria-label', roomRef(this.name));
    if (this.top) this.renderTop();
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
        el('p', { class: 'room-start-title', text: this.label.textContent === this.name ? `This is the start of #${this.name}` : `This is the start of your conversation with ${this.label.textContent}` }),
        this.posts ? null : el('p', { class: 'muted', text: 'No messages yet. Say hello!' })));
    }
  }
}

// ------------------------------------------------------------------ messages

function messageItem(ev, room) {
  const when = new Date(ev.timeMs);
  const time = el('time', { class: 'msg-time', datetime: when.toISOString(), title: fullFmt.format(when), text: timeFmt.format(when) });
  const li = el('li', { class: 'msg', dataset: { seq: ev.seq, sender: ev.sender, time: ev.timeMs } },
    avatar(ev.sender),
    el('div', { class: 'msg-body' },
      el('div', { class: 'msg-head' }, el('span', { class: 'msg-sender', text: ev.sender }), time, el('span', { class: 'msg-edited', hidden: true, text: '(edited)' })),
      el('button', { class: 'msg-quote', type: 'button', hidden: true, onclick: () => showTarget(room, li) }),
      el('div', { class: 'msg-text' }),
      el('div', { class: 'msg-reactions' }),
      el('div', { class: 'msg-confirm', hidden: true }),
      el('div', { class: 'msg-error', role: 'alert' })),
    el('div', { class: 'msg-actions', role: 'toolbar', 'aria-label': `Actions on ${ev.sender}'s message` }));
  if (ev.replyTo) li.dataset.replyTo = String(ev.replyTo);
  // What the message is now: edits, deletes and reactions change it.
  li.msg = {
    seq: ev.seq,
    sender: ev.sender,
    text: ev.text,
    replyTo: ev.replyTo ?? 0,
    mentions: ev.mentions ?? [],
    editedMs: ev.editedMs ?? 0,
    deleted: !!ev.deleted,
    reactions: new Map((ev.reactions ?? []).map((r) => [r.emoji, { count: r.count, mine: r.mine }])),
  };
  renderMessage(room, li);
  return li;
}

/** Draws a message from what it is now (li.msg): its text or a tombstone, the edited mark, its quote, reactions and actions. */
function renderMessage(room, li) {
  const m = li.msg;
  li.classList.toggle('deleted', m.deleted);
  li.classList.toggle('mentions-me', !m.deleted && m.mentions.includes(me));
  li.dataset.deleted = String(m.deleted);
  const text = li.querySelector('.msg-text');
  text.classList.toggle('tombstone', m.deleted);
  if (m.deleted) text.replaceChildren('message deleted');
  else text.replaceChildren(...textWithMentions(m.text, m.mentions));
  const edited = li.querySelector('.msg-edited');
  edited.hidden = m.deleted || !m.editedMs;
  if (m.editedMs) edited.title = `Edited ${fullFmt.format(new Date(m.editedMs))}`;
  renderQuote(room, li);
  renderReactions(room, li);
  renderActions(room, li);
  if (m.deleted) {
    endEdit(li);
    li.querySelector('.msg-confirm').hidden = true;
  }
}

/**
 * A message's text as nodes, each "@name" of a member it mentions in a span
 * of its own (highlighted when it is us): text nodes and textContent only.
 */
function textWithMentions(text, mentions) {
  const names = [...new Set(mentions)].filter(Boolean).sort((a, b) => b.length - a.length);
  if (names.length === 0) return [text];
  const out = [];
  let from = 0;
  for (let i = text.indexOf('@'); i >= 0; i = text.indexOf('@', i + 1)) {
    if (i < from) continue;
    const name = names.find((n) => text.startsWith(n, i + 1));
    if (!name) continue;
    if (from < i) out.push(text.slice(from, i));
    out.push(el('span', { class: name === me ? 'mention mention-me' : 'mention', dataset: { user: name }, text: `@${name}` }));
    from = i + 1 + name.length;
  }
  if (from < text.length) out.push(text.slice(from));
  return out;
}

/** The first QUOTE_CHARS characters of a text, on one line. */
function snippet(text) {
  const chars = [...text.replace(/\s+/gu, ' ').trim()];
  return chars.length > QUOTE_CHARS ? `${chars.slice(0, QUOTE_CHARS).join('')}…` : chars.join('');
}

/** What a reply quotes of message seq: shown, fetched once, or not known (yet). */
function quoted(room, seq) {
  const li = room.bySeq.get(seq);
  if (li?.msg) return li.msg;
  if (room.far.has(seq)) return room.far.get(seq);
  // Older than the history loaded: asked for once.
  room.far.set(seq, null);
  if (client?.connected && room.joined) {
    client.history(room.name, { beforeSeq: seq + 1, limit: 1 }).then(({ messages }) => {
      const m = messages.find((x) => x.seq === seq);
      if (!m || rooms.get(room.name) !== room) return;
      if (room.far.get(seq) === null) room.far.set(seq, { sender: m.sender, text: m.text, deleted: m.deleted });
      refreshQuotes(room, seq);
    }, () => room.far.delete(seq));
  } else {
    room.far.delete(seq);
  }
  return null;
}

function renderQuote(room, li) {
  const q = li.querySelector('.msg-quote');
  const seq = li.msg.replyTo;
  q.hidden = !seq || li.msg.deleted;
  if (q.hidden) return;
  const target = quoted(room, seq);
  q.dataset.target = String(seq);
  if (!target) q.replaceChildren(el('span', { class: 'quote-text', text: 'an earlier message' }));
  else if (target.deleted) q.replaceChildren(el('span', { class: 'quote-text tombstone', text: 'deleted message' }));
  else q.replaceChildren(el('span', { class: 'quote-sender', text: target.sender }), el('span', { class: 'quote-text', text: snippet(target.text) }));
  q.setAttribute('aria-label', `Reply to ${target && !target.deleted ? `${target.sender}: ${snippet(target.text)}` : target ? 'a deleted message' : 'an earlier message'}`);
}

/** Redraws the quotes of the replies to message seq (it arrived, was edited or deleted). */
function refreshQuotes(room, seq) {
  for (const li of room.list.querySelectorAll(`li.msg[data-reply-to="${Number(seq)}"]`)) renderQuote(room, li);
  if (room.replyTo === seq && room.name === active) renderReplyBar();
}

/** Scrolls to the message a reply quotes, if it is shown. */
function showTarget(room, li) {
  const target = room.bySeq.get(li.msg.replyTo);
  if (!target) return;
  target.scrollIntoView({ block: 'center' });
  target.classList.add('flash');
  setTimeout(() => target.classList.remove('flash'), 1200);
}

/** The reactions under a message, one button per emoji with its count, ours highlighted; updated in place, so a click or the focus is not lost. */
function renderReactions(room, li) {
  const box = li.querySelector('.msg-reactions');
  const list = li.msg.deleted ? [] : [...li.msg.reactions].filter(([, r]) => r.count > 0);
  const old = new Map([...box.children].map((b) => [b.dataset.emoji, b]));
  const buttons = list.map(([emoji, r]) => {
    const b = old.get(emoji) ?? el('button', { class: 'reaction', type: 'button', dataset: { emoji }, onclick: () => toggleReaction(room, li, emoji) },
      el('span', { class: 'reaction-emoji', text: emoji }), el('span', { class: 'reaction-count' }));
    b.classList.toggle('mine', r.mine);
    b.setAttribute('aria-pressed', String(r.mine));
    b.title = r.mine ? `You reacted with ${emoji}: click to take it back` : `React with ${emoji}`;
    b.lastElementChild.textContent = String(r.count);
    return b;
  });
  for (const [emoji, b] of old) if (!li.msg.reactions.get(emoji)?.count || li.msg.deleted) b.remove();
  buttons.forEach((b, i) => {
    if (box.children[i] !== b) box.insertBefore(b, box.children[i] ?? null);
  });
  box.hidden = buttons.length === 0;
}

/** Whether we may delete a message: our own, or anyone's as a moderator or owner. */
function canDelete(room, li) {
  return li.msg.sender === me || (infos.get(room.name)?.kind !== RoomKind.DIRECT && myRole(room) >= Role.MODERATOR);
}

/** The actions on a message, shown on hover and focus: quick reactions, reply, and edit and delete where allowed. */
function renderActions(room, li) {
  const bar = li.querySelector('.msg-actions');
  // Drawn again only when what it offers changes: a reaction arriving must
  // not take the focus from a button, nor the button from under a click.
  const key = li.msg.deleted ? 'deleted' : `${li.msg.sender === me}/${canDelete(room, li)}`;
  if (li.actionsKey === key) return;
  li.actionsKey = key;
  if (li.msg.deleted) {
    bar.replaceChildren();
    bar.hidden = true;
    return;
  }
  const btn = (action, text, label, onclick, cls = '') => el('button', { class: `msg-action ${cls}`, type: 'button', dataset: { action }, text, title: label, 'aria-label': label, onclick });
  bar.hidden = false;
  bar.replaceChildren(...[
    ...QUICK_EMOJI.map((emoji) => {
      const b = btn('react', emoji, `React with ${emoji}`, () => toggleReaction(room, li, emoji), 'emoji');
      b.dataset.emoji = emoji;
      return b;
    }),
    btn('reply', 'Reply', 'Reply', () => setReply(room, li.msg.seq)),
    li.msg.sender === me ? btn('edit', 'Edit', 'Edit', () => startEdit(room, li)) : null,
    canDelete(room, li) ? btn('delete', 'Delete', li.msg.sender === me ? 'Delete' : `Delete ${li.msg.sender}'s message`, () => askDelete(room, li), 'danger') : null,
  ].filter(Boolean));
}

/** Our role in a room changed: the messages' delete buttons follow. */
function refreshActions(room) {
  const role = myRole(room);
  if (room.toolsRole === role) return;
  room.toolsRole = role;
  for (const li of room.list.querySelectorAll('li.msg')) if (li.msg) renderActions(room, li);
}

/** A refusal, on the message it concerns, in the server's words. */
function msgError(li, text) {
  li.querySelector('.msg-error').textContent = text;
}

async function toggleReaction(room, li, emoji) {
  const mine = !!li.msg.reactions.get(emoji)?.mine;
  msgError(li, '');
  try {
    await client.react(room.name, li.msg.seq, emoji, { remove: mine });
  } catch (err) {
    msgError(li, `Could not ${mine ? 'take back the reaction' : 'react'}: ${describeError(err)}`);
  }
}

/** Edits our message in place: Enter saves, Escape cancels. */
function startEdit(room, li) {
  if (li.editor || li.msg.deleted) return;
  msgError(li, '');
  const text = li.querySelector('.msg-text');
  const input = el('textarea', { class: 'edit-input', rows: '2', 'aria-label': 'Edit your message' });
  input.value = li.msg.text;
  const save = el('button', { class: 'btn btn-small btn-primary', type: 'button', dataset: { action: 'save' }, text: 'Save', onclick: () => saveEdit(room, li) });
  const cancel = el('button', { class: 'btn btn-small btn-ghost', type: 'button', dataset: { action: 'cancel' }, text: 'Cancel', onclick: () => endEdit(li) });
  li.editor = el('div', { class: 'msg-editor' }, input, el('div', { class: 'msg-editor-btns' }, save, cancel,
    el('span', { class: 'muted small', text: 'Enter to save · Escape to cancel' })));
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      saveEdit(room, li);
    } else if (e.key === 'Escape') {
      e.stopPropagation();
      endEdit(li);
    }
  });
  text.hidden = true;
  text.after(li.editor);
  li.classList.add('editing');
  input.focus();
  input.setSelectionRange(input.value.length, input.value.length);
}

function endEdit(li) {
  if (!li.editor) return;
  const hadFocus = li.editor.contains(document.activeElement);
  li.editor.remove();
  li.editor = null;
  li.classList.remove('editing');
  li.querySelector('.msg-text').hidden = false;
  if (hadFocus && !$('composer-input').disabled) $('composer-input').focus();
}

async function saveEdit(room, li) {
  const editor = li.editor;
  if (!editor) return;
  const input = editor.querySelector('textarea');
  const text = input.value.replace(/\s+$/u, '');
  if (text === li.msg.text) {
    endEdit(li);
    return;
  }
  if (text.trim() === '') {
    msgError(li, 'A message cannot be empty: delete it instead.');
    return;
  }
  for (const b of editor.querySelectorAll('button, textarea')) b.disabled = true;
  msgError(li, '');
  try {
    await client.edit(room.name, li.msg.seq, text);
    if (li.editor === editor) endEdit(li); // the EDITED event shows the new text
  } catch (err) {
    msgError(li, `Not edited: ${describeError(err)}`);
    for (const b of editor.querySelectorAll('button, textarea')) b.disabled = false;
  }
}

/** Asks on the message before deleting it: for everyone, for good. */
function askDelete(room, li) {
  const box = li.querySelector('.msg-confirm');
  msgError(li, '');
  const theirs = li.msg.sender !== me;
  box.replaceChildren(
    el('span', { text: theirs ? `Delete ${li.msg.sender}'s message for everyone?` : 'Delete this message for everyone?' }),
    el('button', { class: 'btn btn-small btn-danger', type: 'button', dataset: { action: 'confirm-delete' }, text: 'Delete', onclick: () => deleteMsg(room, li) }),
    el('button', { class: 'btn btn-small btn-ghost', type: 'button', dataset: { action: 'cancel-delete' }, text: 'Cancel', onclick: () => (box.hidden = true) }));
  box.hidden = false;
  box.querySelector('button').focus();
}

async function deleteMsg(room, li) {
  const box = li.querySelector('.msg-confirm');
  for (const b of box.querySelectorAll('button')) b.disabled = true;
  try {
    await client.deleteMessage(room.name, li.msg.seq);
    box.hidden = true; // the MESSAGE_DELETED event makes it a tombstone
  } catch (err) {
    box.hidden = true;
    msgError(li, `Not deleted: ${describeError(err)}`);
  }
}

/** An edit, a delete or a reaction: a change to a message, applied to it where it shows, not a line of its own. */
const isMessageChange = (ev) =>
  isChange(ev) && [ChangeKind.EDITED, ChangeKind.MESSAGE_DELETED, ChangeKind.REACTED, ChangeKind.UNREACTED].includes(ev.kind);

/** Applies an edit, delete or reaction to the message it names (if shown, or quoted). */
function applyMessageChange(room, ch) {
  const li = room.bySeq.get(ch.targetSeq);
  const m = li?.msg ?? room.far.get(ch.targetSeq);
  if (!m) return;
  switch (ch.kind) {
    case ChangeKind.EDITED:
      m.text = ch.text;
      m.editedMs = ch.timeMs;
      break;
    case ChangeKind.MESSAGE_DELETED:
      m.deleted = true;
      m.text = '';
      if (m.reactions) m.reactions.clear();
      if (m.mentions) m.mentions = [];
      break;
    case ChangeKind.REACTED:
    case ChangeKind.UNREACTED: {
      if (!m.reactions) break;
      const r = m.reactions.get(ch.emoji) ?? { count: 0, mine: false };
      r.count = ch.count;
      if (ch.sender === me) r.mine = ch.kind === ChangeKind.REACTED;
      if (r.count > 0) m.reactions.set(ch.emoji, r);
      else m.reactions.delete(ch.emoji);
      break;
    }
  }
  if (li?.msg) renderMessage(room, li);
  if (ch.kind !== ChangeKind.REACTED && ch.kind !== ChangeKind.UNREACTED) refreshQuotes(room, ch.targetSeq);
}

/**
 * A change to the room as a quiet line ("bob was banned by alice: spam"),
 * not a message: no avatar, no text of anyone's, only names and reasons,
 * as text.
 */
function changeItem(ch) {
  const when = new Date(ch.timeMs);
  const li = el('li', { class: 'sys', dataset: { seq: ch.seq, time: ch.timeMs, change: ChangeKind[ch.kind] ?? String(ch.kind), actor: ch.sender } },
    el('span', { class: 'sys-text' }),
    el('time', { class: 'msg-time', datetime: when.toISOString(), title: fullFmt.format(when), text: timeFmt.format(when) }));
  if (ch.kind === ChangeKind.CREATED || ch.kind === ChangeKind.UPDATED) Object.assign(li.dataset, { title: ch.title, topic: ch.topic, receipts: String(!!ch.readPositions) });
  li.change = ch; // described once it is in place: UPDATED says what differs from the line before
  return li;
}

// A ban or mute for good ends in the year 9999 in a member's record (0 in a change).
const FOREVER_MS = Date.UTC(9999, 0, 1);
const untilText = (ms) => (ms && ms < FOREVER_MS ? ` until ${fullFmt.format(new Date(ms))}` : '');

/** What a change says, in words: who did what to whom. */
function describeChange(ch, li) {
  const system = ch.senderKind === SenderKind.SYSTEM;
  const by = system ? '' : ` by ${ch.sender}`;
  const why = ch.reason ? `: ${ch.reason}` : '';
  // The system acts for an operator or an application: said in the passive.
  const did = (verb, whom) => (system ? `${whom} was ${verb}` : `${ch.sender} ${verb} ${whom}`);
  switch (ch.kind) {
    case ChangeKind.CREATED:
      if (ch.roomKind === RoomKind.DIRECT) return `${ch.sender} started this conversation`;
      return system ? 'This room was created' : `${ch.sender} created this ${ch.roomKind === RoomKind.PRIVATE ? 'private ' : ''}room`;
    case ChangeKind.JOINED:
      return `${ch.user} joined`;
    case ChangeKind.LEFT:
      return `${ch.user} left`;
    case ChangeKind.INVITED:
      return did('invited', ch.user);
    case ChangeKind.INVITE_REVOKED:
      return system ? `${ch.user}'s invitation was withdrawn` : `${ch.sender} withdrew ${ch.user}'s invitation`;
    case ChangeKind.ADDED:
      return did('added', ch.user);
    case ChangeKind.KICKED:
      return `${ch.user} was kicked${by}${why}`;
    case ChangeKind.BANNED:
      return `${ch.user} was banned${by}${untilText(ch.untilMs)}${why}`;
    case ChangeKind.UNBANNED:
      return `${ch.user} was unbanned${by}`;
    case ChangeKind.MUTED:
      return `${ch.user} was muted${by}${untilText(ch.untilMs)}${why}`;
    case ChangeKind.UNMUTED:
      return `${ch.user} was unmuted${by}`;
    case ChangeKind.ROLE_CHANGED:
      return system ? `${ch.user} is now a ${roleName(ch.role)}` : `${ch.sender} made ${ch.user} a ${roleName(ch.role)}`;
    case ChangeKind.OWNER_CHANGED:
      return system ? `${ch.user} is now the owner` : `${ch.sender} made ${ch.user} the owner`;
    case ChangeKind.UPDATED: {
      // The line before that set a title or topic says what changed.
      let prev = li?.previousElementSibling;
      while (prev && prev.dataset.topic === undefined) prev = prev.previousElementSibling;
      const parts = [];
      for (const [field, now] of [['title', ch.title], ['topic', ch.topic]]) {
        if (prev ? prev.dataset[field] === now : now === '') continue;
        parts.push(now ? `the ${field} is now “${now}”` : `the ${field} was cleared`);
      }
      const receipts = String(!!ch.readPositions);
      if (prev ? prev.dataset.receipts !== receipts : receipts === 'true') parts.push(`read receipts are now ${ch.readPositions ? 'on' : 'off'}`);
      if (parts.length === 0) parts.push('the room was updated');
      const text = parts.join(' and ');
      return `${text[0].toUpperCase()}${text.slice(1)}${system ? '' : ` (set by ${ch.sender})`}`;
    }
    case ChangeKind.DELETED:
      return `This room was deleted${by}${why}`;
    default:
      return `The room changed${by}`;
  }
}

function roleName(role) {
  return role === Role.OWNER ? 'owner' : role === Role.MODERATOR ? 'moderator' : role === Role.MEMBER ? 'member' : '';
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

/** A change rather than a post: changes have a kind, posts text. */
const isChange = (ev) => typeof ev.kind === 'number';

/**
 * Shows events (posts and changes) in room, each seq once and in seq order.
 * Edits, deletes and reactions change the message they name instead (with
 * apply; scrollback does not apply them: its messages are current).
 * Returns how many were new.
 */
function addEvents(room, events, { apply = true } = {}) {
  let added = 0;
  for (const ev of events) {
    room.minSeq = Math.min(room.minSeq, ev.seq);
    room.maxSeq = Math.max(room.maxSeq, ev.seq);
    if (isMessageChange(ev)) {
      if (apply) applyMessageChange(room, ev);
      continue;
    }
    if (room.bySeq.has(ev.seq)) continue; // never show a seq twice
    const li = isChange(ev) ? changeItem(ev) : messageItem(ev, room);
    const i = insertionIndex(room.seqs, ev.seq);
    const next = i < room.seqs.length ? room.bySeq.get(room.seqs[i]) : null;
    room.list.insertBefore(li, next);
    room.seqs.splice(i, 0, ev.seq);
    room.bySeq.set(ev.seq, li);
    if (li.change) li.firstChild.textContent = describeChange(li.change, li);
    else room.posts++;
    regroup(li);
    regroup(next);
    if (!li.change) {
      room.far.delete(ev.seq);
      refreshQuotes(room, ev.seq); // replies shown before the message they quote
    }
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
  if (room.posts === 1 && !room.syncing) room.renderTop(); // no longer empty
  stopTyping(room, ev.sender);
  if (ev.sender !== me && ev.mentions?.includes(me)) room.mentionSeqs.add(ev.seq);
  if (room.name === active) {
    if (stick || mine) room.scrollToBottom();
    else $('jump').hidden = false;
    if (!room.syncing && ev.sender !== me) $('announce').textContent = `${ev.sender}: ${ev.text}`;
  }
  markViewed(room);
}

/** A change to a room: a quiet line, never an unread message; the room's description and member list follow it. */
function onChange(ch) {
  const room = rooms.get(ch.room);
  if (!room) return;
  if (isMessageChange(ch)) {
    addEvents(room, [ch]);
    if (ch.kind === ChangeKind.MESSAGE_DELETED) room.mentionSeqs.delete(ch.targetSeq);
    markViewed(room);
    return;
  }
  const stick = room.atBottom();
  if (!addEvents(room, [ch])) return;
  if (ch.kind === ChangeKind.CREATED || ch.kind === ChangeKind.UPDATED) {
    const info = infos.get(ch.room);
    const receipts = !!ch.readPositions;
    if (info) {
      const turned = !!info.readPositions !== receipts;
      Object.assign(info, { title: ch.title, topic: ch.topic, readPositions: receipts });
      if (turned) renderSeen(room);
    }
    if (ch.room === active) renderHeader();
  } else {
    refreshRoster(room);
  }
  if (room.name === active) {
    if (stick) room.scrollToBottom();
    if (!room.syncing) $('announce').textContent = room.bySeq.get(ch.seq).firstChild.textContent;
  }
  markViewed(room);
}

function onHistory({ room: name, messages, changes, hasMore }) {
  const room = rooms.get(name);
  if (!room) return;
  const events = [...messages, ...changes].sort((a, b) => a.seq - b.seq);
  // Keep the messages on screen where they are while older ones appear above.
  const v = room.view;
  const before = v.scrollHeight - v.scrollTop;
  addEvents(room, events, { apply: false });
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
    onHistory(await client.history(room.name, { beforeSeq: Number.isFinite(room.minSeq) ? room.minSeq : 0, limit: 50 }));
  } catch (err) {
    room.loadingOlder = false;
    room.renderTop();
    if (err instanceof ParleyError) toast(describeError(err));
  }
}

function onScroll(room) {
  if (room.view.scrollTop < 120) loadOlder(room);
  if (room.name === active && room.atBottom()) {
    $('jump').hidden = true;
    markViewed(room);
  }
}

// ------------------------------------------------------------------ sending

function pendingItem(clientMsgId, text, quote = null) {
  const li = el('li', { class: 'msg pending', dataset: { clientMsgId } },
    avatar(me),
    el('div', { class: 'msg-body' },
      el('div', { class: 'msg-head' }, el('span', { class: 'msg-sender', text: me }), el('span', { class: 'msg-status', text: statusText() })),
      quote ? el('div', { class: 'msg-quote' }, ...[
        quote.deleted ? null : el('span', { class: 'quote-sender', text: quote.sender }),
        el('span', { class: quote.deleted ? 'quote-text tombstone' : 'quote-text', text: quote.deleted ? 'deleted message' : snippet(quote.text) }),
      ].filter(Boolean)) : null,
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
  // Our own id, so the message shows (as "sending") before the server has
  // it; postAcked and postFailed say how it ended.
  const id = newClientMsgId();
  // The names chosen from the completion list that are still in the text.
  const mentions = [...chosen].filter((n) => text.includes(`@${n}`));
  const replyTo = room.replyTo;
  if (replyTo || mentions.length) {
    // A reply or a mention: the same id until the server answers once.
    client.reply(room.name, text, { clientMsgId: id, replyTo, mentions }).then(
      (r) => onPostAcked(r),
      (error) => onPostFailed({ room: room.name, clientMsgId: id, error }));
  } else {
    client.post(room.name, text, { clientMsgId: id });
  }
  const quote = replyTo ? quoted(room, replyTo) : null;
  chosen.clear();
  closeCompletion();
  setReply(room, 0);
  const li = pendingItem(id, text, quote);
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

// ------------------------------------------------------------------ replies

/** Sets the message the next post in room replies to (0: none), shown above the composer. */
function setReply(room, seq) {
  room.replyTo = seq;
  if (room.name !== active) return;
  renderReplyBar();
  if (seq) $('composer-input').focus();
}

function renderReplyBar() {
  const room = rooms.get(active);
  const bar = $('reply-bar');
  const seq = room?.replyTo ?? 0;
  bar.hidden = !seq;
  if (!seq) return;
  const target = quoted(room, seq);
  bar.dataset.target = String(seq);
  $('reply-to').replaceChildren(...[
    'Replying to ',
    target && !target.deleted ? el('span', { class: 'quote-sender', text: target.sender }) : null,
    el('span', { class: target?.deleted ? 'quote-text tombstone' : 'quote-text', text: !target ? 'an earlier message' : target.deleted ? 'deleted message' : snippet(target.text) }),
  ].filter(Boolean));
}

// ------------------------------------------------------------------ mentions

const chosen = new Set(); // member names chosen from the completion list for the next post
let completion = null; // { start, items, index }: the list open under an "@" in the composer

/** The members of the active room we can mention: its roster's members and whoever is connected, not us. */
function mentionable(room) {
  const names = new Set(room.members.keys());
  for (const m of room.roster.values()) if (m.role >= Role.MEMBER) names.add(m.user);
  names.delete(me);
  return [...names].sort(byName);
}

/** Opens, narrows or closes the completion list from the "@word" before the caret. */
function updateCompletion() {
  const input = $('composer-input');
  const room = rooms.get(active);
  const caret = input.selectionStart;
  if (!room || caret !== input.selectionEnd) return closeCompletion();
  const before = input.value.slice(0, caret);
  const m = /(^|\s)@([^\s@]*)$/u.exec(before);
  if (!m) return closeCompletion();
  const query = m[2].toLowerCase();
  const items = mentionable(room).filter((n) => n.toLowerCase().startsWith(query)).slice(0, MAX_COMPLETIONS);
  if (items.length === 0) return closeCompletion();
  const prev = completion?.items[completion.index];
  completion = { start: caret - m[2].length - 1, items, index: Math.max(0, items.indexOf(prev)) };
  renderCompletion();
}

function renderCompletion() {
  const list = $('mention-list');
  const input = $('composer-input');
  if (!completion) {
    list.hidden = true;
    list.replaceChildren();
    input.removeAttribute('aria-activedescendant');
    return;
  }
  list.replaceChildren(...completion.items.map((name, i) => el('li', {
    id: `mention-opt-${i}`, class: i === completion.index ? 'active' : '', role: 'option', 'aria-selected': String(i === completion.index),
    dataset: { user: name },
    onmousedown: (e) => e.preventDefault(), // the composer keeps the focus
    onclick: () => chooseCompletion(i),
  }, avatar(name, 'small'), el('span', { class: 'person-name', text: name }))));
  list.hidden = false;
  input.setAttribute('aria-activedescendant', `mention-opt-${completion.index}`);
}

function closeCompletion() {
  if (!completion && $('mention-list').hidden) return;
  completion = null;
  renderCompletion();
}

/** Puts "@name " in place of the "@word" being typed, and remembers the mention. */
function chooseCompletion(i) {
  if (!completion) return;
  const name = completion.items[i];
  const input = $('composer-input');
  const end = input.selectionStart;
  const insert = `@${name} `;
  input.value = input.value.slice(0, completion.start) + insert + input.value.slice(end);
  const caret = completion.start + insert.length;
  input.setSelectionRange(caret, caret);
  chosen.add(name);
  completion = null;
  renderCompletion();
  input.focus();
  autosize(input);
}

/** Arrow keys, Enter, Tab and Escape in the completion list; true if the key was its. */
function completionKey(e) {
  if (!completion || e.isComposing) return false;
  const n = completion.items.length;
  if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
    completion.index = (completion.index + (e.key === 'ArrowDown' ? 1 : n - 1)) % n;
    renderCompletion();
  } else if ((e.key === 'Enter' || e.key === 'Tab') && !e.shiftKey) {
    chooseCompletion(completion.index);
  } else if (e.key === 'Escape') {
    e.stopPropagation();
    closeCompletion();
  } else {
    return false;
  }
  e.preventDefault();
  return true;
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
    serverUnread(room, infos.get(name));
    $('rooms').append(room.view);
    $('room-list').append(room.item);
    client.join(name);
    saveRooms();
    renderBrowse();
  }
  if (show) showRoom(name);
  return room;
}

/** Leaves a room for good (the server ends the membership), or says why not: an owner must hand the room over first. */
async function leaveRoom(name) {
  const room = rooms.get(name);
  if (!room) return;
  const btn = $('leave-btn');
  btn.disabled = true;
  try {
    await client.leave(name);
  } catch (err) {
    toast(`Could not leave ${roomRef(name)}: ${describeError(err)}`);
    return;
  } finally {
    btn.disabled = false;
  }
  dropRoom(name);
  refreshRoomList();
}

function saveRooms() {
  save(STORE_ROOMS, [...rooms.keys()]);
}

/** "# name", or "@ bob" for a direct conversation: the header's title. */
function roomTitle(name) {
  const info = infos.get(name);
  return info?.kind === RoomKind.DIRECT && info.directWith ? `@ ${info.directWith}` : `# ${name}`;
}

/** "#name", or "@bob": a room named in a sentence. */
const roomRef = (name) => roomTitle(name).replace(' ', '');

/** The room header's title, kind and topic. */
function renderHeader() {
  const room = rooms.get(active);
  const info = room ? infos.get(room.name) : null;
  $('room-title').textContent = room ? roomTitle(room.name) : 'Parley';
  $('room-kind').hidden = info?.kind !== RoomKind.PRIVATE;
  $('room-topic').textContent = info?.topic ?? '';
  $('room-topic').title = info?.topic ?? '';
  if (room) {
    $('composer-input').placeholder = `Message ${roomRef(room.name)}`;
    $('composer-label').textContent = `Message ${roomRef(room.name)}`;
  }
  // Owners and moderators decide whether members see how far others have read.
  const receipts = $('receipts-toggle');
  receipts.hidden = !info || info.kind === RoomKind.DIRECT || info.role < Role.MODERATOR;
  receipts.setAttribute('aria-pressed', String(!!info?.readPositions));
  receipts.textContent = info?.readPositions ? 'Read receipts: on' : 'Read receipts: off';
}

/** Turns the active room's read receipts on or off (owners and moderators), or says why not. */
async function toggleReceipts() {
  const info = infos.get(active);
  if (!info) return;
  const btn = $('receipts-toggle');
  btn.disabled = true;
  try {
    await client.setReadPositions(info.name, !info.readPositions);
  } catch (err) {
    toast(`Could not change read receipts in ${roomRef(info.name)}: ${describeError(err)}`);
  } finally {
    btn.disabled = false;
  }
}

/**
 * Takes the server's read positions of a room's members (all of them in a
 * snapshot, the moves of the last interval otherwise) and shows, under the
 * newest shown message each member has read, who has read up to there.
 */
function onReadPositions({ room: name, snapshot, positions }) {
  const room = rooms.get(name);
  if (!room) return;
  if (snapshot) room.positions.clear();
  for (const p of positions) if (p.user !== me) room.positions.set(p.user, p.seq);
  renderSeen(room);
}

function renderSeen(room) {
  for (const e of room.list.querySelectorAll('.msg-seen')) e.remove();
  if (!infos.get(room.name)?.readPositions) return;
  const posts = [...room.bySeq.keys()].filter((seq) => room.bySeq.get(seq).classList.contains('msg')).sort((a, b) => a - b);
  const at = new Map(); // seq -> users who read up to it
  for (const [user, seq] of room.positions) {
    let i = posts.length - 1;
    while (i >= 0 && posts[i] > seq) i--;
    if (i < 0) continue; // read nothing shown here
    if (!at.has(posts[i])) at.set(posts[i], []);
    at.get(posts[i]).push(user);
  }
  for (const [seq, users] of at) {
    users.sort();
    room.bySeq.get(seq).querySelector('.msg-body').append(el('div', { class: 'msg-seen muted small', text: `Seen by ${users.join(', ')}` }));
  }
}

function showRoom(name) {
  const prev = rooms.get(active);
  if (prev) {
    prev.view.hidden = true;
    prev.button.removeAttribute('aria-current');
  }
  if (active !== name) closePerson();
  active = name;
  if (prev && prev !== rooms.get(name)) renderUnread(prev); // no longer viewed: its badge may show again
  const room = rooms.get(name);
  if (prev !== room) {
    chosen.clear();
    closeCompletion();
  }
  renderReplyBar();
  $('empty').hidden = !!room;
  $('jump').hidden = true;
  const input = $('composer-input');
  if (!room) {
    renderHeader();
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
  renderHeader();
  input.disabled = false;
  $('send-btn').disabled = false;
  $('leave-btn').hidden = false;
  $('members-toggle').hidden = false;
  renderMembers();
  if (room.joined && room.roster.size === 0) refreshRoster(room);
  renderTyping();
  room.scrollToBottom();
  markViewed(room);
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
    room.hasMore = Number.isFinite(room.minSeq) && room.minSeq > 1;
    // A room the server keeps no cursor of for us: its replayed history is not unread.
    if (!room.known && !room.newToUs) room.replaySeq = room.maxSeq;
    room.syncing = false;
    room.newToUs = false;
    room.renderTop();
    if (name === active) room.scrollToBottom();
  }
  // Replies to messages older than the replay quote them once asked for.
  for (const li of room.list.querySelectorAll('li.msg[data-reply-to]')) if (li.msg && !room.bySeq.has(li.msg.replyTo) && !room.far.get(li.msg.replyTo)) renderQuote(room, li);
  renderMembers();
  renderOnline();
  refreshRoster(room);
  refreshRoomList();
  renderUnread(room);
  markViewed(room);
}

function onRewound({ room: name }) {
  const room = rooms.get(name);
  if (!room) return;
  room.list.replaceChildren();
  room.seqs = [];
  room.minSeq = Infinity;
  room.far.clear();
  room.posts = 0;
  room.bySeq.clear();
  room.syncing = true;
  // The seqs start over: so do our cursor and counts, until the server's next word.
  Object.assign(room, { known: false, readSeq: 0, srvLast: 0, srvMentions: 0, maxSeq: 0, seenSeq: 0, replaySeq: 0, sentSeq: 0 });
  room.mentionSeqs.clear();
  renderUnread(room);
  toast(`${roomRef(name)} lost its history on the server; showing it afresh.`, 'info');
}

/** A join the server refused (a private room, a ban; after a reconnect too): said where it was asked, and kept in view. */
function onJoinFailed({ room: name, error }) {
  const text = `Could not join ${roomRef(name)}: ${describeError(error)}`;
  if (name === formJoin) $('join-error').textContent = text;
  toast(text);
  dropRoom(name);
}

/** Out of a room: kicked, banned, left on another device, deleted, closed by an operator. */
function onRoomClosed({ room: name, text }) {
  toast(`You are no longer in ${roomRef(name)}${text ? `: ${text}` : '.'}`);
  dropRoom(name);
  refreshRoomList();
}

/** Removes a room the client is no longer in. */
function dropRoom(name) {
  const room = rooms.get(name);
  if (!room) return;
  for (const t of room.typing.values()) clearTimeout(t);
  clearTimeout(room.rosterTimer);
  clearTimeout(room.markTimer);
  room.view.remove();
  room.item.remove();
  rooms.delete(name);
  saveRooms();
  if (active === name) showRoom(rooms.keys().next().value ?? null);
  renderBrowse();
  renderTitle();
  renderOnline();
}

// ------------------------------------------------------------------ unread state

/** How long at least between two markRead requests for one room. */
const MARK_READ_MS = 300;

/**
 * Takes the server's word on our read state in a room (the welcome's rooms,
 * the rooms list, a 'room' event: RoomInfo's readSeq, unread and
 * unreadMentions). A word older than the one we have (a cursor behind
 * ours: a rooms list asked before the cursor moved) is not taken.
 */
function serverUnread(room, info) {
  if (!info || info.role < Role.MEMBER || info.deleted) return;
  // Older than what we have: a cursor behind ours, or the same one counted
  // before events we were told of (a rooms list asked before they came).
  if (room.known && (info.readSeq < room.readSeq || (info.readSeq === room.readSeq && info.readSeq + info.unread < room.srvLast))) return;
  room.known = true;
  room.readSeq = info.readSeq;
  room.srvLast = info.readSeq + info.unread;
  room.srvMentions = info.unreadMentions;
  if (room.sentSeq < room.readSeq) room.sentSeq = room.readSeq;
  for (const seq of room.mentionSeqs) if (seq <= room.srvLast) room.mentionSeqs.delete(seq);
  markViewed(room);
}

/** Whether we are looking at the newest messages of room: on screen, the page visible, scrolled to the bottom. */
function viewing(room) {
  return room.name === active && document.visibilityState === 'visible' && !room.view.hidden && room.atBottom();
}

/**
 * The badge's numbers: the events after our cursor (the server's, or
 * further where this page has shown the room since: its markRead is on
 * its way), counting those the server did not know of when it last told
 * us; and of them, the posts that mention us. As the server's `unread`,
 * every event counts: posts, joins, edits, reactions.
 */
function unreadState(room) {
  const cursor = Math.max(room.readSeq, room.seenSeq, room.known ? 0 : room.replaySeq);
  const last = Math.max(room.srvLast, room.maxSeq);
  const unread = Math.max(0, last - cursor);
  let mentions = cursor >= room.srvLast ? 0 : room.srvMentions;
  for (const seq of room.mentionSeqs) if (seq > Math.max(cursor, room.srvLast)) mentions++;
  return { unread, mentions: Math.min(mentions, unread) };
}

/**
 * The room is being read: move our cursor to the newest seq on screen,
 * here at once and on the server with markRead — at most one request per
 * room per MARK_READ_MS, and only when the seq grows. The server tells
 * all our devices (a 'room' event), which clears their badges.
 */
function markViewed(room) {
  if (viewing(room)) room.seenSeq = Math.max(room.seenSeq, room.maxSeq);
  renderUnread(room);
  if (!room.known || room.markTimer || room.seenSeq <= Math.max(room.sentSeq, room.readSeq)) return;
  // The pending request takes the newest seq seen when it leaves.
  room.markTimer = setTimeout(() => sendMarkRead(room), Math.max(0, room.lastMarkMs + MARK_READ_MS - Date.now()));
}

function sendMarkRead(room) {
  room.markTimer = 0;
  const seq = room.seenSeq;
  if (rooms.get(room.name) !== room || seq <= Math.max(room.sentSeq, room.readSeq)) return;
  if (!room.joined || !client?.connected) return; // onJoined tries again
  room.sentSeq = seq;
  room.lastMarkMs = Date.now();
  client.markRead(room.name, seq).catch(() => {
    // Not stored (the connection dropped, the room went away): the next
    // view (a message, a scroll, a rejoin) asks again.
    if (room.sentSeq === seq) room.sentSeq = room.readSeq;
  });
}

function renderUnread(room) {
  const { unread, mentions } = viewing(room) ? { unread: 0, mentions: 0 } : unreadState(room);
  room.unread = unread;
  room.unreadMentions = mentions;
  room.item.dataset.readSeq = String(room.readSeq); // the server's cursor, and the newest seq here: for tests
  room.item.dataset.lastSeq = String(room.maxSeq);
  room.badge.hidden = room.unread === 0;
  room.badge.dataset.count = String(room.unread);
  // Unread messages that mention us: the badge says so ("@ 2").
  room.badge.dataset.mentions = String(room.unreadMentions);
  room.badge.classList.toggle('mentioned', room.unreadMentions > 0);
  room.badge.replaceChildren(...[
    room.unreadMentions ? el('span', { class: 'badge-at', 'aria-hidden': 'true', text: '@' }) : null,
    room.unread > 99 ? '99+' : String(room.unread),
    el('span', { class: 'visually-hidden', text: room.unreadMentions ? ` unread, ${room.unreadMentions} mentioning you` : ' unread' }),
  ].filter(Boolean));
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

/**
 * The rooms the server lists to us that we are not in, to join with one
 * click: public ones, and private rooms and conversations of ours (an
 * invitation shows as such). A private room we are not invited to is not
 * listed to us at all.
 */
function renderBrowse() {
  const list = $('browse-list');
  const others = activeRooms.filter((r) => !rooms.has(r.name) && !(r.bannedUntilMs > Date.now()));
  list.replaceChildren(...others.map((r) => {
    const dm = r.kind === RoomKind.DIRECT && r.directWith;
    const tag = r.invited ? 'invited' : r.kind === RoomKind.PRIVATE ? 'private' : '';
    return el('li', { dataset: { room: r.name } },
      el('button', { class: 'room-btn', type: 'button', onclick: () => joinRoom(r.name), title: `Join ${dm ? `@ ${r.directWith}` : `#${r.name}`}` },
        el('span', { class: 'hash', 'aria-hidden': 'true', text: dm ? '@' : '#' }),
        el('span', { class: 'room-name', text: dm || r.name }),
        tag ? el('span', { class: `tag tag-${tag}`, text: tag }) : null,
        el('span', { class: 'count', text: String(r.members) },
          el('span', { class: 'visually-hidden', text: r.members === 1 ? ' member' : ' members' }))));
  }));
  $('browse-empty').hidden = others.length > 0;
}

function refreshRoomList() {
  clearTimeout(roomListTimer);
  // Debounced: a burst of joins after a reconnect asks once.
  roomListTimer = setTimeout(() => {
    if (!client?.connected) return;
    client.listRooms({ limit: 200 }).then((list) => {
      activeRooms = list;
      for (const r of list) if (r.role >= Role.MEMBER || r.invited) learnRoom(r);
      renderBrowse();
    }, () => {});
  }, 300);
}

/** Keeps what the server told us of a room (its kind, title, our role) and redraws what shows it. */
function learnRoom(info) {
  infos.set(info.name, { ...infos.get(info.name), ...info });
  const room = rooms.get(info.name);
  if (room) {
    serverUnread(room, info);
    room.renderLabel();
    refreshActions(room);
    if (info.name === active) {
      renderHeader();
      renderMembers();
    }
  }
}

/**
 * Our standing in a room changed: invited (say so, and list it), made a
 * member of a direct conversation (show it: someone wrote to us), given
 * a role (the member list's tools follow).
 */
function onRoomInfo(info) {
  const before = infos.get(info.name);
  learnRoom(info);
  if (info.kind === RoomKind.DIRECT && info.role >= Role.MEMBER && !rooms.has(info.name)) joinRoom(info.name, { show: false }).newToUs = true;
  else if (info.invited && !before?.invited && !rooms.has(info.name)) toast(`You were invited to #${info.name}. Join it from “Other rooms”.`, 'info');
  const room = rooms.get(info.name);
  if (room) {
    refreshRoster(room);
    if (before?.readPositions !== info.readPositions) renderSeen(room);
  }
  if (info.name === active) renderHeader();
  refreshRoomList();
}

// ------------------------------------------------------------------ people

/**
 * A person in a list. In the member list a person other than us is a
 * button that opens their panel (a direct message, and moderation for
 * owners and moderators).
 */
function personItem(name, { devices = 1, connected = false, dot = true, role = Role.NONE, note = '', room = null } = {}) {
  const content = [
    avatar(name, 'small'),
    dot ? el('span', { class: `presence ${connected ? 'on' : 'off'}`, role: 'img', 'aria-label': connected ? 'online' : 'offline', title: connected ? 'online' : 'offline' }) : null,
    el('span', { class: 'person-name', text: name }),
    name === me ? el('span', { class: 'muted small', text: '(you)' }) : null,
    role >= Role.MODERATOR ? el('span', { class: `role role-${roleName(role)}`, text: roleName(role) }) : null,
    note ? el('span', { class: 'muted small', text: note }) : null,
    devices > 1 ? el('span', { class: 'muted small', text: `${devices} devices` }) : null,
  ];
  const li = el('li', { class: 'person', dataset: { user: name } });
  if (room && name !== me) {
    const open = selected?.room === room.name && selected.user === name;
    li.append(el('button', {
      class: 'person-btn', type: 'button', 'aria-expanded': String(open), 'aria-controls': 'person-panel',
      title: `${name}: message${canModerate(room, name) ? ', moderate' : ''}`, onclick: () => openPerson(room, name),
    }, ...content));
  } else {
    li.append(...content.filter(Boolean));
  }
  return li;
}

const byName = (a, b) => a.localeCompare(b);

/** Who is connected to any of our rooms: the server tells us no more than that. */
function onlineUsers() {
  const users = new Map();
  for (const r of rooms.values()) for (const [u, d] of r.members) users.set(u, Math.max(users.get(u) ?? 0, d));
  return users;
}

function renderOnline() {
  const users = onlineUsers();
  const names = [...users.keys()].sort(byName);
  $('online-list').replaceChildren(...names.map((n) => personItem(n, { devices: users.get(n), connected: true })));
  $('online-count').textContent = String(names.length);
}

/** Our role in a room: from its member list, else from what the server last told us. */
function myRole(room) {
  return room.roster.get(me)?.role ?? infos.get(room.name)?.role ?? Role.NONE;
}

/** Whether we may moderate user in room: an owner acts on anyone, a moderator on members; nobody on the owner or themselves. */
function canModerate(room, user) {
  if (infos.get(room.name)?.kind === RoomKind.DIRECT || user === me) return false;
  const mine = myRole(room);
  return mine >= Role.MODERATOR && (room.roster.get(user)?.role ?? Role.NONE) < mine;
}

const bannedNow = (m) => m.bannedUntilMs > Date.now();

/**
 * The member list: who is connected, then (from the room's roster) the
 * members who are not, the invited, and for moderators the banned.
 */
function renderMembers() {
  const room = rooms.get(active);
  const connected = room ? [...room.members.keys()].sort(byName) : [];
  const role = (u) => room?.roster.get(u)?.role ?? Role.NONE;
  $('member-list').replaceChildren(...connected.map((n) => personItem(n, { devices: room.members.get(n), connected: true, role: role(n), room })));
  $('members-count').textContent = room ? String(connected.length) : '';
  $('room-meta').textContent = room ? `${connected.length} ${connected.length === 1 ? 'member' : 'members'}` : '';
  const roster = room ? [...room.roster.values()].sort((a, b) => byName(a.user, b.user)) : [];
  const group = (list, id, items) => {
    $(list).replaceChildren(...items);
    $(id).hidden = items.length === 0;
  };
  group('member-offline', 'offline-h', roster.filter((m) => m.role >= Role.MEMBER && !room.members.has(m.user))
    .map((m) => personItem(m.user, { role: m.role, room, note: m.mutedUntilMs > Date.now() ? 'muted' : '' })));
  group('member-invited', 'invited-h', roster.filter((m) => m.invited && m.role < Role.MEMBER)
    .map((m) => personItem(m.user, { dot: false, room, note: m.invitedBy ? `invited by ${m.invitedBy}` : 'invited' })));
  const mod = room && myRole(room) >= Role.MODERATOR;
  group('member-banned', 'banned-h', mod ? roster.filter(bannedNow).map((m) => personItem(m.user, { dot: false, room, note: `banned${untilText(m.bannedUntilMs)}` })) : []);
  const info = room ? infos.get(room.name) : null;
  $('invite-form').hidden = !(room && info?.kind === RoomKind.PRIVATE && myRole(room) >= Role.MODERATOR);
  renderPerson();
}

/** Asks for a room's roster (members, invited, banned and their roles), at most every 150 ms. */
function refreshRoster(room) {
  clearTimeout(room.rosterTimer);
  room.rosterTimer = setTimeout(async () => {
    if (!client?.connected || rooms.get(room.name) !== room || !room.joined) return;
    try {
      const page = await client.members(room.name, { limit: 500 });
      if (rooms.get(room.name) !== room) return;
      room.roster = new Map(page.members.map((m) => [m.user, m]));
      refreshActions(room);
      if (room.name === active) renderMembers();
    } catch {
      /* not a member (any more): the list shows who is connected */
    }
  }, 150);
}

function onPresence({ room: name, snapshot, members, joined, left }) {
  const room = rooms.get(name);
  if (!room) return; // (a snapshot of no room answers who(), which the page does not ask)
  const target = room.members;
  if (snapshot) {
    target.clear();
    for (const m of members) target.set(m.name, m.devices);
  }
  for (const u of joined) target.set(u, target.get(u) ?? 1);
  for (const u of left) target.delete(u);
  if (left.length) for (const u of left) stopTyping(room, u);
  if (name === active) renderMembers();
  renderOnline();
  refreshRoomList();
}

// ------------------------------------------------------------------ a person's panel

function openPerson(room, user) {
  const same = selected?.room === room.name && selected.user === user;
  selected = same ? null : { room: room.name, user };
  $('person-error').textContent = '';
  $('person-status').textContent = '';
  $('mod-reason').value = '';
  $('dm-input').value = '';
  renderMembers();
  if (selected) $('dm-input').focus();
}

function closePerson() {
  if (!selected) return;
  selected = null;
  renderMembers();
}

/** The open person's panel: a direct message for anyone, and for owners and moderators the actions their role allows. */
function renderPerson() {
  const room = selected && rooms.get(selected.room);
  const panel = $('person-panel');
  if (!room || room.name !== active) {
    panel.hidden = true;
    return;
  }
  const user = selected.user;
  const rec = room.roster.get(user);
  panel.hidden = false;
  $('person-name').textContent = user;
  const state = [roleName(rec?.role ?? Role.NONE), rec?.invited ? 'invited' : '', rec && bannedNow(rec) ? 'banned' : '', rec?.mutedUntilMs > Date.now() ? 'muted' : ''];
  $('person-role').textContent = state.filter(Boolean).join(', ');
  $('dm-label').textContent = `Message ${user} directly`;
  const tools = $('mod-tools');
  tools.hidden = !canModerate(room, user);
  if (tools.hidden) return;
  const mine = myRole(room);
  const actions = [];
  if (rec && bannedNow(rec)) actions.push(['UNBAN', 'Unban']);
  else {
    if (rec?.role >= Role.MEMBER) actions.push(['KICK', 'Kick']);
    actions.push(['BAN', 'Ban']);
    if (rec?.role >= Role.MEMBER) actions.push(rec.mutedUntilMs > Date.now() ? ['UNMUTE', 'Unmute'] : ['MUTE', 'Mute']);
    if (rec?.invited) actions.push(['REVOKE', 'Withdraw invitation']);
    if (mine === Role.OWNER && rec?.role >= Role.MEMBER) {
      actions.push(rec.role === Role.MODERATOR ? ['SET_ROLE', 'Make member', Role.MEMBER] : ['SET_ROLE', 'Make moderator', Role.MODERATOR]);
      actions.push(['TRANSFER', 'Make owner']);
    }
  }
  $('mod-actions').replaceChildren(...actions.map(([action, label, role]) => el('button', {
    class: `btn btn-small ${action === 'BAN' || action === 'KICK' ? 'btn-danger' : 'btn-ghost'}`, type: 'button',
    dataset: { action }, text: label, onclick: () => moderate(room, user, action, role),
  })));
}

/** Runs a moderation action from the panel; a refusal shows there, in the server's words. */
async function moderate(room, user, action, role) {
  const reason = $('mod-reason').value.trim();
  const untilMs = ['BAN', 'MUTE'].includes(action) && $('mod-until').value ? Date.now() + Number($('mod-until').value) : 0;
  $('person-error').textContent = '';
  $('person-status').textContent = '';
  for (const b of $('mod-actions').querySelectorAll('button')) b.disabled = true;
  try {
    await client.moderate(room.name, user, ModAction[action], { reason, untilMs, role });
    $('mod-reason').value = '';
    $('person-status').textContent = 'Done.';
    refreshRoster(room);
  } catch (err) {
    $('person-error').textContent = describeError(err);
  } finally {
    for (const b of $('mod-actions').querySelectorAll('button')) b.disabled = false;
  }
}

/** Writes to someone directly: the first message makes the conversation, which then shows like a room. */
async function sendDirect() {
  const user = selected?.user;
  const text = $('dm-input').value.trim();
  if (!user || !text) return;
  $('person-error').textContent = '';
  try {
    const { room } = await client.direct(user, text);
    $('dm-input').value = '';
    closePerson();
    joinRoom(room);
  } catch (err) {
    $('person-error').textContent = `Not sent: ${describeError(err)}`;
  }
}

/** Invites someone to the private room on screen (owners and moderators). */
async function invite() {
  const input = $('invite-input');
  const user = input.value.trim();
  const status = $('invite-status');
  status.classList.remove('ok');
  const problem = nameProblem(user);
  if (problem || !active) {
    status.textContent = problem;
    return;
  }
  try {
    await client.moderate(active, user, ModAction.INVITE);
    input.value = '';
    status.classList.add('ok');
    status.textContent = `Invited ${user}.`;
    const room = rooms.get(active);
    if (room) refreshRoster(room);
  } catch (err) {
    status.textContent = `Could not invite ${user}: ${describeError(err)}`;
  }
}

/** Creates a room from the sidebar's form (public, or private with invitations) and joins it. */
async function createRoom() {
  const name = $('create-input').value.trim().replace(/^#/, '');
  const priv = $('create-private').checked;
  const invite = $('create-invite').value.split(',').map((s) => s.trim()).filter(Boolean);
  const error = $('create-error');
  error.textContent = nameProblem(name).replace('name', 'room name');
  if (error.textContent) return;
  if (invite.length && !priv) {
    error.textContent = 'Only private rooms take invitations: anyone may join a public one.';
    return;
  }
  try {
    await client.createRoom(name, { kind: priv ? RoomKind.PRIVATE : RoomKind.PUBLIC, invite });
  } catch (err) {
    error.textContent = `Could not create #${name}: ${describeError(err)}`;
    return;
  }
  $('create-input').value = '';
  $('create-invite').value = '';
  $('create-private').checked = false;
  $('create-invite').hidden = true;
  joinRoom(name);
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

/** Signs in with a name, or with a token (then the token's subject is the name). */
function start(name, token = '') {
  me = name;
  client = new ParleyClient({ url: defaultURL(), name, token, codec: 'json' });
  client.on('state', onState);
  client.on('welcome', (w) => {
    me = w.name;
    if (!token) save(STORE_NAME, w.name);
    for (const r of w.rooms) learnRoom(r);
    showApp();
    // Membership is the server's, not this browser's: the rooms we belong
    // to (joined on another device, added by a moderator, conversations
    // others started with us) show on every device, with their badges, up
    // to what one session may be in.
    const mine = w.rooms.filter((r) => r.role >= Role.MEMBER).slice(0, Math.max(0, (w.maxRooms || 100) - rooms.size));
    for (const r of mine) joinRoom(r.name, { show: false });
    refreshRoomList();
  });
  client.on('fatal', ({ error }) => {
    if (!appShown || error instanceof ParleyError) {
      save(STORE_NAME, null);
      showLogin(describeError(error));
    } else {
      toast(`Disconnected for good: ${describeError(error)}`);
    }
  });
  client.on('message', onEvent);
  client.on('change', onChange);
  client.on('room', onRoomInfo);
  client.on('readPositions', onReadPositions);
  client.on('joined', onJoined);
  client.on('rewound', onRewound);
  client.on('joinFailed', onJoinFailed);
  client.on('roomClosed', onRoomClosed);
  client.on('presence', onPresence);
  client.on('typing', onTyping);
  client.on('postAcked', onPostAcked);
  client.on('postFailed', onPostFailed);
  client.on('notice', (n) => !n.room && toast(n.text, 'info'));
  client.on('reset', (r) =>
    toast(`Some messages in #${r.room} were deleted before you could see them (older than #${r.oldestSeq}).`, 'info'));
  client.on('serverError', ({ error }) => toast(describeError(error)));
  // Rooms shown before a refused sign-in are joined again under the new name.
  for (const n of rooms.keys()) client.join(n);
  client.connect().catch(() => {}); // a refusal is the 'fatal' event
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
  client?.close();
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
    formJoin = name;
    $('join-error').textContent = '';
    joinRoom(name);
  });
  $('create-form').addEventListener('submit', (e) => {
    e.preventDefault();
    createRoom();
  });
  $('invite-form').addEventListener('submit', (e) => {
    e.preventDefault();
    invite();
  });
  $('dm-form').addEventListener('submit', (e) => {
    e.preventDefault();
    sendDirect();
  });
  $('person-close').addEventListener('click', closePerson);
  // Invitations are for private rooms only: the field shows with them.
  const invites = () => ($('create-invite').hidden = !$('create-private').checked);
  $('create-private').addEventListener('change', invites);
  invites();

  const input = $('composer-input');
  input.addEventListener('keydown', (e) => {
    if (completionKey(e)) return;
    if (e.key === 'Escape' && rooms.get(active)?.replyTo) {
      setReply(rooms.get(active), 0);
      return;
    }
    // Enter sends; Shift+Enter is a new line. isComposing: Enter also
    // confirms an IME composition (Japanese, Chinese...), which must not send.
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && !e.altKey && !e.ctrlKey && !e.metaKey) {
      e.preventDefault();
      send();
    }
  });
  input.addEventListener('input', () => {
    autosize(input);
    updateCompletion();
    if (active && input.value.trim() !== '') client.typing(active);
  });
  input.addEventListener('click', updateCompletion);
  input.addEventListener('blur', () => setTimeout(closeCompletion, 150));
  $('reply-cancel').addEventListener('click', () => {
    const room = rooms.get(active);
    if (room) setReply(room, 0);
    input.focus();
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
  $('receipts-toggle').addEventListener('click', () => toggleReceipts());
  $('members-close').addEventListener('click', () => toggleMembers(false));
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      closeSidebar();
      toggleMembers(false);
      closePerson();
    }
  });
  // Back to the page: the room on screen is read now (and its badge, hidden
  // while viewed, shows again while the page is not).
  document.addEventListener('visibilitychange', () => {
    const room = rooms.get(active);
    if (room) {
      renderUnread(room);
      markViewed(room);
    }
  });
  // The network came back: no point waiting out the backoff.
  window.addEventListener('online', () => client?.retryNow());
}

wire();
const savedName = load(STORE_NAME, '');
const params = new URLSearchParams(location.search);
const urlToken = params.get('token');
if (urlToken) {
  // Out of the address bar, so it is neither bookmarked nor shared; the
  // client keeps it for reconnects.
  params.delete('token');
  history.replaceState(null, '', location.pathname + (params.size ? `?${params}` : '') + location.hash);
  start('', urlToken);
} else if (typeof savedName === 'string' && savedName && !nameProblem(savedName)) {
  start(savedName);
  showApp(); // optimistic: the server may still refuse the name
} else {
  showLogin();
}
