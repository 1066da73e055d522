import { create, type MessageInitShape } from '@bufbuild/protobuf';
import {
  CloseCode,
  type Envelope,
  EnvelopeSchema,
  ErrorCode,
  type Ack,
  type Member as PbMember,
  type MemberInfo as PbMemberInfo,
  type ModAction,
  type Role,
  type RoomEvent,
  type RoomInfo as PbRoomInfo,
  RoomKind,
  type Welcome as PbWelcome,
} from '../gen/parley_pb.js';
import { type BackoffOptions, DEFAULT_BACKOFF, fullJitter } from './backoff.js';
import { type Codec, type CodecName, codecNamed } from './codec.js';
import { Emitter } from './emitter.js';
import { ClosedError, ConnectionLostError, HandshakeError, ParleyError, TimeoutError } from './errors.js';
import { defaultSocketFactory, isOpen, type OpenedSocket, type SocketFactory, type WebSocketLike } from './socket.js';
import type {
  ChatMessage,
  ConnectionState,
  HistoryPage,
  Joined,
  Member,
  MemberInfo,
  MembersPage,
  PageOptions,
  ParleyEvents,
  PostResult,
  Presence,
  RoomChange,
  RoomInfo,
  RoomsPage,
  Welcome,
  WhoPage,
} from './types.js';

/** A token, or a function that gets a fresh one; it is called before every connection and before the current token expires. */
export type TokenSource = string | (() => string | Promise<string>);

/**
 * Where the token goes: in the hello frame (default: never in a URL that
 * proxies log), in the handshake's query (?token=), or in its Authorization
 * header (Node only, with the ws package). Only the handshake ones let the
 * server refuse with HTTP 401 before the upgrade.
 */
export type TokenPlacement = 'hello' | 'query' | 'header';

export interface ParleyClientOptions {
  /** The server's WebSocket endpoint, ws(s)://host/ws. */
  url: string;
  /** The user name, for servers that allow anonymous names. With a token the token's subject is the name. */
  name?: string;
  token?: TokenSource;
  tokenIn?: TokenPlacement;
  /** 'proto' (binary, the default) or 'json' (readable in a browser's network panel). */
  codec?: CodecName;
  /**
   * @deprecated The server no longer sends a server-wide online list (it
   * answers an empty snapshot); presence is per room: the rooms' presence
   * events, and who().
   */
  watchOnline?: boolean;
  /** Reconnect backoff; false: do not reconnect. */
  reconnect?: BackoffOptions | false;
  /** Bound on waiting for an answer to a request. Default 10 000 ms. */
  requestTimeoutMs?: number;
  /** Application pings keep the session inside the server's idle timeout and find a dead connection sooner than TCP would. Default 30 000 ms, or a third of the server's idle timeout. */
  pingIntervalMs?: number;
  /** Typing notices are sent at most this often per room. Default 2 000 ms. */
  typingIntervalMs?: number;
  /** Opens sockets; the default picks the global WebSocket or the ws package. */
  socketFactory?: SocketFactory;
}

interface Pending {
  resolve(env: Envelope): void;
  reject(err: Error): void;
  /** Runs on the ack or error the moment it is handled, before the next frame of a batch. */
  onAnswer?: (env: Envelope) => void;
  timer?: ReturnType<typeof setTimeout>;
  what: string;
}

interface RoomState {
  /** The last seq delivered: the resume point, kept across connections. */
  lastSeq: number;
  /** Whether lastSeq is meaningful (a join was acked once). */
  resume: boolean;
  /** Joined on the current connection. */
  ready: boolean;
  waiters: { resolve(j: Joined): void; reject(e: Error): void }[];
  lastJoin: Joined | null;
}

interface OutboxEntry {
  room: string;
  text: string;
  clientMsgId: string;
  /** Connection generation it was last sent on; -1: not on this one. */
  sentOn: number;
  tries: number;
  promise: Promise<PostResult>;
  resolve(r: PostResult): void;
  reject(e: Error): void;
}

type Body = MessageInitShape<typeof EnvelopeSchema>['body'];

/**
 * Close codes after which reconnecting would not help (proto/parley.proto's
 * CloseCode says so). TOKEN_EXPIRED is among them only without a token
 * function to get a new one.
 */
const FINAL_CLOSES = new Set<number>([CloseCode.NORMAL, CloseCode.KICKED, CloseCode.POLICY_VIOLATION]);

/** Our own close codes for connections we abandon (4900-4999 are not Parley's). */
const DROP_NO_PONG = 4997;
const DROP_PROTOCOL = 4998;

const num = (v: bigint | number | undefined): number => Number(v ?? 0);

function toMessage(ev: RoomEvent): ChatMessage {
  return {
    room: ev.room,
    seq: num(ev.seq),
    timeMs: num(ev.timeMs),
    sender: ev.sender,
    senderKind: ev.senderKind,
    text: ev.text,
    clientMsgId: ev.clientMsgId,
    replyTo: num(ev.replyTo),
    mentions: [...ev.mentions],
    editedMs: num(ev.editedMs),
    deleted: ev.deleted,
    reactions: ev.reactions.map((r) => ({ emoji: r.emoji, count: r.count, mine: r.mine })),
  };
}

function toChange(ev: RoomEvent): RoomChange {
  const c = ev.change!;
  return {
    room: ev.room,
    seq: num(ev.seq),
    timeMs: num(ev.timeMs),
    sender: ev.sender,
    senderKind: ev.senderKind,
    kind: c.kind,
    user: c.user,
    role: c.role,
    untilMs: num(c.untilMs),
    reason: c.reason,
    roomKind: c.roomKind,
    title: c.title,
    topic: c.topic,
    readPositions: c.readPositions,
    targetSeq: num(c.targetSeq),
    text: ev.text,
    emoji: c.emoji,
    count: c.count,
  };
}

function toRoomInfo(r: PbRoomInfo): RoomInfo {
  return {
    name: r.name,
    members: r.members,
    kind: r.kind,
    title: r.title,
    topic: r.topic,
    lastSeq: num(r.lastSeq),
    role: r.role,
    invited: r.invited,
    bannedUntilMs: num(r.bannedUntilMs),
    mutedUntilMs: num(r.mutedUntilMs),
    createdBy: r.createdBy,
    createdMs: num(r.createdMs),
    directWith: r.directWith,
    deleted: r.deleted,
    readSeq: num(r.readSeq),
    unread: num(r.unread),
    unreadMentions: r.unreadMentions,
    readPositions: r.readPositions,
  };
}

function toMemberInfo(m: PbMemberInfo): MemberInfo {
  return {
    user: m.user,
    role: m.role,
    invited: m.invited,
    invitedBy: m.invitedBy,
    sinceMs: num(m.sinceMs),
    bannedUntilMs: num(m.bannedUntilMs),
    mutedUntilMs: num(m.mutedUntilMs),
  };
}

