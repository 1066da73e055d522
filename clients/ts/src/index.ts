/**
 * @parley/client: Parley's TypeScript SDK for browsers and Node 20+.
 *
 *   const client = new ParleyClient({ url: 'ws://127.0.0.1:8080/ws', name: 'ann' });
 *   client.on('message', (m) => console.log(`#${m.room} ${m.sender}: ${m.text}`));
 *   await client.connect();
 *   await client.join('general');
 *   await client.post('general', 'hello');
 */
export { ParleyClient, newClientMsgId } from './client.js';
export type { ParleyClientOptions, TokenPlacement, TokenSource } from './client.js';
export { type BackoffOptions, fullJitter } from './backoff.js';
export { type Codec, type CodecName, jsonCodec, protoCodec } from './codec.js';
export { ClosedError, ConnectionLostError, HandshakeError, ParleyError, TimeoutError, closeCodeName, errorCodeName } from './errors.js';
export type { OpenedSocket, SocketFactory, WebSocketLike } from './socket.js';
export type * from './types.js';
// The wire protocol's own types and enums, generated from proto/parley.proto.
export { ChangeKind, CloseCode, ErrorCode, ModAction, Role, RoomKind, SenderKind } from '../gen/parley_pb.js';
export * as pb from '../gen/parley_pb.js';
