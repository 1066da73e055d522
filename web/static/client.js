// client.js: a UI-free Parley client for browsers.
//
// ParleyClient speaks parley.v1.json (protojson Envelopes in text frames) over
// one WebSocket and keeps a chat session alive across disconnects: it logs in,
// joins rooms, reconnects with backoff, resumes every room where it stopped
// and re-sends posts the server never acknowledged. It knows nothing about the
// DOM; app.js listens to its events and draws the page. Copy it into your own
// front end if you like: it is the protocol, not the look.
//
// Wire format reminders (proto3 JSON mapping, see proto/parley.proto):
//   - field names are lowerCamelCase: clientMsgId, beforeSeq, requestId;
//   - 64-bit integers (seq, since, beforeSeq, timeMs) are JSON strings: "42".
//     This client turns them into Numbers (exact up to 2^53, far beyond any
//     room's message count) before handing events to the app;
//   - fields at their default value are omitted: no seq means 0, no members
//     means an empty list, no hasMore means false.

export const SUBPROTOCOL = 'parley.v1.json';

// Reconnect delays: full jitter over an exponential ceiling (AWS architecture
// blog, "Exponential Backoff And Jitter"): after the n-th failed attempt wait
// random(0, min(CAP, BASE * 2^n)). The randomness spreads a crowd of clients
// that lost the same server over the window instead of having them all
// reconnect in the same millisecond when it comes back.
const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 10_000;
// A connection that stayed up this long counts as healthy: the next drop
// starts the backoff from scratch. Resetting on the handshake alone would let
// a server that accepts and then immediately kicks us cause a tight loop.
const STABLE_AFTER_MS = 10_000;
// Application pings keep the session inside the server's idle timeout (the
// WebSocket's own ping/pong does not count as activity) and detect a dead
// connection sooner than TCP would.
const PING_EVERY_MS = 30_000;
const PING_TIMEOUT_MS = 10_000;
// Typing notices are throttled: one every 2 s while the user keeps typing is
// enough for others to show "X is typing…" continuously.
const TYPING_EVERY_MS = 2_000;

// Resuming many rooms: this many joins at once, then one every JOIN_SPACING_MS.
const JOIN_BURST = 20;
const JOIN_SPACING_MS = 75;

// Errors after which the same request may succeed later.
const RETRYABLE = new Set(['ERROR_CODE_UNAVAILABLE', 'ERROR_CODE_RATE_LIMITED']);

/** An Error frame answering one of our requests. */
export class ServerError extends Error {
  constructor(frame) {
    super(frame.text || frame.code || 'server error');
    this.name = 'ServerError';
    this.code = frame.code || 'ERROR_CODE_UNSPECIFIED';
    this.room = frame.room || '';
    this.requestId = frame.requestId || '';
  }
}

/** The socket closed before the answer came. */
export class ConnectionLost extends Error {
  constructor() {
    super('connection lost');
    this.name = 'ConnectionLost';
  }
}

/**
 * A client message id: unique per user and room, so a post re-sent after a
 * reconnect is recognised by the server and stored once. crypto.randomUUID()
 * exists only on https or localhost; getRandomValues works everywhere.
 */
export function newClientMsgId() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/** The page's own /ws endpoint, ws: or wss: to match http: or https:. */
export function defaultURL(loc = window.location) {
  return `${loc.protocol === 'https:' ? 'wss:' : 'ws:'}//${loc.host}/ws`;
}

const num = (v) => Number(v ?? 0); // "42" -> 42; absent -> 0

function normalizeEvent(ev) {
  return {
    room: ev.room ?? '',
    seq: num(ev.seq),
    timeMs: num(ev.timeMs),
    sender: ev.sender ?? '',
    text: ev.text ?? '',
    clientMsgId: ev.clientMsgId ?? '',
  };
}

const normalizeMembers = (list) => (list ?? []).map((m) => ({ name: m.name ?? '', devices: m.devices ?? 1 }));

