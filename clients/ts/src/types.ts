import type { ChangeKind, Envelope, Role, RoomKind, SenderKind } from '../gen/parley_pb.js';
import type { ClosedError, HandshakeError, ParleyError } from './errors.js';

// The client hands out plain objects with numbers where the wire has 64-bit
// integers (seq, timeMs): exact up to 2^53, far beyond any room's message
// count, and what a UI can sort, compare and serialise. The generated types
// (bigint) stay available for the raw 'envelope' event.

/**
 * A post in a room, as stored and delivered. A room's log holds posts and
 * changes (RoomChange) under one sequence: each seq is one or the other.
 */
export interface ChatMessage {
  room: string;
  /** Increases by one per event (post or change) in the room. */
  seq: number;
  /** Server time when it was accepted, Unix ms. */
  timeMs: number;
  sender: string;
  /** A user's post, a bot's, or the system's (an application's announcement). */
  senderKind: SenderKind;
  text: string;
  clientMsgId: string;
  /** The seq of the post this one answers (0: none). */
  replyTo: number;
  /** Users the post mentions, by name. */
  mentions: string[];
  /**
   * In history, scrollback and a join's replay, the post as it stands:
   * when it was last edited (Unix ms; 0: never; text is the edited text),
   * whether it was deleted (a tombstone: no text), and its reactions.
   * Live, a post is as posted: its EDITED, MESSAGE_DELETED and REACTED
   * changes follow.
   */
  editedMs: number;
  deleted: boolean;
  reactions: Reaction[];
}

/** One emoji's reactions to a post; mine: the reader is among them. */
export interface Reaction {
  emoji: string;
  count: number;
  mine: boolean;
}

/**
 * A change to a room, from its log: who (sender) did what (kind) to whom
 * (user). It has a seq like a post, and no text. The generated enums
 * (ChangeKind, Role, RoomKind) name the numbers.
 */
export interface RoomChange {
  room: string;
  seq: number;
  timeMs: number;
  /** Who did it: a user, a bot, or "system". */
  sender: string;
  senderKind: SenderKind;
  kind: ChangeKind;
  /** To whom; for JOINED and LEFT the sender itself; '' when the change is to the room (UPDATED, DELETED). */
  user: string;
  /** The user's role after the change (JOINED, ADDED, ROLE_CHANGED; OWNER_CHANGED: the new owner's). */
  role: Role;
  /** BANNED, MUTED: when it ends (Unix ms; 0: never). */
  untilMs: number;
  reason: string;
  /** CREATED, UPDATED: the room's kind, title, topic and read positions setting after the change. */
  roomKind: RoomKind;
  title: string;
  topic: string;
  readPositions: boolean;
  /** EDITED, MESSAGE_DELETED, REACTED, UNREACTED: the post concerned. */
  targetSeq: number;
  /** EDITED: the new text. */
  text: string;
  /** REACTED, UNREACTED: the emoji, and how many reactions with it the post has now. */
  emoji: string;
  count: number;
}

export interface Member {
  name: string;
  /** That user's connections in the room (or online). */
  devices: number;
}

export type ConnectionState = 'idle' | 'connecting' | 'online' | 'waiting' | 'stopped';

export interface StateChange {
  state: ConnectionState;
  /** Failed attempts since the last healthy connection. */
  attempt: number;
  /** For 'waiting': how long until the next attempt. */
  retryInMs?: number;
  /** For 'waiting' and 'stopped': the close code and reason that ended the connection. */
  code?: number;
  reason?: string;
}

/** The server's Welcome: who we are and the limits to respect. */
export interface Welcome {
  sessionId: string;
  name: string;
  maxMessageBytes: number;
  maxRooms: number;
  idleTimeoutMs: number;
  maxTextChars: number;
  rate: number;
  burst: number;
  /** When the token expires (Unix ms; 0: never). */
  tokenExpiresMs: number;
  /** The user's rooms (member of, invited to), with where each stands (lastSeq). At most 500; moreRooms says there are more (roomsPage({ mine: true }) pages through all). */
  rooms: RoomInfo[];
  moreRooms: boolean;
}

export interface Joined {
  room: string;
  /** The room's latest seq: every message up to it has been delivered (or a 'reset' said why not). */
  seq: number;
  /** The oldest seq the server still has; history() reads down to it. */
  oldestSeq: number;
  members: Member[];
  /** True when this join resumed after a reconnect (it passed since). */
  resumed: boolean;
}

export interface Presence {
  /** '' for who() without a room: the users connected to any of the client's rooms. */
  room: string;
  /** True when members is the full list; false for a delta (joined/left). */
  snapshot: boolean;
  members: Member[];
  joined: string[];
  left: string[];
}

export interface Typing {
  room: string;
  user: string;
}

/**
 * Where members of a room that shows read positions have read to: with
 * snapshot, the room's positions as they stand (after each join, and when
 * the setting is turned on); otherwise the cursors that moved in the last
 * half second, each member's last one.
 */
