import { fromBinary, fromJsonString, toBinary, toJsonString } from '@bufbuild/protobuf';
import { type Envelope, EnvelopeSchema } from '../gen/parley_pb.js';

/**
 * One of Parley's two native framings of Envelope, chosen with the WebSocket
 * subprotocol: parley.v1.proto (a protobuf message per binary frame) or
 * parley.v1.json (its protojson per text frame; 64-bit integers as strings).
 */
export interface Codec {
  readonly name: CodecName;
  readonly subprotocol: string;
  encode(env: Envelope): string | Uint8Array;
  decode(data: unknown): Envelope;
}

export type CodecName = 'proto' | 'json';

const textDecoder = new TextDecoder();

function bytesOf(data: unknown): Uint8Array {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError(`expected a binary frame, got ${typeof data}`);
}

export const protoCodec: Codec = {
  name: 'proto',
  subprotocol: 'parley.v1.proto',
  encode: (env) => toBinary(EnvelopeSchema, env),
  decode: (data) => fromBinary(EnvelopeSchema, bytesOf(data)),
};

export const jsonCodec: Codec = {
  name: 'json',
  subprotocol: 'parley.v1.json',
  encode: (env) => toJsonString(EnvelopeSchema, env),
  // A newer server may send fields and frame types this client does not
  // know; they are skipped, not fatal.
  decode: (data) =>
    fromJsonString(EnvelopeSchema, typeof data === 'string' ? data : textDecoder.decode(bytesOf(data)), {
      ignoreUnknownFields: true,
    }),
};

export function codecNamed(name: CodecName): Codec {
  switch (name) {
    case 'proto':
      return protoCodec;
    case 'json':
      return jsonCodec;
    default:
      throw new TypeError(`unknown codec ${JSON.stringify(name)}: use "proto" or "json"`);
  }
}
