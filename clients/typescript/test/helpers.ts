// What the tests share: HS256 tokens, a local HTTP server that records what
// it is sent, a fake clock, and the real embedded matchmaker.

import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { type AddressInfo, createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** An HS256 JWT as a studio's backend would mint one (ten minutes). */
export function mint(secret: string, claims: Record<string, unknown>): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64({ exp: Math.floor(Date.now() / 1000) + 600, ...claims });
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

export interface Recorded {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: string;
}

export interface LocalServer {
  url: string;
  requests: Recorded[];
  close(): Promise<void>;
}

/** A node:http server on a free loopback port; every request is recorded before `handler` sees it. */
export async function serve(
  handler: (req: Recorded, res: ServerResponse, raw: IncomingMessage) => void | Promise<void>,
): Promise<LocalServer> {
  const requests: Recorded[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const rec: Recorded = {
        method: req.method ?? "",
        url: req.url ?? "",
        headers: req.headers,
        body: Buffer.concat(chunks).toString("utf8"),
      };
      requests.push(rec);
      Promise.resolve(handler(rec, res, req)).catch((err: unknown) => {
        res.destroy(err instanceof Error ? err : new Error(String(err)));
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Answers a JSON body. */
export function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** Answers a problem detail, as the matchmaker does. */
export function problem(res: ServerResponse, status: number, code: string, headers: Record<string, string> = {}): void {
  const text = JSON.stringify({ type: `https://quickmatch.dev/problems/${code}`, title: "x", status, code });
  res.writeHead(status, { "Content-Type": "application/problem+json", "Content-Length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** A ticket at a version, for fake servers. */
export function ticket(version: number, status: string, extra: Record<string, unknown> = {}) {
  return {
    id: "duel.t-1",
    queue: "duel",
    status,
    version,
    created_at: "2026-01-01T00:00:00Z",
    updated_at: "2026-01-01T00:00:00Z",
    players: [{ id: "p-1", skill: 1500 }],
    reason: "",
    ...extra,
  };
}

/** One SSE event, as the matchmaker writes it. */
export function sseEvent(event: string, version: number, data: unknown): string {
  return `id: ${version}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/**
 * A fake clock for the client's `sleep`: pauses wait until the test lets
 * them go, so nothing in a test sleeps for real.
 */
export class FakeClock {
  readonly slept: number[] = [];
  #waiting: { ms: number; go: () => void }[] = [];
  #arrived: (() => void)[] = [];

  readonly sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      this.slept.push(ms);
      const entry = {
        ms,
        go: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        this.#waiting = this.#waiting.filter((w) => w !== entry);
        reject(signal?.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiting.push(entry);
      for (const f of this.#arrived.splice(0)) f();
    });

  /** Waits for the next pause to begin and ends it, answering its length. */
  async next(): Promise<number> {
    while (this.#waiting.length === 0) await new Promise<void>((r) => this.#arrived.push(r));
    const w = this.#waiting.shift() as { ms: number; go: () => void };
    w.go();
    return w.ms;
  }

  get pending(): number {
    return this.#waiting.length;
  }
}

/** A pause that returns at once and records its length. */
export function instantSleep(record: number[]) {
  return async (ms: number, signal?: AbortSignal): Promise<void> => {
    signal?.throwIfAborted();
    record.push(ms);
  };
}

const repoRoot = fileURLToPath(new URL("../../../../", import.meta.url));

/** The matchmaker binary: QM_MATCHMAKER_BIN, or one built now with go build. */
export function matchmakerBinary(): string {
  const given = process.env["QM_MATCHMAKER_BIN"];
  if (given) {
    if (!existsSync(given)) throw new Error(`QM_MATCHMAKER_BIN=${given} does not exist`);
    return given;
  }
  const dir = mkdtempSync(join(tmpdir(), "qm-client-"));
  process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, "matchmaker");
  execFileSync("go", ["build", "-o", out, "./services/matchmaker"], { cwd: repoRoot, stdio: "inherit" });
  return out;
}

async function freePort(): Promise<number> {
  const s = createNetServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

export interface Matchmaker {
  url: string;
  secret: string;
  token(claims: Record<string, unknown>): string;
  log(): string;
  stop(): Promise<void>;
}

/**
 * Starts the embedded matchmaker on a free loopback port with an HS256
 * secret (so every call needs a token), and waits for /readyz.
 */
export async function startMatchmaker(env: Record<string, string> = {}): Promise<Matchmaker> {
  const bin = matchmakerBinary();
  const secret = randomBytes(32).toString("hex");
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("MM_")));
  let output = "";
  for (let tries = 0; ; tries++) {
    const port = await freePort();
    const child: ChildProcess = spawn(bin, [], {
      env: { ...inherited, MM_HTTP_ADDR: `127.0.0.1:${port}`, MM_AUTH_HS256_SECRET: secret, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout?.on("data", (c: Buffer) => (output += c.toString()));
    child.stderr?.on("data", (c: Buffer) => (output += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    let gone = false;
    void exited.then(() => (gone = true));
    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 30_000;
    while (!gone && Date.now() < deadline) {
      try {
        const res = await fetch(`${url}/readyz`);
        await res.text();
        if (res.status === 200) {
          return {
            url,
            secret,
            token: (claims) => mint(secret, claims),
            log: () => output,
            stop: async () => {
              if (!gone) {
                child.kill("SIGTERM");
                const t = setTimeout(() => child.kill("SIGKILL"), 10_000);
                await exited;
                clearTimeout(t);
              }
            },
          };
        }
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    if (!gone) {
      child.kill("SIGKILL");
      await exited;
    }
    // The port may have been taken between freePort and the start: try another.
    if (tries >= 2) throw new Error(`the matchmaker did not become ready:\n${output}`);
  }
}