/**
 * ParleyClient emits these events (CustomEvent, payload in event.detail):
 *   state       {state, attempt, retryInMs, code, reason}; state is one of
 *               'connecting', 'online', 'waiting' (to reconnect), 'stopped'
 *   welcome     the Welcome frame (server limits)
 *   joined      {room, members, seq, resumed} after a join's ack
 *   rewound     {room} the room lost its history (its seqs start over):
 *               drop what you show of it; a fresh join follows
 *   joinfailed  {room, error} the server refused a join for good
 *   event       a RoomEvent {room, seq, timeMs, sender, text, clientMsgId},
 *               never the same seq twice, ascending within a room
 *   history     {room, events, hasMore} a page of older events, ascending
 *   presence    {room, snapshot, members, joined, left}; room '' is the
 *               server-wide online list
 *   typing      {room, user}
 *   rooms       {rooms: [{name, members}]} the active rooms
 *   reset       {room, since, oldestSeq} part of a resume gap is gone for good
 *   notice      {text} a message from the server itself
 *   postacked   {room, clientMsgId, seq}
 *   postfailed  {room, clientMsgId, error} refused for good (too long...)
 *   servererror {error} an Error frame no request of ours was waiting for
 *   fatal       {error} the login was refused; the client stopped
 */
export class ParleyClient extends EventTarget {
  /** @param {{url: string, name: string}} opts */
  constructor({ url, name }) {
    super();
    this.url = url;
    this.name = name;
    this.state = 'idle';
    this.welcome = null;
    // Rooms we want to be in, with how far we have read each: the resume
    // point survives reconnects. ready: joined on the current connection.
    this.rooms = new Map(); // name -> {lastSeq, resume, ready}
    // Posts not yet acknowledged, in the order they were written.
    this.outbox = new Map(); // clientMsgId -> {room, text, clientMsgId, sentOn, tries}

    this.ws = null;
    this.gen = 0; // connection generation: frames of an older socket are ignored
    this.nextId = 0;
    this.pending = new Map(); // request id -> {resolve, reject}
    this.attempt = 0; // failed connection attempts since the last healthy one
    this.connectedAt = 0;
    this.retryTimer = 0;
    this.pingTimer = 0;
    this.lastTyping = new Map(); // room -> time we last sent typing
    this.stopped = false;
  }

  // ------------------------------------------------------------ public API

  /** Connects (and keeps reconnecting until stop). */
  start() {
    this.stopped = false;
    this.#connect();
  }

