// A real Parley server for the tests: the repository's binary, built once
// per test process (or taken from $PARLEY_BIN), on a free loopback port.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');

let binary: Promise<string> | null = null;

// Servers and directories die with this process, however it ends: a test
// file that times out is killed, and its after() hooks never run.
const running = new Set<ChildProcess>();
const scratch = new Set<string>();
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL');
  for (const d of scratch) rmSync(d, { recursive: true, force: true });
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(1));

/** The parley binary: $PARLEY_BIN, or built with go into a temporary directory. Fails (never skips) without Go. */
export function parleyBinary(): Promise<string> {
  binary ??= (async () => {
    if (process.env.PARLEY_BIN) return process.env.PARLEY_BIN;
    const dir = await mkdtemp(join(tmpdir(), 'parley-ts-bin-'));
    scratch.add(dir);
    const out = join(dir, 'parley');
    try {
      await promisify(execFile)('go', ['build', '-o', out, '.'], { cwd: repo });
    } catch (err) {
      throw new Error(`building Parley for the tests failed (needs Go, run from the repository): ${String(err)}`);
    }
    return out;
  })();
  return binary;
}

/** Free loopback ports, all picked before any is used so none comes out twice. */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise<ReturnType<typeof createServer>>((res, rej) => {
      const s = createServer();
      s.once('error', rej);
      s.listen(0, '127.0.0.1', () => res(s));
    })),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((res) => s.close(res))));
  return ports;
}

/** Polls cond until it holds, or fails after ms with what it waited for. */
export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export const SECRET = 'parley-ts-test-secret-0123456789abcdef';

/** An HS256 token as cmd/parley-token issues them. ttlSec < 0: already expired. */
export function token(sub: string, ttlSec = 3600, secret = SECRET): string {
  const b64 = (v: object | Buffer) => (Buffer.isBuffer(v) ? v : Buffer.from(JSON.stringify(v))).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, iat: now + Math.min(0, ttlSec) - 1, exp: now + ttlSec })}`;
  return `${body}.${b64(createHmac('sha256', secret).update(body).digest())}`;
}

export interface ServerOptions {
  /** Extra flags, e.g. ['-jwt-secret', SECRET]. */
  args?: string[];
  /** Serve the admin listener (metrics) too. */
  admin?: boolean;
}

/** One Parley process with a bolt store in a directory of its own, restartable on the same address and data. */
export class Parley {
  readonly addr: string;
  readonly adminAddr: string;
  readonly data: string;
  #opts: ServerOptions;
  #proc: ChildProcess | null = null;
  #log: string[] = [];

  private constructor(addr: string, adminAddr: string, data: string, opts: ServerOptions) {
    this.addr = addr;
    this.adminAddr = adminAddr;
    this.data = data;
    this.#opts = opts;
  }

  static async start(opts: ServerOptions = {}): Promise<Parley> {
    const [port, adminPort] = await freePorts(2);
    const data = await mkdtemp(join(tmpdir(), 'parley-ts-data-'));
    scratch.add(data);
    const p = new Parley(`127.0.0.1:${port}`, opts.admin ? `127.0.0.1:${adminPort}` : '', data, opts);
    await p.restart();
    return p;
  }

  get url(): string {
    return `ws://${this.addr}/ws`;
  }

  /** Starts the process (again) and waits until it is ready. */
  async restart(): Promise<void> {
    if (this.#proc) throw new Error('already running');
    const bin = await parleyBinary();
    const args = ['-addr', this.addr, '-store', 'bolt', '-data', this.data, '-admin-addr', this.adminAddr, '-log-level', 'warn', ...(this.#opts.args ?? [])];
    const proc = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.#proc = proc;
    running.add(proc);
    proc.once('exit', () => running.delete(proc));
    proc.stderr!.on('data', (b: Buffer) => this.#log.push(b.toString()));
    const exited = new Promise<number | null>((res) => proc.once('exit', (code) => res(code)));
    let gone = false;
    void exited.then(() => (gone = true));
    await waitFor(`parley on ${this.addr} to be ready`, async () => {
      if (gone) throw new Error(`parley exited while starting:\n${this.#log.join('')}`);
      try {
        return (await fetch(`http://${this.addr}/readyz`)).ok;
      } catch {
        return false;
      }
    });
  }

  /** Stops the process gracefully (SIGTERM: clients get 1001). */
  async stop(): Promise<void> {
    const proc = this.#proc;
    if (!proc) return;
    this.#proc = null;
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((res) => proc.once('exit', res));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(timer);
  }

  /** Stops the process and removes its data. */
  async dispose(): Promise<void> {
    await this.stop();
    await rm(this.data, { recursive: true, force: true });
  }

  /** A counter from the admin listener's /metrics (0 when absent). */
  async metric(name: string, labels: string): Promise<number> {
    const text = await (await fetch(`http://${this.adminAddr}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
    return line ? Number(line.split(' ').pop()) : 0;
  }

  get log(): string {
    return this.#log.join('');
  }
}
