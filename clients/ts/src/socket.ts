/**
 * The part of the WHATWG WebSocket the client uses. Browsers', Node 22's
 * global one and the ws package's all have it, so the client is written
 * once against it.
 */
export interface WebSocketLike {
  readonly protocol: string;
  readonly readyState: number;
  binaryType: string;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
}

/** What opening a socket gives: the socket, and the HTTP status of a refused handshake when the implementation can tell. */
export interface OpenedSocket {
  ws: WebSocketLike;
  refusal(): { status: number; retryAfterMs: number } | null;
}

/**
 * Opens a WebSocket. The default uses globalThis.WebSocket (browsers, Node
 * 22+) and else the ws package (Node 20), which must then be installed; it
 * also uses ws when headers are asked for, since a WHATWG WebSocket cannot
 * send them. Pass your own to use another implementation.
 */
export type SocketFactory = (url: string, protocols: string[], headers: Record<string, string>) => Promise<OpenedSocket>;

const OPEN = 1;
export const isOpen = (ws: WebSocketLike | null): boolean => ws?.readyState === OPEN;

type WsModule = { default: new (url: string, protocols: string[], opts: { headers: Record<string, string> }) => unknown };

let wsModule: Promise<WsModule> | null = null;

function loadWs(): Promise<WsModule> {
  // A variable specifier keeps bundlers from pulling ws into a browser
  // bundle; in Node it resolves like any import.
  const name = 'ws';
  wsModule ??= (import(name) as Promise<WsModule>).catch((err: unknown) => {
    wsModule = null;
    throw new Error(
      `@parley/client: this runtime has no global WebSocket (Node 20) or headers were asked for, and the ws package could not be loaded (npm install ws): ${String(err)}`,
    );
  });
  return wsModule;
}

interface NodeWs {
  on(ev: 'unexpected-response', fn: (req: unknown, res: { statusCode?: number; headers: Record<string, string | string[] | undefined> }) => void): void;
  terminate(): void;
}

function retryAfterMs(v: string | string[] | undefined): number {
  const s = Array.isArray(v) ? v[0] : v;
  if (!s) return 0;
  const secs = Number(s);
  if (Number.isFinite(secs)) return Math.max(0, secs * 1000);
  const at = Date.parse(s);
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : 0;
}

export const defaultSocketFactory: SocketFactory = async (url, protocols, headers) => {
  const Global = (globalThis as { WebSocket?: new (url: string, protocols: string[]) => WebSocketLike }).WebSocket;
  if (Global && Object.keys(headers).length === 0) {
    return { ws: new Global(url, protocols), refusal: () => null };
  }
  const { default: WS } = await loadWs();
  const ws = new WS(url, protocols, { headers }) as WebSocketLike & NodeWs;
  let refused: { status: number; retryAfterMs: number } | null = null;
  // ws lets a listener see the refused response: keep its status and
  // Retry-After, then abort, which closes the socket with 1006 as usual.
  ws.on('unexpected-response', (_req, res) => {
    refused = { status: res.statusCode ?? 0, retryAfterMs: retryAfterMs(res.headers['retry-after']) };
    ws.terminate();
  });
  return { ws, refusal: () => refused };
};
