// End-to-end tests of @parley/client against real Parley servers started
// here. Nothing waits on a clock: every wait polls a condition against a
// generous deadline.
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import {
  ChangeKind,
  type ChatMessage,
  ClosedError,
  CloseCode,
  type Disconnected,
  ErrorCode,
  HandshakeError,
  ParleyClient,
  type ParleyClientOptions,
  ParleyError,
  type ReadPositions,
  type RoomChange,
  type RoomInfo,
  type Codec,
  type SocketFactory,
  type WebSocketLike,
  jsonCodec,
  ModAction,
  newClientMsgId,
  pb,
  protoCodec,
  Role,
  RoomKind,
  SenderKind,
} from '../src/index.js';
import { Parley, SECRET, token, waitFor } from './server.js';

const clients: ParleyClient[] = [];
after(() => {
  for (const c of clients) c.close();
});

function client(opts: ParleyClientOptions): ParleyClient {
  const c = new ParleyClient(opts);
  clients.push(c);
  return c;
}

/** Every event of a room's log a client was handed: posts (get) and changes, by room, and their seqs in the order they came. */
class Inbox {
  readonly #posts = new Map<string, ChatMessage[]>();
  readonly #changes = new Map<string, RoomChange[]>();
  readonly #seqs = new Map<string, number[]>();
  constructor(c: ParleyClient) {
    const add = <T>(m: Map<string, T[]>, room: string, v: T) => {
      if (!m.has(room)) m.set(room, []);
      m.get(room)!.push(v);
    };
    c.on('message', (ev) => {
      add(this.#posts, ev.room, ev);
      add(this.#seqs, ev.room, ev.seq);
    });
    c.on('change', (ev) => {
      add(this.#changes, ev.room, ev);
      add(this.#seqs, ev.room, ev.seq);
    });
  }
  /** The room's posts. */
  get(room: string): ChatMessage[] | undefined {
    return this.#posts.get(room);
  }
  /** The room's changes, as "sender KIND user". */
  changes(room: string): string[] {
    return (this.#changes.get(room) ?? []).map((c) => `${c.sender} ${ChangeKind[c.kind]} ${c.user}`);
  }
  change(room: string, seq: number): RoomChange | undefined {
    return this.#changes.get(room)?.find((c) => c.seq === seq);
  }
  seqs(room: string): number[] {
    return this.#seqs.get(room) ?? [];
  }
}

function inbox(c: ParleyClient): Inbox {
  return new Inbox(c);
}

/** Fails unless the room's events, posts and changes together, have seqs 1..n, each once, ascending (a change takes a seq like a post). */
function assertGapless(box: Inbox, room: string): void {
  const seqs = box.seqs(room);
  assert.deepEqual(
    seqs,
    Array.from({ length: seqs.length }, (_, i) => i + 1),
    'every seq once, in order, no hole',
  );
}

for (const codec of ['proto', 'json'] as const) {
  describe(`chat (${codec})`, () => {
    let srv: Parley;
    before(async () => {
      srv = await Parley.start();
    });
    after(() => srv?.dispose());

    test('two users talk: posts, presence, typing, history, who, rooms', async () => {
      const ann = client({ url: srv.url, name: 'ann', codec });
      // bob speaks the other codec: both must see the same thing.
      const bob = client({ url: srv.url, name: 'bob', codec: codec === 'proto' ? 'json' : 'proto' });
      const annIn = inbox(ann);
      const bobIn = inbox(bob);
      const typing: string[] = [];
      ann.on('typing', (t) => typing.push(`${t.room}:${t.user}`));
      const presence: string[] = [];
      ann.on('presence', (p) => p.room === 'general' && presence.push(...p.joined.map((u) => `+${u}`), ...p.left.map((u) => `-${u}`)));
      const acked: number[] = [];
      ann.on('postAcked', (r) => acked.push(r.seq));

      await ann.connect();
      assert.equal(ann.welcome?.name, 'ann');
      assert.ok(ann.welcome!.maxMessageBytes > 0);
      const joined = await ann.join('general');
      assert.deepEqual(joined.members.map((m) => m.name), ['ann']);
      assert.equal(joined.resumed, false);

      await bob.connect();
      const bobJoined = await bob.join('general');
      // The joins are in the room's log (the first one created the room):
      // the posts' seqs follow the last join's.
      assert.ok(bobJoined.seq > joined.seq);
      await waitFor('ann to see bob join', () => presence.includes('+bob'));

      const r1 = await ann.post('general', 'hello bob');
      assert.equal(r1.seq, bobJoined.seq + 1);
      const r2 = await bob.post('general', 'hi ann — ünïcode ✓ "quotes" \\ <b>');
      assert.equal(r2.seq, r1.seq + 1);
      await waitFor('both messages on both sides', () => annIn.get('general')?.length === 2 && bobIn.get('general')?.length === 2);
      assert.deepEqual(annIn.get('general'), bobIn.get('general'));
      const m = annIn.get('general')![1]!;
      assert.equal(m.sender, 'bob');
      assert.equal(m.text, 'hi ann — ünïcode ✓ "quotes" \\ <b>');
      assert.equal(m.clientMsgId, r2.clientMsgId);
      assert.ok(m.timeMs > 1.7e12);
      assert.equal(m.senderKind, SenderKind.USER);
      assert.deepEqual(acked, [r1.seq]);
      // The joins came as changes, never as empty messages, in the same sequence.
      await waitFor('ann to see bob join the log', () => annIn.changes('general').length === 3);
      assert.deepEqual(annIn.changes('general'), ['system CREATED ', 'ann JOINED ann', 'bob JOINED bob']);
      assertGapless(annIn, 'general');
      assertGapless(bobIn, 'general');

      bob.typing('general');
      await waitFor('ann to see bob typing', () => typing.includes('general:bob'));

      const page = await ann.history('general', { beforeSeq: r2.seq, limit: 10 });
      assert.deepEqual(page.messages.map((x) => x.text), ['hello bob']);
      assert.deepEqual(page.changes.map((x) => x.kind), [ChangeKind.CREATED, ChangeKind.JOINED, ChangeKind.JOINED]);
      assert.deepEqual([...page.changes, ...page.messages].map((x) => x.seq).sort((a, b) => a - b), [1, 2, 3, 4]);
      assert.equal(page.hasMore, false);

      assert.deepEqual((await ann.who()).map((x) => x.name).sort(), ['ann', 'bob']);
      const rooms = await ann.listRooms();
      assert.deepEqual(rooms.map((r) => [r.name, r.members, r.role, r.kind]), [['general', 2, Role.MEMBER, RoomKind.PUBLIC]]);
      assert.ok((await ann.ping()) >= 0);

      // Refusals are typed: the server's error code, the room, retryable or not.
      await assert.rejects(ann.request({ case: 'post', value: { room: 'elsewhere', text: 'x', clientMsgId: 'x' } }), (err: unknown) => {
        assert.ok(err instanceof ParleyError);
        assert.equal(err.code, ErrorCode.NOT_JOINED);
        assert.equal(err.codeName, 'ERROR_CODE_NOT_JOINED');
        assert.equal(err.room, 'elsewhere');
        assert.equal(err.retryable, false);
        return true;
      });
      // A post too long for the server is refused before it is sent.
      await assert.rejects(ann.post('general', 'x'.repeat(ann.welcome!.maxTextChars + 1)), (err: unknown) => err instanceof ParleyError && err.code === ErrorCode.TOO_LONG && err.local);

      await bob.leave('general');
      assert.deepEqual(bob.rooms, []);
      await waitFor('ann to see bob leave', () => presence.includes('-bob') && annIn.changes('general').includes('bob LEFT bob'));
      assertGapless(annIn, 'general');
      ann.close();
      bob.close();
      assert.equal(ann.state, 'stopped');
    });
  });
}

describe('resume across a server restart', () => {
  let srv: Parley;
  before(async () => {
    srv = await Parley.start();
  });
  after(() => srv?.dispose());

  test('every message once, in order; the offline post stored once', async () => {
    const ann = client({ url: srv.url, name: 'ann', reconnect: { baseMs: 50, capMs: 500 } });
    const annIn = inbox(ann);
    const states: string[] = [];
    ann.on('state', (s) => states.push(s.state));
    const drops: Disconnected[] = [];
    ann.on('disconnected', (d) => drops.push(d));
    const joins: boolean[] = [];
    ann.on('joined', (j) => joins.push(j.resumed));
    await ann.connect();
    await ann.join('news');
    await ann.join('sports');

    const bob = client({ url: srv.url, name: 'bob', codec: 'json', reconnect: { baseMs: 50, capMs: 500 } });
    const bobResumed: string[] = [];
    bob.on('joined', (j) => j.resumed && bobResumed.push(j.room));
    await bob.connect();
    await bob.join('news');
    await bob.join('sports');
    for (let i = 1; i <= 3; i++) {
      await bob.post('news', `news ${i}`);
      await bob.post('sports', `sports ${i}`);
    }
    await waitFor('ann to have 3 + 3', () => annIn.get('news')?.length === 3 && annIn.get('sports')?.length === 3);

    await srv.stop();
    await waitFor('ann to notice', () => drops.length > 0);
    assert.equal(drops[0]!.code, CloseCode.GOING_AWAY);
    assert.equal(drops[0]!.willReconnect, true);
    // Written while the server is down: waits, then goes out once.
    const offline = ann.post('news', 'written offline');
    assert.deepEqual(ann.unsent.map((u) => u.text), ['written offline']);

    await srv.restart();
    await waitFor('bob back in both rooms', () => bobResumed.length === 2);
    await bob.post('sports', 'sports 4');
    const stored = await offline;
    assert.equal(ann.unsent.length, 0);
    await bob.post('news', 'news after');

    await waitFor('ann to have caught up', () => annIn.get('news')?.length === 5 && annIn.get('sports')?.length === 4);
    assertGapless(annIn, 'news');
    assertGapless(annIn, 'sports');
    assert.deepEqual(annIn.get('news')!.map((m) => m.text), ['news 1', 'news 2', 'news 3', 'written offline', 'news after']);
    assert.equal(annIn.get('news')!.find((m) => m.seq === stored.seq)?.text, 'written offline');
    assert.ok(states.includes('waiting'));
    assert.deepEqual(joins.slice(0, 2), [false, false]);
    assert.ok(joins.slice(2).every((r) => r), 'every join after the restart resumed');

    // The server stored the offline post once: history agrees with what was delivered.
    const page = await bob.history('news', { limit: 100 });
    assert.deepEqual(page.messages.map((m) => m.text), annIn.get('news')!.map((m) => m.text));
  });
});

describe('history lost on restart', () => {
  let srv: Parley;
  before(async () => {
    srv = await Parley.start();
  });
  after(() => srv?.dispose());

  test("the room's seqs start over: rewound, then the new history from its start, changes included, still a member", async () => {
    const kim = client({ url: srv.url, name: 'kim', reconnect: { baseMs: 50, capMs: 500 } });
    const rewound: string[] = [];
    kim.on('rewound', (r) => rewound.push(r.room));
    let fresh: Inbox | null = null;
    kim.on('rewound', () => (fresh = inbox(kim)));
    const kimIn = inbox(kim);
    await kim.connect();
    await kim.join('general');
    for (let i = 0; i < 3; i++) await kim.post('general', `old ${i}`);
    await waitFor('kim to read her posts', () => kimIn.get('general')?.length === 3);

    await srv.stop();
    await rm(srv.data, { recursive: true, force: true });
    await srv.restart();
    const bob = client({ url: srv.url, name: 'bob' });
    await bob.connect();
    await bob.join('general');
    await bob.post('general', 'new 1');
    await waitFor('kim to rewind', () => rewound.length === 1);
    await bob.post('general', 'new 2');
    await waitFor('kim to read the new history', () => fresh?.get('general')?.length === 2);
    assert.deepEqual(fresh!.get('general')!.map((m) => m.text), ['new 1', 'new 2']);
    assertGapless(fresh!, 'general');
    assert.ok(!fresh!.changes('general').includes('kim LEFT kim'), 'still a member: no LEFT of hers');
    await kim.post('general', 'still here');
  });
});

/**
 * A socket factory over the ws package whose sockets the test steers: it
 * sees every envelope the client sends, may swallow envelopes on the way
 * in (batch items one by one), and may pause reading or drop the socket.
 */
class Wire {
  readonly sent: pb.Envelope[] = [];
  readonly sockets: SteeredSocket[] = [];
  swallow: (env: pb.Envelope) => boolean = () => false;
  /** While set, new sockets wait for it before they open: the client stays offline. */
  gate: Promise<void> | null = null;
  constructor(readonly codec: Codec) {}
  readonly factory: SocketFactory = async (url, protocols, headers) => {
    await this.gate;
    const s = new SteeredSocket(new WebSocket(url, protocols, { headers }), this);
    this.sockets.push(s);
    return { ws: s, refusal: () => null };
  };
  get current(): SteeredSocket {
    return this.sockets[this.sockets.length - 1]!;
  }
}

class SteeredSocket implements WebSocketLike {
  constructor(readonly ws: WebSocket, readonly wire: Wire) {}
  get protocol() {
    return this.ws.protocol;
  }
  get readyState() {
    return this.ws.readyState;
  }
  get binaryType() {
    return this.ws.binaryType;
  }
  set binaryType(t: string) {
    this.ws.binaryType = t as 'arraybuffer';
  }
  set onopen(fn: ((ev: unknown) => void) | null) {
    this.ws.onopen = fn;
  }
  set onclose(fn: ((ev: { code: number; reason: string }) => void) | null) {
    this.ws.onclose = fn;
  }
  set onerror(fn: ((ev: unknown) => void) | null) {
    this.ws.onerror = fn;
  }
  set onmessage(fn: ((ev: { data: unknown }) => void) | null) {
    this.ws.onmessage = (e) => {
      const codec = this.wire.codec;
      const env = codec.decode(e.data);
      // Nothing gets through once the test dropped the socket, not even
      // the rest of the batch that was being read.
      const keep = (it: pb.Envelope) => this.ws.readyState === WebSocket.OPEN && !this.wire.swallow(it);
      if (env.body.case === 'batch') {
        env.body.value.items = env.body.value.items.filter(keep);
        if (env.body.value.items.length === 0) return;
      } else if (!keep(env)) return;
      fn?.({ data: codec.encode(env) });
    };
  }
  get onopen() {
    return null;
  }
  get onclose() {
    return null;
  }
  get onerror() {
    return null;
  }
  get onmessage() {
    return null;
  }
  send(data: string | Uint8Array) {
    this.wire.sent.push(this.wire.codec.decode(data));
    this.ws.send(data);
  }
  close(code?: number, reason?: string) {
    this.ws.close(code, reason);
  }
}

/** Swallows the first envelope that matches, once. */
function once(match: (env: pb.Envelope) => boolean): (env: pb.Envelope) => boolean {
  let done = false;
  return (env) => {
    if (done || !match(env)) return false;
    done = true;
    return true;
  };
}

describe('retried post', () => {
  let srv: Parley;
  before(async () => {
    srv = await Parley.start();
  });
  after(() => srv?.dispose());

  const postsWith = (wire: Wire, id: string) => wire.sent.filter((e) => e.body.case === 'post' && e.body.value.clientMsgId === id);

  test('its ack lost: re-sent with the same clientMsgId, acknowledged once, stored once', async () => {
    const wire = new Wire(protoCodec);
    const ann = client({ url: srv.url, name: 'ann', requestTimeoutMs: 300, socketFactory: wire.factory });
    await ann.connect();
    await ann.join('room');
    const bob = client({ url: srv.url, name: 'bob' });
    const bobIn = inbox(bob);
    await bob.connect();
    const { seq: joinedAt } = await bob.join('room');

    const id = newClientMsgId();
    const acks: number[] = [];
    ann.on('postAcked', (r) => acks.push(r.seq));
    // The first answer to the post and its delivery to ann never arrive.
    const first = () => postsWith(wire, id)[0]?.id;
    const lostAck = once((e) => e.body.case === 'ack' && e.body.value.requestId === first());
    const lostEvent = once((e) => e.body.case === 'event' && e.body.value.clientMsgId === id);
    wire.swallow = (e) => lostAck(e) || lostEvent(e);

    const res = await ann.post('room', 'only once', { clientMsgId: id });
    assert.equal(res.seq, joinedAt + 1);
    assert.equal(postsWith(wire, id).length, 2, 'sent twice: the retry is real');
    assert.notEqual(postsWith(wire, id)[0]!.id, postsWith(wire, id)[1]!.id);
    await bob.post('room', 'after');
    await waitFor('bob to have both', () => bobIn.get('room')?.length === 2);
    assert.deepEqual(bobIn.get('room')!.map((m) => m.text), ['only once', 'after']);
    assertGapless(bobIn, 'room');
    assert.deepEqual(acks, [res.seq]);
  });

  test('its ack lost with the connection: settled once by the resume', async () => {
    const wire = new Wire(jsonCodec);
    const ann = client({ url: srv.url, name: 'cat', codec: 'json', socketFactory: wire.factory, reconnect: { baseMs: 20, capMs: 200 } });
    const annIn = inbox(ann);
    await ann.connect();
    const { seq: joinedAt } = await ann.join('room2');
    const id = newClientMsgId();
    const acks: number[] = [];
    ann.on('postAcked', (r) => acks.push(r.seq));
    // Swallow the ack, and drop the connection before the event.
    wire.swallow = (e) => {
      if (e.body.case === 'ack' && e.body.value.requestId === postsWith(wire, id)[0]?.id) {
        wire.current.ws.terminate();
        return true;
      }
      return false;
    };
    const res = await ann.post('room2', 'survives the drop', { clientMsgId: id });
    assert.equal(res.seq, joinedAt + 1);
    assert.deepEqual(acks, [res.seq]);
    assert.ok(wire.sockets.length >= 2, 'reconnected');
    await waitFor('the message delivered', () => annIn.get('room2')?.length === 1);
    assertGapless(annIn, 'room2');
    const page = await ann.history('room2');
    assert.deepEqual(page.messages.map((m) => m.text), ['survives the drop']);
  });
});

describe('rooms, members and moderation', () => {
  let srv: Parley;
  before(async () => {
    srv = await Parley.start();
  });
  after(() => srv?.dispose());

  /** Every 'room' event a client was handed. */
  function standing(c: ParleyClient): RoomInfo[] {
    const list: RoomInfo[] = [];
    c.on('room', (r) => list.push(r));
    return list;
  }

  test('a private room: invitation, join, ban; changes as change events, standing as room events, typed refusals', async () => {
    const alice = client({ url: srv.url, name: 'alice' });
    const bob = client({ url: srv.url, name: 'bob', codec: 'json' });
    const aliceIn = inbox(alice);
    const bobIn = inbox(bob);
    const aliceRooms = standing(alice);
    const bobRooms = standing(bob);
    const closed: { room: string; text: string }[] = [];
    bob.on('roomClosed', (c) => closed.push(c));
    const emptyMessages: ChatMessage[] = [];
    for (const c of [alice, bob]) c.on('message', (m) => m.text === '' && emptyMessages.push(m));
    await alice.connect();
    await bob.connect();

    await alice.createRoom('team', { kind: RoomKind.PRIVATE, title: 'The team' });
    await assert.rejects(bob.createRoom('team'), (err: unknown) => err instanceof ParleyError && err.code === ErrorCode.ROOM_EXISTS);
    await waitFor('alice told she owns team', () => aliceRooms.some((r) => r.name === 'team' && r.role === Role.OWNER));
    assert.deepEqual(alice.myRooms.map((r) => [r.name, r.title, r.kind]), [['team', 'The team', RoomKind.PRIVATE]]);

    const failed: string[] = [];
    bob.on('joinFailed', (f) => failed.push(`${f.room}:${f.error.codeName}`));
    await assert.rejects(bob.join('team'), (err: unknown) => err instanceof ParleyError && err.code === ErrorCode.FORBIDDEN);
    assert.deepEqual(failed, ['team:ERROR_CODE_FORBIDDEN']);
    assert.deepEqual(await bob.listRooms(), [], 'a private room is not listed to a non-member');

    await alice.moderate('team', 'bob', ModAction.INVITE);
    await waitFor('bob told he is invited', () => bobRooms.some((r) => r.name === 'team' && r.invited));
    assert.deepEqual(bob.myRooms.map((r) => [r.name, r.invited]), [['team', true]]);
    await alice.join('team');
    await bob.join('team');
    await bob.post('team', 'thanks for having me');
    const members = await alice.members('team');
    assert.deepEqual(members.members.map((m) => [m.user, m.role]), [['alice', Role.OWNER], ['bob', Role.MEMBER]]);
    const first = await alice.whoPage({ room: 'team', limit: 1 });
    assert.deepEqual([first.members.map((m) => m.name), first.next], [['alice'], 'alice']);
    const second = await alice.whoPage({ room: 'team', after: first.next, limit: 1 });
    assert.deepEqual(second.members.map((m) => m.name), ['bob']);

    // A ban: bob sees it happen, is out of the room for good and told why.
    const banSeq = await alice.moderate('team', 'bob', ModAction.BAN, { reason: 'spam' });
    await waitFor('bob out of team', () => closed.length === 1);
    assert.deepEqual(closed, [{ room: 'team', text: 'you were banned by alice: spam' }]);
    const ban = bobIn.change('team', banSeq);
    assert.ok(ban, 'bob saw the ban as a change');
    assert.deepEqual([ban.sender, ban.kind, ban.user, ban.reason], ['alice', ChangeKind.BANNED, 'bob', 'spam']);
    await waitFor('bob told he is banned', () => bobRooms.some((r) => r.name === 'team' && r.bannedUntilMs > 0 && r.role === Role.NONE));
    assert.deepEqual(bob.rooms, []);
    assert.deepEqual(bob.myRooms, []);
    await assert.rejects(bob.join('team'), (err: unknown) => err instanceof ParleyError && err.code === ErrorCode.BANNED);
    await assert.rejects(bob.post('team', 'let me back'), (err: unknown) => err instanceof ParleyError && err.code === ErrorCode.NOT_JOINED && err.local);
    await waitFor('alice to see the ban', () => aliceIn.changes('team').length === 4);
    // (The owner was a member from the start: her join changed nothing.)
    assert.deepEqual(aliceIn.changes('team'), ['alice CREATED alice', 'alice INVITED bob', 'bob JOINED bob', 'alice BANNED bob']);
    assert.deepEqual(aliceIn.get('team')!.map((m) => m.text), ['thanks for having me']);
    assertGapless(aliceIn, 'team');
    const page = await alice.history('team');
    assert.deepEqual(page.changes.map((c) => c.kind), [ChangeKind.CREATED, ChangeKind.INVITED, ChangeKind.JOINED, ChangeKind.BANNED]);
    assert.deepEqual(page.messages.map((m) => m.text), ['thanks for having me']);

    // A direct conversation: bob starts it, alice hears of it and joins.
    const dm = await bob.direct('alice', 'no hard feelings?');
    assert.match(dm.room, /^@/);
    await waitFor('alice told of the conversation', () => aliceRooms.some((r) => r.name === dm.room && r.directWith === 'bob' && r.kind === RoomKind.DIRECT));
    await alice.join(dm.room);
    await waitFor("alice to read bob's message", () => aliceIn.get(dm.room)?.length === 1);
    assert.equal(aliceIn.get(dm.room)![0]!.seq, dm.seq);
    await assert.rejects(bob.direct('bob', 'me'), (err: unknown) => err instanceof ParleyError && err.code === ErrorCode.BAD_REQUEST);

    // A new topic is a change like the rest; the listings page.
    const topicSeq = await alice.updateRoom('team', { topic: 'ship it' });
    await waitFor('alice to see the new topic', () => aliceIn.change('team', topicSeq)?.topic === 'ship it');
    assert.equal(aliceIn.change('team', topicSeq)!.title, 'The team');
    const p1 = await alice.roomsPage({ mine: true, limit: 1 });
    assert.deepEqual([p1.rooms.map((r) => r.name), p1.next !== ''], [[dm.room], true]);
    const p2 = await alice.roomsPage({ mine: true, limit: 1, after: p1.next });
    assert.deepEqual(p2.rooms.map((r) => [r.name, r.topic]), [['team', 'ship it']]);

    // Only the owner deletes; then nobody gets in.
    await assert.rejects(bob.deleteRoom('team'), (err: unknown) => err instanceof ParleyError && err.code === ErrorCode.FORBIDDEN);
    await alice.deleteRoom('team', 'done');
    await waitFor('alice out of team', () => !alice.rooms.includes('team'));
    await assert.rejects(alice.join('team'), (err: unknown) => err instanceof ParleyError && err.code === ErrorCode.NO_SUCH_ROOM);
    assert.deepEqual(emptyMessages, [], 'no change came as an empty message');
  });

  test('banned while away: the re-join is refused (joinFailed), the other rooms resume with the changes they missed, no hole', async () => {
    const wire = new Wire(protoCodec);
    const olga = client({ url: srv.url, name: 'olga' });
    await olga.connect();
    await olga.createRoom('club');
    await olga.createRoom('lounge', { title: 'Lounge' });
    const tom = client({ url: srv.url, name: 'tom', socketFactory: wire.factory, reconnect: { baseMs: 20, capMs: 200 } });
    const tomIn = inbox(tom);
    const failed: { room: string; error: ParleyError }[] = [];
    tom.on('joinFailed', (f) => failed.push(f));
    const resumed: string[] = [];
    tom.on('joined', (j) => j.resumed && resumed.push(j.room));
    await tom.connect();
    await tom.join('club');
    await tom.join('lounge');

    // tom drops off and stays off while olga bans him from club and
    // changes lounge.
    let open!: () => void;
    wire.gate = new Promise((res) => (open = res));
    wire.current.ws.terminate();
    await waitFor('tom offline', () => tom.state === 'waiting' || tom.state === 'connecting');
    await olga.moderate('club', 'tom', ModAction.BAN, { reason: 'rude' });
    await olga.join('lounge');
    const topicSeq = await olga.updateRoom('lounge', { topic: 'quiet please' });
    await olga.post('lounge', 'while you were away');
    open();

    await waitFor("tom's re-join of club refused", () => failed.length === 1);
    assert.equal(failed[0]!.room, 'club');
    assert.equal(failed[0]!.error.code, ErrorCode.BANNED);
    await waitFor('tom back in lounge', () => resumed.includes('lounge'));
    await waitFor('tom to catch up', () => tomIn.get('lounge')?.length === 1);
    assert.deepEqual(tom.rooms, ['lounge']);
    assert.equal(tomIn.change('lounge', topicSeq)?.topic, 'quiet please');
    assertGapless(tomIn, 'lounge');
    assertGapless(tomIn, 'club');
  });
});

describe('edits, deletes, reactions, replies', () => {
  let srv: Parley;
  before(async () => {
    srv = await Parley.start();
  });
  after(() => srv?.dispose());

  test('typed calls, their changes live, the posts as they stand in history, typed refusals', async () => {
    const ann = client({ url: srv.url, name: 'ann' });
    const bob = client({ url: srv.url, name: 'bob', codec: 'json' });
    const bobIn = inbox(bob);
    await ann.connect();
    await bob.connect();
    await ann.join('general');
    await bob.join('general');
    const { seq } = await ann.post('general', 'helo');
    await assert.rejects(bob.edit('general', seq, 'mine'), (err: unknown) => err instanceof ParleyError && err.code === ErrorCode.NOT_YOURS);
    await assert.rejects(ann.edit('general', seq + 100, 'x'), (err: unknown) => err instanceof ParleyError && err.code === ErrorCode.NO_SUCH_MESSAGE);
    const edited = await ann.edit('general', seq, 'hello', { clientMsgId: 'e-1' });
    assert.equal(await ann.edit('general', seq, 'hello', { clientMsgId: 'e-1' }), edited, 'a retried edit applies once');
    const reacted = await bob.react('general', seq, '👍');
    assert.equal(await bob.react('general', seq, '👍'), 0, 'a reaction bob has already changes nothing');
    const reply = await bob.reply('general', 'hi ann', { replyTo: seq, mentions: ['ann'] });
    await waitFor('bob to see the edit and his reaction', () => bobIn.change('general', reacted) !== undefined);
    const e = bobIn.change('general', edited)!;
    assert.deepEqual([e.kind, e.targetSeq, e.text], [ChangeKind.EDITED, seq, 'hello']);
    const r = bobIn.change('general', reacted)!;
    assert.deepEqual([r.kind, r.targetSeq, r.emoji, r.count], [ChangeKind.REACTED, seq, '👍', 1]);
    let page = await bob.history('general');
    const post = page.messages.find((m) => m.seq === seq)!;
    assert.deepEqual([post.text, post.editedMs > 0, post.reactions], ['hello', true, [{ emoji: '👍', count: 1, mine: true }]]);
    const back = page.messages.find((m) => m.seq === reply.seq)!;
    assert.deepEqual([back.replyTo, back.mentions], [seq, ['ann']]);
    assert.deepEqual((await ann.history('general')).messages.find((m) => m.seq === seq)!.reactions, [{ emoji: '👍', count: 1, mine: false }]);

    await assert.rejects(bob.deleteMessage('general', seq), (err: unknown) => err instanceof ParleyError && err.code === ErrorCode.NOT_YOURS);
    const deleted = await ann.deleteMessage('general', seq, { reason: 'typo' });
    await waitFor('bob to see the delete', () => bobIn.change('general', deleted) !== undefined);
    assert.equal(bobIn.change('general', deleted)!.targetSeq, seq);
    await assert.rejects(bob.react('general', seq, '🎉'), (err: unknown) => err instanceof ParleyError && err.code === ErrorCode.ALREADY_DELETED);
    page = await bob.history('general');
    const gone = page.messages.find((m) => m.seq === seq)!;
    assert.deepEqual([gone.deleted, gone.text, gone.reactions], [true, '', []]);
    assert.equal(page.changes.find((c) => c.seq === edited)!.text, '', "the edit's text went with the post");

    // Read cursors: bob's other device hears of his, and only forward.
    const phone = client({ url: srv.url, name: 'bob' });
    const phoneRooms: RoomInfo[] = [];
    phone.on('room', (r) => phoneRooms.push(r));
    await phone.connect();
    const mine = phone.myRooms.find((r) => r.name === 'general')!;
    assert.ok(mine.unread > 0 && mine.unreadMentions === 0, `bob's general at hello: ${JSON.stringify(mine)}`);
    assert.equal(await bob.markRead('general', reply.seq), reply.seq);
    await waitFor("bob's phone told of his cursor", () => phoneRooms.some((r) => r.name === 'general' && r.readSeq === reply.seq));
    assert.equal(await bob.markRead('general', 1), reply.seq, 'an older seq changes nothing');
    await assert.rejects(bob.markRead('general', 10_000), (err: unknown) => err instanceof ParleyError && err.code === ErrorCode.NO_SUCH_MESSAGE);
  });
});

describe('read positions', () => {
  let srv: Parley;
  before(async () => {
    srv = await Parley.start();
  });
  after(() => srv?.dispose());

  test("a room setting: refused to a member, then others' cursors as typed 'readPositions' events, a snapshot first", async () => {
    const ann = client({ url: srv.url, name: 'ann' });
    const bob = client({ url: srv.url, name: 'bob', codec: 'json' });
    const seen: ReadPositions[] = [];
    ann.on('readPositions', (rp) => seen.push(rp));
    await ann.connect();
    await bob.connect();
    await ann.createRoom('club');
    await ann.join('club');
    await bob.join('club');
    let last = 0;
    for (const text of ['one', 'two', 'three']) last = (await ann.post('club', text)).seq;
    await assert.rejects(bob.setReadPositions('club', true), (err: unknown) => err instanceof ParleyError && err.code === ErrorCode.FORBIDDEN);
    await ann.setReadPositions('club', true);
    await waitFor("ann's snapshot", () => seen.some((rp) => rp.snapshot && rp.room === 'club'));
    for (let seq = last - 2; seq <= last; seq++) assert.equal(await bob.markRead('club', seq), seq);
    await waitFor("bob's cursor at ann's", () => seen.some((rp) => !rp.snapshot && rp.positions.some((p) => p.user === 'bob' && p.seq === last)));
    assert.ok(seen.filter((rp) => !rp.snapshot).length <= 2, `three quick moves in ${JSON.stringify(seen)}`);
  });
});

describe('tokens', () => {
  let srv: Parley;
  before(async () => {
    srv = await Parley.start({ args: ['-jwt-secret', SECRET, '-anonymous', 'false'] });
  });
  after(() => srv?.dispose());

  for (const tokenIn of ['hello', 'query', 'header'] as const) {
    test(`a good token in ${tokenIn} logs in as its subject`, async () => {
      const c = client({ url: srv.url, token: token(`dana-${tokenIn}`), tokenIn });
      await c.connect();
      assert.equal(c.welcome?.name, `dana-${tokenIn}`);
      assert.ok(c.welcome!.tokenExpiresMs > Date.now());
      await c.join('team');
      c.close();
    });
  }

  test('a bad token in the handshake: HTTP 401, fatal, no retry', async () => {
    const c = client({ url: srv.url, token: token('eve', 3600, 'not-the-secret-not-the-secret-xx'), tokenIn: 'header' });
    const fatal: unknown[] = [];
    c.on('fatal', (f) => fatal.push(f.error));
    await assert.rejects(c.connect(), (err: unknown) => err instanceof HandshakeError && err.status === 401);
    assert.equal(c.state, 'stopped');
    assert.equal(fatal.length, 1);
  });

  test('a bad token in hello: FORBIDDEN, fatal', async () => {
    const c = client({ url: srv.url, token: 'not.a.token' });
    await assert.rejects(c.connect(), (err: unknown) => err instanceof ParleyError && err.code === ErrorCode.FORBIDDEN);
    assert.equal(c.state, 'stopped');
  });

  test('an expired token: TOKEN_EXPIRED, fatal without a token function', async () => {
    const c = client({ url: srv.url, token: token('old', -60) });
    await assert.rejects(c.connect(), (err: unknown) => err instanceof ParleyError && err.code === ErrorCode.TOKEN_EXPIRED);
  });

  test('no token where one is required: NOT_LOGGED_IN, fatal', async () => {
    const c = client({ url: srv.url, name: 'anon' });
    await assert.rejects(c.connect(), (err: unknown) => err instanceof ParleyError && err.code === ErrorCode.NOT_LOGGED_IN);
  });

  test('a token function refreshes before expiry: the session outlives its first token', async () => {
    let calls = 0;
    const ttl = 6;
    const c = client({ url: srv.url, token: () => token('fay', ttl + 30 * calls++) });
    const drops: Disconnected[] = [];
    c.on('disconnected', (d) => drops.push(d));
    await c.connect();
    const firstExpiry = c.welcome!.tokenExpiresMs;
    await waitFor('a refresh', () => calls >= 2);
    // Past the first token's expiry the server would have closed with 4003.
    await waitFor('the first token to expire', () => Date.now() > firstExpiry + 1500, (ttl + 30) * 1000);
    assert.ok((await c.ping()) >= 0);
    assert.deepEqual(drops, []);
  });
});

describe('a slow reader (1013)', () => {
  let srv: Parley;
  before(async () => {
    srv = await Parley.start({
      admin: true,
      // The close frame waits behind what the paused reader has not read;
      // a loaded machine must not turn it into a write timeout (1006).
      args: ['-queue', '8', '-write-timeout', '2m', '-ping-interval', '1h', '-rate', '100000', '-burst', '100000', '-store', 'memory'],
    });
  });
  after(() => srv?.dispose());

  test('surfaces 1013 as an event, then resumes with no hole and no duplicate', async () => {
    const wire = new Wire(protoCodec);
    const slow = client({ url: srv.url, name: 'slow', socketFactory: wire.factory, pingIntervalMs: 3_600_000, reconnect: { baseMs: 20, capMs: 200 } });
    const slowIn = inbox(slow);
    const drops: Disconnected[] = [];
    slow.on('disconnected', (d) => drops.push(d));
    await slow.connect();
    await slow.join('firehose');

    const pub = client({ url: srv.url, name: 'pub', requestTimeoutMs: 120_000 });
    await pub.connect();
    await pub.join('firehose');

    // slow stops reading its socket; pub posts until the server gives up
    // on slow (its queue full behind loopback's buffers), which the admin
    // listener counts. Two posts in flight at a time keep pub's own queue
    // short; 4000 four-byte characters make 16 KiB frames, so a few
    // thousand fill the buffers.
    wire.current.ws.pause();
    const text = '\u{1F4AC}'.repeat(4000);
    let sent = 0;
    const dropped = async () => (await srv.metric('parley_drops_total', 'reason="slow_client"')) > 0;
    for (let round = 0; round < 400 && !(await dropped()); round++) {
      for (let i = 0; i < 25; i++) {
        await Promise.all([pub.post('firehose', text), pub.post('firehose', text)]);
        sent += 2;
      }
    }
    assert.ok(await dropped(), 'the server closed slow with 1013');
    wire.current.ws.resume();

    await waitFor('slow to hear why', () => drops.length > 0, 120_000);
    assert.equal(drops[0]!.code, CloseCode.TRY_AGAIN_LATER);
    assert.equal(drops[0]!.willReconnect, true);
    await waitFor(`slow to catch up on ${sent}`, () => slowIn.get('firehose')?.length === sent, 120_000);
    assertGapless(slowIn, 'firehose');
    assert.ok(wire.sockets.length >= 2, 'reconnected');
  });
});

describe('lifecycle', () => {
  test('connect() rejects and stops when nothing listens and reconnect is off', async () => {
    const c = client({ url: 'ws://127.0.0.1:1/ws', name: 'x', reconnect: false });
    await assert.rejects(c.connect(), (err: unknown) => err instanceof ClosedError);
    assert.equal(c.state, 'stopped');
  });

  test('close() rejects what still waits', async () => {
    const c = client({ url: 'ws://127.0.0.1:1/ws', name: 'x' });
    const p = c.connect();
    const j = c.join('r');
    c.close();
    await assert.rejects(p, ClosedError);
    await assert.rejects(j, ClosedError);
  });
});