  /** Closes for good (sign out). */
  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    const ws = this.ws;
    this.#closed(this.gen, 1000, 'signed out');
    ws?.close(1000, 'signed out');
  }

  /** Skips the rest of the backoff wait. */
  retryNow() {
    if (this.state === 'waiting') {
      clearTimeout(this.retryTimer);
      this.#connect();
    }
  }

  get connected() {
    return this.state === 'online';
  }

  /**
   * Joins a room (the server creates it on demand). The first join replays
   * the room's recent messages; later joins after a reconnect pass since.
   */
  join(room) {
    if (!this.rooms.has(room)) this.rooms.set(room, { lastSeq: 0, resume: false, ready: false });
    if (this.connected) this.#sendJoin(room);
  }

  /** Leaves a room; it will not be re-joined. Unsent posts to it are dropped. */
  leave(room) {
    if (!this.rooms.delete(room)) return;
    for (const [id, p] of this.outbox) if (p.room === room) this.outbox.delete(id);
    if (this.connected) this.request({ leave: { room } }).catch(() => {});
  }

  /**
   * Posts a message and returns its clientMsgId. It is sent now if the room
   * is joined on a live connection, else as soon as it is; it is re-sent
   * with the same id after any reconnect until the server acknowledges it.
   */
  post(room, text) {
    const clientMsgId = newClientMsgId();
    const p = { room, text, clientMsgId, sentOn: -1, tries: 0 };
    // A frame over the server's limit closes the connection (1009), and a
    // post retried after every reconnect would close each new one: refuse it
    // here. (The server's limit on characters, 4000 by default, is not in
    // the welcome; a post over it gets TOO_LONG, which ends its retries.)
    const limit = this.welcome?.maxMessageBytes ?? 0;
    const bytes = new TextEncoder().encode(JSON.stringify({ id: '4294967295', post: { room, text, clientMsgId } })).length;
    if (limit > 0 && bytes > limit) {
      const error = new ServerError({ code: 'ERROR_CODE_TOO_LONG', text: `the message is ${bytes} bytes; the server takes at most ${limit}`, room });
      // Asynchronously, as a server answer would come: the caller has not
      // shown the message yet.
      queueMicrotask(() => this.#emit('postfailed', { room, clientMsgId, error }));
      return clientMsgId;
    }
    // Others stop showing "typing…" when our message arrives; if we start
    // typing again right away they must hear about it, throttle or not.
    this.lastTyping.delete(room);
    this.outbox.set(clientMsgId, p);
    if (this.connected && this.rooms.get(room)?.ready) this.#sendPost(p);
    return clientMsgId;
  }

  /** Asks for up to limit events before beforeSeq; they arrive as 'history'. */
  history(room, beforeSeq, limit = 50) {
    return this.request({ history: { room, beforeSeq: String(beforeSeq), limit } });
  }

  /** Says we are typing in room (throttled; typing is never acknowledged). */
  typing(room) {
    const now = Date.now();
    if (!this.connected || !this.rooms.get(room)?.ready) return;
    if (now - (this.lastTyping.get(room) ?? 0) < TYPING_EVERY_MS) return;
    this.lastTyping.set(room, now);
    // No id: the server relays typing but never answers it.
    this.#sendFrame({ typing: { room } });
  }

  /** Asks which rooms are active; the list arrives as 'rooms'. */
  listRooms() {
    return this.request({ rooms: {} });
  }

  /**
   * Sends one request with a fresh id and resolves with its Ack, or rejects
   * with ServerError (an Error frame) or ConnectionLost. Answers that carry
   * data (roomList, historyPage, presence snapshot, replayed events) arrive as
   * their own frames BEFORE the ack, so by the time this resolves they have
   * been emitted.
   */
  request(body, onAck) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return Promise.reject(new ConnectionLost());
    const id = String(++this.nextId);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onAck });
      this.#sendFrame({ id, ...body });
    });
  }

  // ------------------------------------------------------------ connection

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #setState(state, extra = {}) {
    this.state = state;
    this.#emit('state', { state, attempt: this.attempt, ...extra });
  }

  #sendFrame(env) {
    this.ws.send(JSON.stringify(env));
  }

  #connect() {
    const gen = ++this.gen;
    this.#setState('connecting');
    let ws;
    try {
      ws = new WebSocket(this.url, [SUBPROTOCOL]);
    } catch (err) {
      // A malformed URL; nothing to retry.
      this.stopped = true;
      this.#setState('stopped', { reason: String(err) });
      return;
    }
    this.ws = ws;
    ws.onopen = () => this.#opened(gen);
    ws.onmessage = (e) => gen === this.gen && this.#frame(e.data);
    ws.onclose = (e) => this.#closed(gen, e.code, e.reason);
    // onerror carries no detail in browsers; onclose always follows it.
  }

  async #opened(gen) {
    if (gen !== this.gen) return;
    if (this.ws.protocol !== SUBPROTOCOL) {
      // A server that does not speak parley.v1.json would answer in another
      // protocol; do not guess.
      this.#drop(gen, 4998, `server chose subprotocol "${this.ws.protocol}"`);
      return;
    }
    try {
      // Step 1: hello. watchOnline asks for the server-wide online list: a
      // snapshot (presence with room "" and members) then joined/left deltas.
      await this.request({ hello: { name: this.name, watchOnline: true } });
    } catch (err) {
      if (gen !== this.gen) return;
      if (err instanceof ServerError && err.code !== 'ERROR_CODE_RATE_LIMITED' && err.code !== 'ERROR_CODE_UNAVAILABLE') {
        // INVALID_NAME and friends will not get better by retrying.
        this.stop();
        this.#emit('fatal', { error: err });
        return;
      }
      this.#drop(gen, 4998, err.message);
      return;
    }
    if (gen !== this.gen) return;
    this.connectedAt = Date.now();
    this.#setState('online');
    this.#startPings(gen);
    this.listRooms().catch(() => {});
    // Step 2: (re-)join every room. Resumed rooms pass since = the last seq
    // we saw, so the server replays exactly what we missed, then acks.
    // Past the first few, joins are spaced out to stay inside the server's
    // request rate limit (20/s with a burst of 40 by default; the welcome
    // does not say), since a session that keeps hitting it is disconnected.
    let i = 0;
    for (const room of this.rooms.keys()) {
      const delay = Math.max(0, i++ - JOIN_BURST) * JOIN_SPACING_MS;
      if (delay === 0) this.#sendJoin(room);
      else setTimeout(() => gen === this.gen && this.#sendJoin(room), delay);
    }
  }

  /** Abandons the current socket now (a dead connection may take minutes to report its close). */
  #drop(gen, code, reason) {
    if (gen !== this.gen) return;
    const ws = this.ws;
    this.#closed(gen, code, reason);
    try {
      ws?.close();
    } catch {
      /* already closing */
    }
  }

  #closed(gen, code, reason) {
    if (gen !== this.gen) return; // an older socket, already handled
    this.gen++; // late frames and events of this socket are now ignored
    this.ws = null;
    clearInterval(this.pingTimer);
    for (const p of this.pending.values()) p.reject(new ConnectionLost());
    this.pending.clear();
    for (const r of this.rooms.values()) r.ready = false;
    for (const p of this.outbox.values()) p.sentOn = -1; // re-send on the next connection
    if (this.stopped) {
      this.#setState('stopped', { code, reason });
      return;
    }
    if (this.connectedAt && Date.now() - this.connectedAt >= STABLE_AFTER_MS) this.attempt = 0;
    this.connectedAt = 0;
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
    const delay = Math.round(Math.random() * ceiling);
    this.attempt++;
    this.retryTimer = setTimeout(() => this.#connect(), delay);
    this.#setState('waiting', { retryInMs: delay, code, reason });
  }

  #startPings(gen) {
    const idle = this.welcome?.idleTimeoutMs ?? 0;
    // Well inside the idle timeout, whatever the server configured.
    const every = idle > 0 ? Math.min(PING_EVERY_MS, idle / 3) : PING_EVERY_MS;
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => {
      const deadline = setTimeout(() => this.#drop(gen, 4997, 'no answer to ping'), PING_TIMEOUT_MS);
      this.request({ ping: {} })
        .catch(() => {})
        .finally(() => clearTimeout(deadline));
    }, every);
  }

  // ------------------------------------------------------------ rooms and posts

  async #sendJoin(room) {
    const r = this.rooms.get(room);
    if (!r) return;
    const gen = this.gen;
    r.ready = false;
    const join = { room };
    if (r.resume) join.since = String(r.lastSeq);
    let rewind = false;
    // The ack is applied the moment it arrives, not when the promise settles:
    // frames that follow it in the same batch (someone else joining) must
    // apply to the member list it carries, not be overwritten by it.
    const onAck = (ack) => {
      if (gen !== this.gen || this.rooms.get(room) !== r) return;
      // Everything up to ack.seq has been replayed (as events, before the ack).
      const resumed = r.resume;
      const seq = num(ack.seq);
      if (resumed && seq < r.lastSeq) {
        rewind = true; // handled below, once the request has settled
        return;
      }
      r.lastSeq = Math.max(r.lastSeq, seq);
      r.resume = true;
      r.ready = true;
      this.#emit('joined', { room, members: normalizeMembers(ack.members), seq, resumed });
    };
    try {
      await this.request({ join }, onAck);
    } catch (err) {
      if (!(err instanceof ServerError) || gen !== this.gen) return; // re-joined on reconnect
      if (RETRYABLE.has(err.code)) {
        setTimeout(() => gen === this.gen && this.rooms.has(room) && this.#sendJoin(room), 1000 + Math.random() * 2000);
        return;
      }
      this.rooms.delete(room);
      this.#emit('joinfailed', { room, error: err });
      return;
    }
    if (gen !== this.gen || this.rooms.get(room) !== r) return;
    if (rewind) {
      // The room's latest seq is behind what we saw: it lost its history (a
      // server restarted on an in-memory store) and its seqs start over, so
      // what we hold would collide with new messages. (Current servers say
      // so with a resetEvent first; this covers older ones.) Start over:
      // leave, and join again without since to get its recent messages.
      r.lastSeq = 0;
      r.resume = false;
      this.#emit('rewound', { room });
      await this.request({ leave: { room } }).catch(() => {});
      if (gen === this.gen && this.rooms.get(room) === r) this.#sendJoin(room);
      return;
    }
    // Step 3: re-send what the server never acknowledged, in order, with the
    // same clientMsgId: if it did store one before the connection dropped it
    // acks the original seq and does not deliver it twice.
    for (const p of this.outbox.values()) if (p.room === room && p.sentOn !== gen) this.#sendPost(p);
  }

  async #sendPost(p) {
    const gen = this.gen;
    p.sentOn = gen;
    let ack;
    try {
      ack = await this.request({ post: { room: p.room, text: p.text, clientMsgId: p.clientMsgId } });
    } catch (err) {
      if (!(err instanceof ServerError)) return; // connection lost: re-sent after the next join
      if (RETRYABLE.has(err.code)) {
        // Busy server or our rate limit: try again a little later, same id.
        const delay = Math.random() * Math.min(BACKOFF_CAP_MS, 1000 * 2 ** p.tries++);
        p.sentOn = -1;
        setTimeout(() => {
          if (gen === this.gen && this.outbox.get(p.clientMsgId) === p && p.sentOn !== gen) this.#sendPost(p);
        }, delay);
        return;
      }
      this.outbox.delete(p.clientMsgId);
      this.#emit('postfailed', { room: p.room, clientMsgId: p.clientMsgId, error: err });
      return;
    }
    this.outbox.delete(p.clientMsgId);
    this.#emit('postacked', { room: p.room, clientMsgId: p.clientMsgId, seq: num(ack.seq) });
  }

  // ------------------------------------------------------------ incoming frames

  #frame(data) {
    let env;
    try {
      env = JSON.parse(data);
    } catch {
      console.warn('parley: ignoring a frame that is not JSON', data);
      return;
    }
    this.#handle(env);
  }

  #handle(env) {
    if (env.batch) {
      // The server coalesces queued frames into a batch: handle every item
      // in order, exactly as if each had come alone.
      for (const item of env.batch.items ?? []) this.#handle(item);
    } else if (env.ack) {
      this.#answer(env.ack.requestId, (p) => {
        p.onAck?.(env.ack); // synchronously, before the next item of a batch
        p.resolve(env.ack);
      });
    } else if (env.error) {
      const err = new ServerError(env.error);
      if (!this.#answer(err.requestId, (p) => p.reject(err))) this.#emit('servererror', { error: err });
    } else if (env.event) {
      this.#event(normalizeEvent(env.event));
    } else if (env.presence) {
      const p = env.presence;
      const joined = p.joined ?? [];
      const left = p.left ?? [];
      // A snapshot is the full list; a delta always names someone. (An empty
      // snapshot, nobody online, arrives as just {"presence":{}}.)
      const snapshot = joined.length === 0 && left.length === 0;
      this.#emit('presence', { room: p.room ?? '', snapshot, members: normalizeMembers(p.members), joined, left });
    } else if (env.typing) {
      this.#emit('typing', { room: env.typing.room ?? '', user: env.typing.user ?? '' });
    } else if (env.historyPage) {
      const h = env.historyPage;
      this.#emit('history', { room: h.room ?? '', events: (h.events ?? []).map(normalizeEvent), hasMore: !!h.hasMore });
    } else if (env.welcome) {
      this.welcome = env.welcome;
      this.#emit('welcome', env.welcome);
    } else if (env.roomList) {
      const rooms = (env.roomList.rooms ?? []).map((r) => ({ name: r.name ?? '', members: r.members ?? 0 }));
      this.#emit('rooms', { rooms });
    } else if (env.notice) {
      this.#emit('notice', { text: env.notice.text ?? '' });
    } else if (env.resetEvent) {
      const r = env.resetEvent;
      const room = this.rooms.get(r.room);
      const since = num(r.since);
      const oldest = num(r.oldestSeq);
      // The replay that follows starts at oldestSeq.
      if (room) room.lastSeq = oldest - 1;
      if (since >= oldest && room) {
        // We had seen more than the server has: its history was lost and
        // its seqs start over. Forget ours.
        room.resume = false;
        this.#emit('rewound', { room: r.room ?? '' });
      } else {
        // Retention deleted part of the gap: say so, never skip silently.
        this.#emit('reset', { room: r.room ?? '', since, oldestSeq: oldest });
      }
    } else {
      // Newer servers may add frame types; an old page just skips them.
      console.debug('parley: ignoring an unknown frame', Object.keys(env));
    }
  }

  /** Settles the request named id; false when nobody was waiting for it. */
  #answer(id, settle) {
    const p = id && this.pending.get(id);
    if (!p) return false;
    this.pending.delete(id);
    settle(p);
    return true;
  }

  #event(ev) {
    const r = this.rooms.get(ev.room);
    if (!r) return; // a late delivery for a room we left
    // The server delivers each seq once and in order, and a resume replays
    // only seq > since; still, never pass on the same seq twice.
    if (ev.seq <= r.lastSeq) return;
    r.lastSeq = ev.seq;
    if (ev.sender === this.name && ev.clientMsgId) this.outbox.delete(ev.clientMsgId);
    this.#emit('event', ev);
  }
}