/** Whether a room is one of the user's, as the Welcome lists them: a member of it, or invited. */
const belongs = (r: RoomInfo): boolean => !r.deleted && (r.role >= 1 || r.invited);

const toMembers = (list: PbMember[]): Member[] => list.map((m) => ({ name: m.name, devices: m.devices }));

function toWelcome(w: PbWelcome): Welcome {
  return {
    sessionId: w.sessionId,
    name: w.name,
    maxMessageBytes: w.maxMessageBytes,
    maxRooms: w.maxRooms,
    idleTimeoutMs: w.idleTimeoutMs,
    maxTextChars: w.maxTextChars,
    rate: w.rate,
    burst: w.burst,
    tokenExpiresMs: num(w.tokenExpiresMs),
    rooms: w.rooms.map(toRoomInfo),
    moreRooms: w.moreRooms,
  };
}

/** The exp claim of a JWT in Unix ms, read without verifying (only to schedule a refresh); 0 if there is none. */
function jwtExpiryMs(token: string): number {
  const part = token.split('.')[1];
  if (!part) return 0;
  try {
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(atob(b64.padEnd(Math.ceil(b64.length / 4) * 4, '='))) as { exp?: unknown };
    return typeof claims.exp === 'number' ? claims.exp * 1000 : 0;
  } catch {
    return 0;
  }
}

/**
 * A client message id: unique per user and room, so a post re-sent after a
 * reconnect is stored once. crypto.randomUUID() exists only in secure
 * contexts; getRandomValues works everywhere.
 */