export interface ReadPositions {
  room: string;
  snapshot: boolean;
  positions: { user: string; seq: number }[];
}

/** Part of a resume gap will not be replayed (retention deleted it, or it was longer than the server replays at once): replay goes on from oldestSeq. */
export interface Reset {
  room: string;
  since: number;
  oldestSeq: number;
}

export interface Notice {
  text: string;
  /** Set when an operator closed that room: the client is no longer in it. */
  room: string;
}

export interface Disconnected {
  /** The WebSocket close code: parley.proto's CloseCode for the server's (1013: we read too slowly), 1006 for a dropped connection. */
  code: number;
  reason: string;
  willReconnect: boolean;
  /** When willReconnect: the wait before the next attempt. */
  retryInMs: number;
}

export interface HistoryPage {
  room: string;
  /** The page's posts, ascending by seq. */
  messages: ChatMessage[];
  /** The page's changes, ascending by seq: with messages, every event of the page. */
  changes: RoomChange[];
  /** True when older events exist before the page's first. */
  hasMore: boolean;
}

/** A room, and the user's standing in it. */
export interface RoomInfo {
  name: string;
  /** Members of the room (users who belong to it, connected or not). */
  members: number;
  kind: RoomKind;
  title: string;
  topic: string;
  /** The room's latest seq. */
  lastSeq: number;
  /** The user's role (NONE: not a member). */
  role: Role;
  /** The user may join this private room. */
  invited: boolean;
  /** Banned or muted until (Unix ms; 0: not). */
  bannedUntilMs: number;
  mutedUntilMs: number;
  createdBy: string;
  createdMs: number;
  /** For a direct room: the other user. */
  directWith: string;
  deleted: boolean;
  /**
   * A member's read cursor (markRead(); 0: never marked), how many events
   * come after it (posts and changes alike: lastSeq - readSeq), and how
   * many posts after it mention the user. The server's, shared by every
   * device of the user: a 'room' event brings each move.
   */
  readSeq: number;
  unread: number;
  unreadMentions: number;
  /** The room shows its members each other's read positions ('readPositions' events; setReadPositions()). */
  readPositions: boolean;
}

/** One user's standing in a room (members()). */
export interface MemberInfo {
  user: string;
  role: Role;
  invited: boolean;
  invitedBy: string;
  sinceMs: number;
  bannedUntilMs: number;
  mutedUntilMs: number;
}

/** A page of a listing; next is where the following page starts ('' at the end). */
export interface RoomsPage {
  rooms: RoomInfo[];
  next: string;
}

export interface MembersPage {
  room: string;
  members: MemberInfo[];
  next: string;
}

export interface WhoPage {
  /** '' for everyone connected to any of the client's rooms. */
  room: string;
  members: Member[];
  next: string;
}

/** Where a page starts and how long it is (0: 100; at most 500). */
export interface PageOptions {
  after?: string;
  limit?: number;
}

export interface PostResult {
  room: string;
  clientMsgId: string;
  seq: number;
}

/** Every event ParleyClient emits, with its payload. */
export interface ParleyEvents {
  /** The connection's state changed. */
  state: StateChange;
  /** Logged in (on every connection). */
  welcome: Welcome;
  /** A room was joined on the current connection (first time or resumed). */
  joined: Joined;
  /** A post: each seq once, as a message or a change, ascending within a room, across reconnects. */
  message: ChatMessage;
  /** A change to a room (a join, a kick, a new topic...), in the same sequence as messages. */
  change: RoomChange;
  /** The user's standing in a room changed (invited, added, kicked, banned, a new role, a direct conversation started), on every connection of the user, joined or not; myRooms follows it. */
  room: RoomInfo;
  presence: Presence;
  typing: Typing;
  /** Members' read cursors, in a room that shows read positions (RoomInfo.readPositions): a few frames however fast they read. */
  readPositions: ReadPositions;
  reset: Reset;
  /** The room lost its history on the server (its seqs start over): drop what you show of it; its recent messages follow. */
  rewound: { room: string };
  /** The client is out of a room it was in, and will not re-join it: kicked, banned, left on another connection, the room deleted or closed by an operator (text says which). */
  roomClosed: { room: string; text: string };
  /** The server refused a join for good (a re-join after a reconnect too: banned meanwhile, say); the room was dropped. */
  joinFailed: { room: string; error: ParleyError };
  /** From the server: an operator's (room ''), or why the client is out of a room (with roomClosed). */
  notice: Notice;
  postAcked: PostResult;
  postFailed: { room: string; clientMsgId: string; error: ParleyError };
  /** The connection ended; see willReconnect. */
  disconnected: Disconnected;
  /** An Error frame no request was waiting for (a RATE_LIMITED, say). */
  serverError: { error: ParleyError };
  /** The client stopped for good: login refused, kicked, token expired with no way to get another. */
  fatal: { error: ParleyError | HandshakeError | ClosedError };
  /** Every envelope from the server (batch items one by one), before the client handles it. */
  envelope: Envelope;
}