export function newClientMsgId(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/**
 * ParleyClient keeps one chat session alive over a WebSocket: it logs in,
 * joins rooms, acknowledges requests with promises, reconnects with
 * full-jitter backoff, resumes every room from its last seq (no hole, no
 * duplicate), and re-sends unacknowledged posts with their clientMsgId so
 * each is stored once. Listen with on(type, fn); see ParleyEvents.
 */
export class ParleyClient extends Emitter<ParleyEvents> {
  readonly url: string;
  readonly codec: Codec;
  #opts: ParleyClientOptions;
  #backoff: Required<BackoffOptions> | null;
  #open: SocketFactory;

  #state: ConnectionState = 'idle';
  #welcome: Welcome | null = null;
  #rooms = new Map<string, RoomState>();
  #outbox = new Map<string, OutboxEntry>();

  #socket: OpenedSocket | null = null;
  /** Connection generation: callbacks of an older socket see a different number and do nothing. */
  #gen = 0;
  #nextId = 0;
  #pending = new Map<string, Pending>();
  #attempt = 0;
  #connectedAt = 0;
  #stopped = true;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #pingTimer: ReturnType<typeof setInterval> | undefined;
  #refreshTimer: ReturnType<typeof setTimeout> | undefined;
  #lastTyping = new Map<string, number>();
  #token = '';

  /** The user's rooms: the Welcome's, kept current by 'room' events. */
  #myRooms = new Map<string, RoomInfo>();

  // Data that answers a request arrives before its ack and names no
  // request; the last of each kind is kept until the ack claims it. One
  // such request at a time (#lists), so that data is its own.
  #page: HistoryPage | null = null;
  #snapshot: WhoPage | null = null;
  #roomList: RoomsPage | null = null;
  #memberList: MembersPage | null = null;
  #lists: Promise<unknown> = Promise.resolve();

  /** Requests waiting for the client to be online (direct messages). */
  #onlineWaiters: { resolve(): void; reject(e: Error): void }[] = [];

  // Requests beyond the server's rate wait here instead of being refused:
  // a session that keeps exceeding it is disconnected (1008).
  #queue: { gen: number; env: Envelope; sent?: () => void }[] = [];
  #tokens = 0;
  #tokensAt = 0;
  #pumpTimer: ReturnType<typeof setTimeout> | undefined;

  #firstOnline: { resolve(): void; reject(e: Error): void } | null = null;

  constructor(opts: ParleyClientOptions) {
    super();
    if (!opts.url) throw new TypeError('ParleyClient: url is required');
    this.#opts = { ...opts };
    this.url = opts.url;
    this.codec = codecNamed(opts.codec ?? 'proto');
    this.#backoff = opts.reconnect === false ? null : { ...DEFAULT_BACKOFF, ...opts.reconnect };
    this.#open = opts.socketFactory ?? defaultSocketFactory;
    if (opts.tokenIn === 'header' && !opts.token) throw new TypeError('ParleyClient: tokenIn "header" needs a token');
  }

  // ------------------------------------------------------------------ state

  get state(): ConnectionState {
    return this.#state;
  }

  get connected(): boolean {
    return this.#state === 'online';
  }

  /** The last Welcome: the user name and the server's limits. */
  get welcome(): Welcome | null {
    return this.#welcome;
  }

  /** The rooms the client is in (or will re-join on reconnect). */
  get rooms(): string[] {
    return [...this.#rooms.keys()];
  }

  /**
   * The user's rooms (member of, invited to) by name, each with its kind,
   * title, the user's role and its last seq: the last Welcome's, kept
   * current by 'room' events. They are not joined by themselves: join()
   * the ones to follow.
   */
  get myRooms(): RoomInfo[] {
    return [...this.#myRooms.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** The last seq delivered in room (0 before any), the point a reconnect resumes from. */
  lastSeq(room: string): number {
    return this.#rooms.get(room)?.lastSeq ?? 0;
  }

  /** Posts not yet acknowledged, oldest first. */
  get unsent(): { room: string; text: string; clientMsgId: string }[] {
    return [...this.#outbox.values()].map(({ room, text, clientMsgId }) => ({ room, text, clientMsgId }));
  }

  // ------------------------------------------------------------------ lifecycle

  /**
   * Connects, and keeps reconnecting until close(). Resolves once logged in
   * the first time; rejects if the client stops first (login refused, a bad
   * token, close()).
   */
  connect(): Promise<void> {
    if (!this.#stopped) {
      return this.#state === 'online' ? Promise.resolve() : new Promise((resolve, reject) => this.#addFirstOnline(resolve, reject));
    }
    this.#stopped = false;
    this.#attempt = 0;
    const p = new Promise<void>((resolve, reject) => this.#addFirstOnline(resolve, reject));
    void this.#connect();
    return p;
  }

  #addFirstOnline(resolve: () => void, reject: (e: Error) => void): void {
    const prev = this.#firstOnline;
    this.#firstOnline = {
      resolve: () => {
        prev?.resolve();
        resolve();
      },
      reject: (e) => {
        prev?.reject(e);
        reject(e);
      },
    };
  }

  /** Closes for good. Joins and posts still waiting are rejected with ClosedError. */
  close(): void {
    this.#stop(new ClosedError(CloseCode.NORMAL, 'closed by the client'), CloseCode.NORMAL, 'closed by the client');
  }

  /** Skips the rest of the backoff wait (e.g. on the browser's 'online' event). */
  retryNow(): void {
    if (this.#state === 'waiting') {
      clearTimeout(this.#retryTimer);
      void this.#connect();
    }
  }

  // ------------------------------------------------------------------ requests

  /**
   * Joins a room (created on demand) and keeps it joined across reconnects,
   * resuming from the last seq seen. Messages replayed by the join arrive as
   * 'message' events before this resolves.
   */
  join(room: string): Promise<Joined> {
    let r = this.#rooms.get(room);
    if (r?.ready && r.lastJoin) return Promise.resolve(r.lastJoin);
    const first = !r;
    if (!r) {
      r = { lastSeq: 0, resume: false, ready: false, waiters: [], lastJoin: null };
      this.#rooms.set(room, r);
    }
    const state = r;
    const p = new Promise<Joined>((resolve, reject) => state.waiters.push({ resolve, reject }));
    // A refusal is also a 'joinFailed' event: a caller who listens to
    // events need not await, and an ignored promise must not crash Node.
    p.catch(() => {});
    if (first && this.connected) this.#sendJoin(room);
    return p;
  }

  /**
   * Ends the user's membership of a room (a LEFT change; every connection
   * of the user leaves it) and stops re-joining it; its unsent posts are
   * rejected. Only the server ends a membership, so while offline this
   * waits for the room to be joined again. An owner with other members is
   * refused (FORBIDDEN: transfer ownership first) and stays in the room.
   */
  async leave(room: string): Promise<void> {
    for (let tries = 0; ; ) {
      const r = this.#rooms.get(room);
      if (!r) return;
      if (!r.ready || !this.connected) {
        try {
          await this.join(room);
        } catch (e) {
          if (e instanceof ParleyError) return; // refused: not in it, nothing to leave
          throw e;
        }
        continue;
      }
      // The room is forgotten as the answer is handled: a reconnect right
      // after it must not join it again.
      const gone = (env: Envelope) => {
        const ok = env.body.case === 'ack' || (env.body.case === 'error' && env.body.value.code === ErrorCode.NOT_JOINED);
        if (ok && this.#rooms.get(room) === r) this.#forget(room, new ParleyError(ErrorCode.NOT_JOINED, `left ${room}`, { room, local: true }), false);
      };
      try {
        await this.#request({ case: 'leave', value: { room } }, 'leave', gone);
        return;
      } catch (e) {
        if (e instanceof ParleyError && e.code === ErrorCode.NOT_JOINED) return;
        if (e instanceof ConnectionLostError) continue;
        if (!(e instanceof TimeoutError) && !(e instanceof ParleyError && e.retryable)) throw e;
        await new Promise((res) => setTimeout(res, fullJitter(tries++, { baseMs: 1000, capMs: 10_000 })));
      }
    }
  }

  /** Drops a room the client is out of: its waiters and unsent posts are rejected with err. */
  #forget(room: string, err: ParleyError, emitFailures: boolean): void {
    const r = this.#rooms.get(room);
    if (!r) return;
    this.#rooms.delete(room);
    for (const w of r.waiters) w.reject(err);
    r.waiters = [];
    for (const p of this.#outbox.values()) if (p.room === room) this.#failPost(p, err, emitFailures);
  }

  /**
   * Posts text to a joined room and resolves with its seq once the server
   * stored it. While offline the post waits; after a reconnect it is re-sent
   * with the same clientMsgId, which the server stores once, so it resolves
   * exactly once. Pass your own clientMsgId to show the message before the
   * answer (the same id again returns the same promise).
   */
  post(room: string, text: string, opts: { clientMsgId?: string } = {}): Promise<PostResult> {
    const clientMsgId = opts.clientMsgId || newClientMsgId();
    const existing = this.#outbox.get(clientMsgId);
    if (existing) return existing.promise;
    const refuse = (error: ParleyError): Promise<PostResult> => {
      // Asynchronously, as a server's answer would come.
      queueMicrotask(() => this.emit('postFailed', { room, clientMsgId, error }));
      const p = Promise.reject(error);
      p.catch(() => {});
      return p;
    };
    if (!this.#rooms.has(room)) return refuse(new ParleyError(ErrorCode.NOT_JOINED, `join ${room} before posting to it`, { room, local: true }));
    const tooLong = this.#tooLong(room, text, { case: 'post', value: { room, text, clientMsgId } });
    if (tooLong) return refuse(tooLong);
    let resolve!: (r: PostResult) => void;
    let reject!: (e: Error) => void;
    const promise = new Promise<PostResult>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    promise.catch(() => {}); // as for join: 'postFailed' says it too
    const entry: OutboxEntry = { room, text, clientMsgId, sentOn: -1, tries: 0, promise, resolve, reject };
    this.#outbox.set(clientMsgId, entry);
    // Others stop showing "typing…" when our message arrives; typing again
    // right after must be heard, throttle or not.
    this.#lastTyping.delete(room);
    if (this.connected && this.#rooms.get(room)?.ready) this.#sendPost(entry);
    return promise;
  }

  /**
   * A text the server would refuse for its length, refused here instead: a
   * frame over the server's limit closes the connection (1009), and one
   * re-sent after every reconnect would close each new one.
   */
  #tooLong(room: string, text: string, body: Body): ParleyError | null {
    const w = this.#welcome;
    if (w && w.maxTextChars > 0) {
      const chars = [...text].length;
      if (chars > w.maxTextChars) return new ParleyError(ErrorCode.TOO_LONG, `the text has ${chars} characters; the server takes at most ${w.maxTextChars}`, { room, local: true });
    }
    if (w && w.maxMessageBytes > 0) {
      const frame = this.codec.encode(create(EnvelopeSchema, { id: '4294967295', body }));
      const bytes = typeof frame === 'string' ? new TextEncoder().encode(frame).length : frame.length;
      if (bytes > w.maxMessageBytes) return new ParleyError(ErrorCode.TOO_LONG, `the message is ${bytes} bytes; the server takes at most ${w.maxMessageBytes}`, { room, local: true });
    }
    return null;
  }

  /**
   * Posts text to a joined room as a reply to post replyTo (0: none),
   * mentioning members of the room by name; resolves with its seq. Like
   * direct(), it waits while offline and is re-sent with its clientMsgId
   * until the server stored it once. Refusals: NO_SUCH_MESSAGE,
   * NOT_ALLOWED, ALREADY_DELETED (the replied-to post), NOT_MEMBER (a
   * mention).
   */
  async reply(room: string, text: string, opts: { replyTo?: number; mentions?: string[]; clientMsgId?: string } = {}): Promise<PostResult> {
    const clientMsgId = opts.clientMsgId || newClientMsgId();
    const body: Body = { case: 'post', value: { room, text, clientMsgId, replyTo: BigInt(opts.replyTo ?? 0), mentions: opts.mentions ?? [] } };
    const tooLong = this.#tooLong(room, text, body);
    if (tooLong) throw tooLong;
    const ack = await this.#retrying(body, 'post');
    return { room, clientMsgId, seq: num(ack.seq) };
  }

  /**
   * Replaces the text of the user's own post seq; resolves with the seq of
   * the EDITED change. Re-sent with one clientMsgId until answered, so it
   * applies once. Refusals: NOT_YOURS, NO_SUCH_MESSAGE, NOT_ALLOWED,
   * ALREADY_DELETED, TOO_LONG.
   */
  async edit(room: string, seq: number, text: string, opts: { clientMsgId?: string } = {}): Promise<number> {
    const body: Body = { case: 'edit', value: { room, seq: BigInt(seq), text, clientMsgId: opts.clientMsgId || newClientMsgId() } };
    const tooLong = this.#tooLong(room, text, body);
    if (tooLong) throw tooLong;
    return num((await this.#retrying(body, 'edit')).seq);
  }

  /**
   * Deletes post seq (the user's own; a moderator's or owner's, anyone's):
   * its text is erased from the server. Resolves with the seq of the
   * MESSAGE_DELETED change; retried and refused as edit() is.
   */
  async deleteMessage(room: string, seq: number, opts: { reason?: string; clientMsgId?: string } = {}): Promise<number> {
    const body: Body = { case: 'deleteMessage', value: { room, seq: BigInt(seq), reason: opts.reason ?? '', clientMsgId: opts.clientMsgId || newClientMsgId() } };
    return num((await this.#retrying(body, 'deleteMessage')).seq);
  }

  /**
   * Adds the user's emoji to post seq, or with remove takes it back;
   * resolves with the seq of the REACTED or UNREACTED change, 0 when
   * nothing changed. Retried as edit() is.
   */
  async react(room: string, seq: number, emoji: string, opts: { remove?: boolean; clientMsgId?: string } = {}): Promise<number> {
    const body: Body = { case: 'react', value: { room, seq: BigInt(seq), emoji, remove: opts.remove ?? false, clientMsgId: opts.clientMsgId || newClientMsgId() } };
    return num((await this.#retrying(body, 'react')).seq);
  }

  /**
   * Marks a room (of which the user is a member) read up to seq, at most
   * its last; resolves with the cursor after it (an older seq changes
   * nothing). Every device of the user gets a 'room' event with the new
   * readSeq and unread counts.
   */
  async markRead(room: string, seq: number): Promise<number> {
    return num((await this.#request({ case: 'markRead', value: { room, seq: BigInt(seq) } }, 'markRead')).seq);
  }

  /**
   * Posts text to the direct room of the user and `to`, which the first
   * message creates (`to` hears of it with a 'room' event), and resolves
   * with the room's name and the post's seq; join the room to follow the
   * conversation. Like post(), it waits while offline and is re-sent with
   * its clientMsgId until the server stored it once.
   */
  async direct(to: string, text: string, opts: { clientMsgId?: string } = {}): Promise<PostResult> {
    const clientMsgId = opts.clientMsgId || newClientMsgId();
    const body: Body = { case: 'direct', value: { to, text, clientMsgId } };
    const tooLong = this.#tooLong('', text, body);
    if (tooLong) throw tooLong;
    const ack = await this.#retrying(body, 'direct');
    return { room: ack.room, clientMsgId, seq: num(ack.seq) };
  }

  /**
   * Creates a room with the user its owner (a CREATED change, and an
   * INVITED one per user invited): public by default, or private (members
   * and invited users only). It does not join it. Rejects with ParleyError
   * ROOM_EXISTS when the name is taken.
   */
  async createRoom(room: string, opts: { kind?: RoomKind; title?: string; topic?: string; invite?: string[] } = {}): Promise<void> {
    await this.#request(
      { case: 'createRoom', value: { room, kind: opts.kind ?? RoomKind.PUBLIC, title: opts.title ?? '', topic: opts.topic ?? '', invite: opts.invite ?? [] } },
      'createRoom',
    );
  }

  /**
   * Acts on a user in a room (ModAction: INVITE, REVOKE, ADD, KICK, BAN,
   * UNBAN, MUTE, UNMUTE, SET_ROLE with role, TRANSFER) and resolves with
   * the seq of the change it made. A moderator acts on members, an owner
   * on anyone, nobody on the owner or on themselves; refusals are
   * ParleyErrors (FORBIDDEN, NOT_MEMBER, BAD_REQUEST...). untilMs ends a
   * BAN or MUTE (0: never).
   */
  async moderate(room: string, user: string, action: ModAction, opts: { role?: Role; reason?: string; untilMs?: number } = {}): Promise<number> {
    const ack = await this.#request(
      { case: 'moderate', value: { room, user, action, role: opts.role ?? 0, reason: opts.reason ?? '', untilMs: BigInt(opts.untilMs ?? 0) } },
      'moderate',
    );
    return num(ack.seq);
  }

  /** Sets a room's title, topic or both (owners and moderators; one left out stays as it is); resolves with the seq of the UPDATED change. */
  async updateRoom(room: string, set: { title?: string; topic?: string }): Promise<number> {
    const ack = await this.#request({ case: 'updateRoom', value: { room, title: set.title, topic: set.topic } }, 'updateRoom');
    return num(ack.seq);
  }

  /** Turns a room's read positions setting on or off (owners and moderators); resolves with the seq of the UPDATED change. */
  async setReadPositions(room: string, on: boolean): Promise<number> {
    const ack = await this.#request({ case: 'updateRoom', value: { room, readPositions: on } }, 'updateRoom');
    return num(ack.seq);
  }

  /** Deletes a room (its owner): everyone is out of it ('roomClosed'), and its name is not used again. */
  async deleteRoom(room: string, reason = ''): Promise<void> {
    await this.#request({ case: 'deleteRoom', value: { room, reason } }, 'deleteRoom');
  }

  /** A page of a room's members, invited and banned users with their standing, by name. Members of the room may ask (of a public room, anyone). */
  members(room: string, opts: PageOptions = {}): Promise<MembersPage> {
    return this.#listing(async () => {
      this.#memberList = null;
      let page: MembersPage = { room, members: [], next: '' };
      await this.#request({ case: 'members', value: { room, after: opts.after ?? '', limit: opts.limit ?? 0 } }, 'members', () => {
        page = this.#memberList ?? page;
      });
      return page;
    });
  }

  /** Says the user is typing in room: throttled, never acknowledged, dropped while offline. */
  typing(room: string): void {
    if (!this.connected || !this.#rooms.get(room)?.ready) return;
    const now = Date.now();
    if (now - (this.#lastTyping.get(room) ?? 0) < (this.#opts.typingIntervalMs ?? 2000)) return;
    if (!this.#takeToken()) return; // a typing notice is not worth a queue slot
    this.#lastTyping.set(room, now);
    this.#send(create(EnvelopeSchema, { body: { case: 'typing', value: { room } } }));
  }

  /** Reads up to limit events (posts and changes) before beforeSeq (0: the newest), ascending, from a room the client is in. */
  history(room: string, opts: { beforeSeq?: number; limit?: number } = {}): Promise<HistoryPage> {
    return this.#listing(async () => {
      this.#page = null;
      let page: HistoryPage = { room, messages: [], changes: [], hasMore: false };
      await this.#request({ case: 'history', value: { room, beforeSeq: BigInt(opts.beforeSeq ?? 0), limit: opts.limit ?? 50 } }, 'history', () => {
        if (this.#page?.room === room) page = this.#page;
      });
      return page;
    });
  }

  /** Who is connected to room (one the client is in), or without a room to any of the client's rooms: never the whole server. The first page (whoPage pages). */
  async who(opts: { room?: string } & PageOptions = {}): Promise<Member[]> {
    return (await this.whoPage(opts)).members;
  }

  /** A page of who is connected to room, or to any of the client's rooms, by name. */
  whoPage(opts: { room?: string } & PageOptions = {}): Promise<WhoPage> {
    const room = opts.room ?? '';
    return this.#listing(async () => {
      this.#snapshot = null;
      let page: WhoPage = { room, members: [], next: '' };
      await this.#request({ case: 'who', value: { room, after: opts.after ?? '', limit: opts.limit ?? 0 } }, 'who', () => {
        if (this.#snapshot?.room === room) page = this.#snapshot;
      });
      return page;
    });
  }

  /** The public rooms and the user's own (or with mine its own only), with their member counts and the user's standing in each: the first page (roomsPage pages). */
  async listRooms(opts: { mine?: boolean } & PageOptions = {}): Promise<RoomInfo[]> {
    return (await this.roomsPage(opts)).rooms;
  }

  /** A page of rooms by name: the public ones and the user's own (private and direct rooms are listed to their members only), or with mine its own only. */
  roomsPage(opts: { mine?: boolean } & PageOptions = {}): Promise<RoomsPage> {
    return this.#listing(async () => {
      this.#roomList = null;
      let page: RoomsPage = { rooms: [], next: '' };
      await this.#request({ case: 'rooms', value: { after: opts.after ?? '', limit: opts.limit ?? 0, mine: opts.mine ?? false } }, 'rooms', () => {
        page = this.#roomList ?? page;
      });
      return page;
    });
  }

  /** Runs one listing at a time: their data names no request. */
  #listing<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#lists.then(fn, fn);
    this.#lists = run.catch(() => {});
    return run;
  }

  /**
   * Sends an idempotent request (one carrying a clientMsgId) until it is
   * answered: again on the next connection when one drops, again after a
   * pause when the server is busy or the answer late; a refusal ends it.
   */
  async #retrying(body: Body, what: string): Promise<Ack> {
    for (let tries = 0; ; tries++) {
      await this.#untilOnline();
      try {
        return await this.#request(body, what);
      } catch (err) {
        if (err instanceof ConnectionLostError) continue;
        if (err instanceof ParleyError && !err.retryable) throw err;
        if (!(err instanceof ParleyError) && !(err instanceof TimeoutError)) throw err;
        await new Promise((r) => setTimeout(r, fullJitter(tries, { baseMs: 1000, capMs: 10_000 })));
      }
    }
  }

  /** Resolves once the client is online; rejects when it stops. */
  #untilOnline(): Promise<void> {
    if (this.connected) return Promise.resolve();
    if (this.#stopped) return Promise.reject(new ClosedError(CloseCode.NORMAL, 'closed'));
    return new Promise((resolve, reject) => this.#onlineWaiters.push({ resolve, reject }));
  }

  /** An application ping; resolves with the round trip in ms. */
  async ping(): Promise<number> {
    const t0 = Date.now();
    await this.#request({ case: 'ping', value: {} }, 'ping');
    return Date.now() - t0;
  }

  /** Replaces the connection's token before it expires (same user). A token function does this by itself. */
  async refresh(token: string): Promise<void> {
    await this.#request({ case: 'refresh', value: { token } }, 'refresh');
    this.#token = token;
  }

  /**
   * Sends one request and resolves with its Ack, or rejects with
   * ParleyError, TimeoutError or ConnectionLostError. For requests this
   * class has no method for.
   */
  request(body: Body): Promise<Ack> {
    return this.#request(body, body?.case ?? 'request');
  }

  // ------------------------------------------------------------------ sending

  #request(body: Body, what: string, onAnswer?: (env: Envelope) => void, queued = true): Promise<Ack> {
    if (!isOpen(this.#socket?.ws ?? null) || (queued && !this.connected)) return Promise.reject(new ConnectionLostError(`${what}: not connected`));
    const id = String(++this.#nextId);
    const env = create(EnvelopeSchema, { id, body });
    const timeoutMs = this.#opts.requestTimeoutMs ?? 10_000;
    return new Promise<Ack>((resolve, reject) => {
      const p: Pending = {
        what,
        onAnswer,
        resolve: (reply) => {
          if (reply.body.case === 'error') {
            const e = reply.body.value;
            reject(new ParleyError(e.code, e.text, { room: e.room, requestId: e.requestId }));
          } else if (reply.body.case === 'ack') resolve(reply.body.value);
        },
        reject,
      };
      this.#pending.set(id, p);
      // The clock starts when the frame leaves, not while it waits for the rate limit.
      const sent = () => {
        p.timer = setTimeout(() => {
          if (this.#pending.get(id) !== p) return;
          this.#pending.delete(id);
          reject(new TimeoutError(what, timeoutMs));
        }, timeoutMs);
      };
      if (queued) {
        this.#queue.push({ gen: this.#gen, env, sent });
        this.#pump();
      } else {
        this.#send(env);
        sent();
      }
    });
  }

  #send(env: Envelope): void {
    const ws = this.#socket?.ws;
    if (!ws || !isOpen(ws)) return;
    ws.send(this.codec.encode(env));
  }

  #takeToken(): boolean {
    const w = this.#welcome;
    if (!w || w.rate <= 0) return true;
    // A margin under the server's own bucket: our clock and its differ.
    const rate = w.rate * 0.9;
    const cap = Math.max(1, Math.floor(w.burst * 0.8));
    const now = Date.now();
    this.#tokens = Math.min(cap, this.#tokens + ((now - this.#tokensAt) / 1000) * rate);
    this.#tokensAt = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  #pump(): void {
    clearTimeout(this.#pumpTimer);
    while (this.#queue.length > 0) {
      const item = this.#queue[0]!;
      if (item.gen !== this.#gen) {
        this.#queue.shift(); // its pending request was rejected when that socket closed
        continue;
      }
      if (!this.#takeToken()) {
        const rate = (this.#welcome?.rate ?? 1) * 0.9;
        this.#pumpTimer = setTimeout(() => this.#pump(), Math.ceil(1000 / rate));
        return;
      }
      this.#queue.shift();
      this.#send(item.env);
      item.sent?.();
    }
  }

  // ------------------------------------------------------------------ connection

  #setState(state: ConnectionState, extra: { retryInMs?: number; code?: number; reason?: string } = {}): void {
    this.#state = state;
    this.emit('state', { state, attempt: this.#attempt, ...extra });
  }

  async #tokenNow(): Promise<string> {
    const t = this.#opts.token;
    if (typeof t === 'function') return await t();
    return t ?? '';
  }

  async #connect(): Promise<void> {
    const gen = ++this.#gen;
    this.#setState('connecting');
    let token: string;
    let opened: OpenedSocket;
    try {
      token = await this.#tokenNow();
      if (gen !== this.#gen) return;
      const placement = this.#opts.tokenIn ?? 'hello';
      let url = this.url;
      const headers: Record<string, string> = {};
      if (token && placement === 'query') {
        const u = new URL(url);
        u.searchParams.set('token', token);
        url = u.toString();
      } else if (token && placement === 'header') {
        headers.Authorization = `Bearer ${token}`;
      }
      opened = await this.#open(url, [this.codec.subprotocol], headers);
    } catch (err) {
      if (gen !== this.#gen) return;
      // No token (the function failed) or no socket (no WebSocket at all,
      // a malformed URL): a token function may work next time, the rest not.
      if (typeof this.#opts.token === 'function' && !(err instanceof TypeError)) {
        this.#closed(gen, CloseCode.ABNORMAL, `getting a token failed: ${String(err)}`);
        return;
      }
      this.#fatal(new ClosedError(CloseCode.ABNORMAL, String(err)), CloseCode.ABNORMAL, String(err));
      return;
    }
    if (gen !== this.#gen) {
      opened.ws.close(1000);
      return;
    }
    this.#token = token;
    this.#socket = opened;
    const ws = opened.ws;
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => void this.#opened(gen);
    ws.onmessage = (e) => {
      if (gen === this.#gen) this.#frame(gen, e.data);
    };
    ws.onclose = (e) => this.#closed(gen, e.code, e.reason);
    ws.onerror = () => {}; // carries no detail; onclose follows
  }

  async #opened(gen: number): Promise<void> {
    if (gen !== this.#gen) return;
    const ws = this.#socket!.ws;
    if (ws.protocol !== this.codec.subprotocol) {
      // A server that does not speak our codec would answer in another
      // protocol; do not guess.
      this.#drop(gen, DROP_PROTOCOL, `server chose subprotocol "${ws.protocol}"`);
      return;
    }
    const placement = this.#opts.tokenIn ?? 'hello';
    const hello = {
      name: this.#opts.name ?? '',
      watchOnline: this.#opts.watchOnline ?? false,
      token: placement === 'hello' ? this.#token : '',
    };
    try {
      await this.#request({ case: 'hello', value: hello }, 'hello', undefined, false);
    } catch (err) {
      if (gen !== this.#gen) return;
      if (err instanceof ParleyError && !err.retryable) {
        // A name or token the server refused will not get better by
        // retrying; an expired token might, from a token function.
        if (err.code === ErrorCode.TOKEN_EXPIRED && typeof this.#opts.token === 'function') {
          this.#drop(gen, CloseCode.TOKEN_EXPIRED, err.message);
          return;
        }
        this.#fatal(err, CloseCode.NORMAL, err.message);
        return;
      }
      this.#drop(gen, DROP_PROTOCOL, err instanceof Error ? err.message : String(err));
      return;
    }
    if (gen !== this.#gen) return;
    this.#connectedAt = Date.now();
    this.#tokens = Math.max(1, Math.floor((this.#welcome?.burst ?? 1) * 0.8)) - 1;
    this.#tokensAt = Date.now();
    this.#setState('online');
    this.#startPings(gen);
    this.#armRefresh(gen, this.#welcome?.tokenExpiresMs ?? 0);
    const first = this.#firstOnline;
    this.#firstOnline = null;
    first?.resolve();
    const waiting = this.#onlineWaiters;
    this.#onlineWaiters = [];
    for (const w of waiting) w.resolve();
    // Re-join every room: resumed ones pass since = the last seq seen, and
    // the server replays exactly what we missed before the ack. The request
    // queue spaces them out within the server's rate.
    for (const room of this.#rooms.keys()) this.#sendJoin(room);
  }

  /** Abandons the current socket now: a dead connection may take minutes to report its close. */
  #drop(gen: number, code: number, reason: string): void {
    if (gen !== this.#gen) return;
    const ws = this.#socket?.ws;
    this.#closed(gen, code, reason);
    try {
      ws?.close(1000, reason.slice(0, 120));
    } catch {
      /* already closing */
    }
  }

  #teardown(): void {
    this.#gen++; // late frames and callbacks of that socket are now ignored
    this.#socket = null;
    clearInterval(this.#pingTimer);
    clearTimeout(this.#refreshTimer);
    clearTimeout(this.#pumpTimer);
    this.#queue = [];
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer);
      p.reject(new ConnectionLostError(`${p.what}: connection lost`));
    }
    this.#pending.clear();
    for (const r of this.#rooms.values()) r.ready = false;
    for (const p of this.#outbox.values()) p.sentOn = -1; // re-sent after the next join
  }

  #closed(gen: number, code: number, reason: string): void {
    if (gen !== this.#gen) return; // an older socket, already handled
    const refusal = this.#socket?.refusal() ?? null;
    this.#teardown();
    if (this.#stopped) return;
    if (refusal && (refusal.status === 401 || refusal.status === 403)) {
      // A bad token (401) or a refused Origin (403): the same handshake
      // would be refused again.
      this.#fatal(new HandshakeError(refusal.status, 0), code, `handshake refused with HTTP ${refusal.status}`);
      return;
    }
    const canRenew = typeof this.#opts.token === 'function';
    if (FINAL_CLOSES.has(code) || (code === CloseCode.TOKEN_EXPIRED && !canRenew) || !this.#backoff) {
      this.#fatal(new ClosedError(code, reason), code, reason);
      return;
    }
    if (this.#connectedAt && Date.now() - this.#connectedAt >= this.#backoff.stableAfterMs) this.#attempt = 0;
    this.#connectedAt = 0;
    const delay = Math.max(fullJitter(this.#attempt, this.#backoff), refusal?.retryAfterMs ?? 0);
    this.#attempt++;
    this.#retryTimer = setTimeout(() => void this.#connect(), delay);
    this.emit('disconnected', { code, reason, willReconnect: true, retryInMs: delay });
    this.#setState('waiting', { retryInMs: delay, code, reason });
  }

  #fatal(error: ParleyError | HandshakeError | ClosedError, code: number, reason: string): void {
    const wasStopped = this.#stopped;
    this.#stop(error, code, reason);
    if (!wasStopped) this.emit('fatal', { error });
  }

  #stop(error: Error, code: number, reason: string): void {
    if (this.#stopped && this.#state === 'stopped') return;
    this.#stopped = true;
    clearTimeout(this.#retryTimer);
    const ws = this.#socket?.ws;
    const hadSocket = !!ws;
    this.#teardown();
    try {
      ws?.close(1000, 'closed by the client');
    } catch {
      /* already closing */
    }
    for (const r of this.#rooms.values()) {
      for (const w of r.waiters) w.reject(error);
      r.waiters = [];
    }
    for (const p of this.#outbox.values()) p.reject(error);
    this.#outbox.clear();
    const first = this.#firstOnline;
    this.#firstOnline = null;
    first?.reject(error);
    const waiting = this.#onlineWaiters;
    this.#onlineWaiters = [];
    for (const w of waiting) w.reject(error);
    if (hadSocket || this.#state !== 'idle') this.emit('disconnected', { code, reason, willReconnect: false, retryInMs: 0 });
    this.#setState('stopped', { code, reason });
  }

  #startPings(gen: number): void {
    const idle = this.#welcome?.idleTimeoutMs ?? 0;
    const every = Math.min(this.#opts.pingIntervalMs ?? 30_000, idle > 0 ? idle / 3 : Infinity);
    clearInterval(this.#pingTimer);
    this.#pingTimer = setInterval(() => {
      this.#request({ case: 'ping', value: {} }, 'ping', undefined, false).catch((err: unknown) => {
        if (err instanceof TimeoutError) this.#drop(gen, DROP_NO_PONG, 'no answer to ping');
      });
    }, every);
  }

  /**
   * With a token function, fetches a new token and sends refresh well
   * before the current one expires (the server closes with 4003 then).
   */
  #armRefresh(gen: number, expiresMs: number): void {
    clearTimeout(this.#refreshTimer);
    if (!expiresMs || typeof this.#opts.token !== 'function') return;
    const left = expiresMs - Date.now();
    const delay = Math.max(0, Math.min(left - 5_000, left * 0.8));
    this.#refreshTimer = setTimeout(async () => {
      if (gen !== this.#gen) return;
      try {
        const tok = await this.#tokenNow();
        if (gen !== this.#gen) return;
        await this.refresh(tok);
        // The server sends no new Welcome; the new expiry is in the token.
        this.#armRefresh(gen, jwtExpiryMs(tok));
      } catch (err) {
        // If this keeps failing the server closes with 4003 and the
        // reconnect asks the token function again.
        if (!(err instanceof ConnectionLostError) && gen === this.#gen) {
          const error = err instanceof ParleyError ? err : new ParleyError(ErrorCode.UNSPECIFIED, `refreshing the token failed: ${String(err)}`, { local: true });
          this.emit('serverError', { error });
        }
      }
    }, delay);
  }

  // ------------------------------------------------------------------ rooms and posts

  #sendJoin(room: string): void {
    const r = this.#rooms.get(room);
    if (!r) return;
    const gen = this.#gen;
    r.ready = false;
    const resumed = r.resume;
    let rewind = false;
    // The ack is applied the moment it arrives, not when the promise
    // settles: frames after it in the same batch (someone joining) apply to
    // the member list it carries.
    const onAnswer = (env: Envelope) => {
      if (env.body.case !== 'ack' || gen !== this.#gen || this.#rooms.get(room) !== r) return;
      const ack = env.body.value;
      const seq = num(ack.seq);
      if (resumed && seq < r.lastSeq) {
        rewind = true; // handled once the request settled
        return;
      }
      r.lastSeq = Math.max(r.lastSeq, seq);
      r.resume = true;
      r.ready = true;
      const joined: Joined = { room, seq, oldestSeq: num(ack.oldestSeq), members: toMembers(ack.members), resumed };
      r.lastJoin = joined;
      this.emit('joined', joined);
      const waiters = r.waiters;
      r.waiters = [];
      for (const w of waiters) w.resolve(joined);
    };
    const join = resumed ? { room, since: BigInt(r.lastSeq) } : { room };
    this.#request({ case: 'join', value: join }, 'join', onAnswer).then(
      () => {
        if (gen !== this.#gen || this.#rooms.get(room) !== r) return;
        if (rewind) {
          // The room's latest seq is behind what we saw: it lost its
          // history (a server restarted on an in-memory store) and its seqs
          // start over. (This server says so with a reset before the
          // replay; an older one did not.) Forget ours and join afresh on
          // this connection: a leave would end the user's membership.
          r.lastSeq = 0;
          r.resume = false;
          this.emit('rewound', { room });
          this.#sendJoin(room);
          return;
        }
        // Re-send what the server never acknowledged, in order, with the
        // same clientMsgId: one it stored before the drop is acked with its
        // original seq and not delivered twice.
        for (const p of this.#outbox.values()) if (p.room === room && p.sentOn !== gen) this.#sendPost(p);
      },
      (err: unknown) => {
        if (gen !== this.#gen || this.#rooms.get(room) !== r) return;
        if (err instanceof ParleyError && !err.retryable) {
          this.#forget(room, err, true);
          this.emit('joinFailed', { room, error: err });
          return;
        }
        // Busy, rate limited or timed out: again shortly, on this connection.
        if (!(err instanceof ConnectionLostError)) setTimeout(() => gen === this.#gen && this.#rooms.get(room) === r && this.#sendJoin(room), 500 + Math.random() * 1500);
      },
    );
  }

  #sendPost(p: OutboxEntry): void {
    const gen = this.#gen;
    p.sentOn = gen;
    this.#request({ case: 'post', value: { room: p.room, text: p.text, clientMsgId: p.clientMsgId } }, 'post').then(
      (ack) => this.#postStored(p, num(ack.seq)),
      (err: unknown) => {
        if (this.#outbox.get(p.clientMsgId) !== p) return;
        if (err instanceof ConnectionLostError) return; // re-sent after the next join
        if (err instanceof ParleyError && !err.retryable) {
          this.#failPost(p, err, true);
          return;
        }
        // Busy server, our rate, or no answer in time: again later, same id.
        p.sentOn = -1;
        const delay = fullJitter(p.tries++, { baseMs: 1000, capMs: 10_000 });
        setTimeout(() => {
          if (gen === this.#gen && this.#outbox.get(p.clientMsgId) === p && p.sentOn !== gen) this.#sendPost(p);
        }, delay);
      },
    );
  }

  #postStored(p: OutboxEntry, seq: number): void {
    if (this.#outbox.get(p.clientMsgId) !== p) return; // settled already (its event came first)
    this.#outbox.delete(p.clientMsgId);
    const result = { room: p.room, clientMsgId: p.clientMsgId, seq };
    p.resolve(result);
    this.emit('postAcked', result);
  }

  #failPost(p: OutboxEntry, error: ParleyError, emit: boolean): void {
    this.#outbox.delete(p.clientMsgId);
    p.reject(error);
    if (emit) this.emit('postFailed', { room: p.room, clientMsgId: p.clientMsgId, error });
  }

  // ------------------------------------------------------------------ incoming frames

  #frame(gen: number, data: unknown): void {
    let env: Envelope;
    try {
      env = this.codec.decode(data);
    } catch (err) {
      this.#drop(gen, DROP_PROTOCOL, `undecodable frame: ${String(err)}`);
      return;
    }
    this.#handle(gen, env, 0);
  }

  #handle(gen: number, env: Envelope, depth: number): void {
    if (gen !== this.#gen) return; // a handler earlier in this batch dropped the connection
    const b = env.body;
    if (b.case === 'batch') {
      // Queued frames coalesced into one: each item in order, as if alone.
      if (depth < 2) for (const item of b.value.items) this.#handle(gen, item, depth + 1);
      return;
    }
    this.emit('envelope', env);
    switch (b.case) {
      case 'ack':
        this.#answer(b.value.requestId, env);
        break;
      case 'error': {
        if (!this.#answer(b.value.requestId, env)) {
          const e = b.value;
          this.emit('serverError', { error: new ParleyError(e.code, e.text, { room: e.room, requestId: e.requestId }) });
        }
        break;
      }
      case 'event':
        this.#roomEvent(b.value);
        break;
      case 'room': {
        const info = toRoomInfo(b.value);
        if (belongs(info)) this.#myRooms.set(info.name, info);
        else this.#myRooms.delete(info.name);
        this.emit('room', info);
        break;
      }
      case 'presence': {
        const p = b.value;
        // A snapshot is the full list (who()'s answer); a delta always
        // names someone (an empty snapshot, nobody there, has neither).
        const snapshot = p.joined.length === 0 && p.left.length === 0;
        const ev: Presence = { room: p.room, snapshot, members: toMembers(p.members), joined: [...p.joined], left: [...p.left] };
        if (snapshot) this.#snapshot = { room: p.room, members: ev.members, next: p.next };
        this.emit('presence', ev);
        break;
      }
      case 'typing':
        this.emit('typing', { room: b.value.room, user: b.value.user });
        break;
      case 'readPositions': {
        const rp = b.value;
        this.emit('readPositions', { room: rp.room, snapshot: rp.snapshot, positions: rp.positions.map((p) => ({ user: p.user, seq: num(p.seq) })) });
        break;
      }
      case 'historyPage': {
        const h = b.value;
        this.#page = {
          room: h.room,
          messages: h.events.filter((e) => !e.change).map(toMessage),
          changes: h.events.filter((e) => e.change).map(toChange),
          hasMore: h.hasMore,
        };
        break;
      }
      case 'welcome':
        this.#welcome = toWelcome(b.value);
        // Here, in order with the 'room' events that follow it.
        this.#myRooms = new Map(this.#welcome.rooms.map((r) => [r.name, r]));
        this.emit('welcome', this.#welcome);
        break;
      case 'roomList':
        this.#roomList = { rooms: b.value.rooms.map(toRoomInfo), next: b.value.next };
        break;
      case 'memberList':
        this.#memberList = { room: b.value.room, members: b.value.members.map(toMemberInfo), next: b.value.next };
        break;
      case 'notice': {
        const n = b.value;
        if (n.room) {
          // Kicked, banned, left on another connection, the room deleted or
          // closed by an operator: we are out of it, and re-joining on the
          // next reconnect would undo that. A room we left ourselves is
          // gone already, and its notice says nothing new.
          if (!this.#rooms.has(n.room)) break;
          this.#forget(n.room, new ParleyError(ErrorCode.NOT_JOINED, n.text || `out of ${n.room}`, { room: n.room, local: true }), true);
          this.emit('roomClosed', { room: n.room, text: n.text });
        }
        this.emit('notice', { text: n.text, room: n.room });
        break;
      }
      case 'resetEvent': {
        const rs = b.value;
        const r = this.#rooms.get(rs.room);
        const since = num(rs.since);
        const oldest = num(rs.oldestSeq);
        // The replay that follows starts at oldestSeq.
        if (r) r.lastSeq = Math.max(0, oldest - 1);
        if (since >= oldest && r) {
          // We had seen more than the server has: its history was lost and
          // its seqs start over.
          r.resume = false;
          this.emit('rewound', { room: rs.room });
        } else {
          // Retention deleted part of the gap: said, never skipped silently.
          this.emit('reset', { room: rs.room, since, oldestSeq: oldest });
        }
        break;
      }
      default:
        // A newer server's frame type: the raw 'envelope' event had it.
        break;
    }
  }

  /** Settles the request named id; false when nobody waits for it. */
  #answer(id: string, env: Envelope): boolean {
    const p = id ? this.#pending.get(id) : undefined;
    if (!p) return false;
    this.#pending.delete(id);
    clearTimeout(p.timer);
    p.onAnswer?.(env);
    p.resolve(env);
    return true;
  }

  #roomEvent(pe: RoomEvent): void {
    const r = this.#rooms.get(pe.room);
    if (!r) return; // a late delivery for a room we left
    const seq = num(pe.seq);
    // The server delivers each seq once and in order, and a resume replays
    // only seq > since; still, never pass the same seq on twice. Changes
    // take seqs like posts: the resume point counts both.
    if (seq <= r.lastSeq) return;
    r.lastSeq = seq;
    if (pe.change) {
      this.emit('change', toChange(pe));
      return;
    }
    const ev = toMessage(pe);
    // Our own post, stored: settle it now, so a reconnect before its ack
    // does not send it again.
    const mine = ev.clientMsgId ? this.#outbox.get(ev.clientMsgId) : undefined;
    if (mine && mine.room === ev.room && ev.sender === this.#welcome?.name) this.#postStored(mine, ev.seq);
    this.emit('message', ev);
  }
}
