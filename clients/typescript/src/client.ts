import { ConnectionError, QuickmatchError, StreamError } from "./errors.js";
import { DEFAULT_RETRY, parseRetryAfter, retryDelay, sleep as realSleep, type RetryOptions } from "./retry.js";
import { readEventStream } from "./sse.js";
import {
  IDEMPOTENCY_KEY,
  LAST_EVENT_ID,
  POLL_PARAMS,
  STREAM_AFTER,
  ROUTES,
  STREAM_ROUTES,
  UNTIL_PARAM,
  isAsked,
  isTerminal,
  type AcceptRequest,
  type Allocations,
  type Backfill,
  type BackfillRequest,
  type Problem,
  type Server,
  type ServerRequest,
  type Ticket,
  type TicketRequest,
  type TicketStatus,
  type Until,
} from "./types.js";

/** Where the bearer token comes from: a JWT, or a callback asked before every request. */
export type TokenSource = string | (() => string | Promise<string>);

/** The fetch the client calls (the global one by default). */
export type FetchLike = (url: string, init: RequestInit) => Promise<Response>;

export interface ClientOptions {
  /**
   * The deployment's base URL, or several fronts of it (`https://mm-1.example.com`,
   * a path prefix allowed). Calls go to one; after a connection failure, a
   * 502/503/504 or a cut stream the client moves on to the next.
   */
  baseUrls: string | readonly string[];
  /** The JWT for `Authorization: Bearer`; none when the deployment runs with auth off. */
  token?: TokenSource | undefined;
  /** How calls are retried; see {@link DEFAULT_RETRY}. */
  retry?: Partial<RetryOptions> | undefined;
  /** How long one plain call may take, in ms (default 15,000); a long-poll gets its wait on top. */
  requestTimeoutMs?: number | undefined;
  /** How long a long-poll asks the server to hold, in ms (default 30,000; the server caps it). */
  pollWaitMs?: number | undefined;
  /**
   * How long a stream may be silent before it is taken as lost, in ms
   * (default 45,000: the server sends a comment at least every 15 s).
   */
  streamIdleTimeoutMs?: number | undefined;
  /** Told of every connection a watch opens (for logs and tests). */
  onConnect?: ((info: ConnectInfo) => void) | undefined;
  /** Replaces the global fetch. */
  fetch?: FetchLike | undefined;
  /** Replaces the pauses between retries and heartbeats (tests pass a fake clock). */
  sleep?: ((ms: number, signal?: AbortSignal) => Promise<void>) | undefined;
  /** Replaces Math.random for the jitter. */
  random?: (() => number) | undefined;
  /** Replaces Date.now, to read Retry-After dates. */
  now?: (() => number) | undefined;
}

/** A connection a watch opens. */
export interface ConnectInfo {
  transport: "sse" | "poll";
  url: string;
  /** The Last-Event-ID sent, when the stream resumes. */
  lastEventId?: string;
}

export interface CallOptions {
  /** Aborts the call (and its retries); it rejects with the signal's reason. */
  signal?: AbortSignal | undefined;
}

export interface CreateTicketOptions extends CallOptions {
  /**
   * The create's Idempotency-Key. By default the client makes one (a UUID)
   * per call and sends it on every retry of that call, so a create is never
   * made twice; give your own to retry a create across restarts of the caller.
   */
  idempotencyKey?: string | undefined;
}

export interface GetTicketOptions extends CallOptions {
  /** Hold the request up to this long for a version newer than `after`, in ms. */
  waitMs?: number | undefined;
  /** The version already seen (default: the version at the time of the request). */
  after?: number | undefined;
  /** Hold until the ticket is that far, past the versions on the way. */
  until?: Until | undefined;
}

export interface GetAllocationsOptions extends CallOptions {
  waitMs?: number | undefined;
  after?: number | undefined;
}

/**
 * How a watch reads changes: `sse` (a stream of events), `poll` (long-polls
 * one after another) or `auto` (the stream, or long-polls when the server has
 * no stream route), the default.
 */
export type Transport = "sse" | "poll" | "auto";

export interface WatchOptions extends CallOptions {
  /** Deliver the versions after this one (default 0: the record as it is comes first). */
  after?: number | undefined;
  transport?: Transport | undefined;
}

export interface WaitTicketOptions extends WatchOptions {
  /** `assigned` (the default: until the ticket ends, whichever way) or `matched`. */
  until?: Until | undefined;
}

export interface HeartbeatOptions extends CallOptions {
  /** Between two heartbeats, in ms (default a third of the server's time to live). */
  intervalMs?: number | undefined;
  /** Told of a heartbeat that failed after its retries; the loop goes on. */
  onError?: ((error: unknown) => void) | undefined;
  /** Told of each heartbeat's answer. */
  onBeat?: ((server: Server) => void) | undefined;
}

/** A running heartbeat loop, from {@link QuickmatchClient.startHeartbeat}. */
export interface Heartbeat {
  /** The server as the last heartbeat that succeeded answered it. */
  readonly server: Server;
  /** Ends the loop; resolves when a heartbeat in flight has ended. */
  stop(): Promise<void>;
}

/** What a watch reads, and how. */
interface WatchSpec<T> {
  streamPath: string;
  pollPath: string;
  event: string;
  version(v: T): number;
  final(v: T): boolean;
}

interface Call {
  method: "GET" | "POST" | "PUT" | "DELETE";
  path: string;
  query?: Record<string, string | number | undefined>;
  body?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal | undefined;
  timeoutMs?: number;
  /**
   * The call is done when a retry answers 404 after a try whose answer was
   * lost (an end of a match that the lost try had ended).
   */
  goneIsDone?: boolean;
}

class Timeout extends Error {
  override readonly name = "TimeoutError";
}

/** Status codes after which a stream route is taken as absent, for `auto`. */
const NO_STREAM = [404, 405, 406, 501];

/** The statuses `waitTicket` stops at. */
const REACHED: Record<Until, readonly TicketStatus[]> = {
  matched: ["matched", "assigned", "cancelled", "expired", "failed"],
  assigned: ["assigned", "cancelled", "expired", "failed"],
};

/**
 * A client of the quickmatch HTTP API, for players (create, wait, cancel
 * tickets) and game servers (register and heartbeat, watch allocations, end
 * matches, drain). Every call is retried on connection failures and on the
 * statuses of {@link RetryOptions.statuses}, with backoff and jitter and
 * honouring Retry-After; every watch resumes after a lost connection, on the
 * next base URL, from the last version it delivered.
 */
export class QuickmatchClient {
  /** The base URLs, as given (less trailing slashes). */
  readonly baseUrls: readonly string[];
  readonly #token: TokenSource | undefined;
  readonly #retry: Readonly<RetryOptions>;
  readonly #fetch: FetchLike;
  readonly #sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  readonly #random: () => number;
  readonly #now: () => number;
  readonly #timeoutMs: number;
  readonly #pollWaitMs: number;
  readonly #idleMs: number;
  readonly #onConnect: ((info: ConnectInfo) => void) | undefined;
  #front = 0;

  constructor(options: ClientOptions) {
    const urls = typeof options.baseUrls === "string" ? [options.baseUrls] : [...options.baseUrls];
    if (urls.length === 0) throw new TypeError("quickmatch: baseUrls names no URL");
    this.baseUrls = Object.freeze(urls.map((u) => u.replace(/\/+$/, "")));
    this.#token = options.token;
    this.#retry = Object.freeze({ ...DEFAULT_RETRY, ...stripUndefined(options.retry ?? {}) });
    if (!(this.#retry.attempts >= 1)) throw new RangeError("quickmatch: retry.attempts must be 1 or more");
    const f = options.fetch;
    this.#fetch = f ?? ((url, init) => globalThis.fetch(url, init));
    this.#sleep = options.sleep ?? realSleep;
    this.#random = options.random ?? Math.random;
    this.#now = options.now ?? Date.now;
    this.#timeoutMs = options.requestTimeoutMs ?? 15_000;
    this.#pollWaitMs = options.pollWaitMs ?? 30_000;
    this.#idleMs = options.streamIdleTimeoutMs ?? 45_000;
    this.#onConnect = options.onConnect;
  }

  // ---- Players ----

  /**
   * Queues a party (POST /v1/tickets) and answers its ticket, searching. The
   * call carries an Idempotency-Key, so its retries never make a second
   * ticket. A player who already has a live ticket gets a
   * {@link QuickmatchError} `player_has_ticket` whose `ticketId` names it.
   */
  async createTicket(request: TicketRequest, options: CreateTicketOptions = {}): Promise<Ticket> {
    const key = options.idempotencyKey ?? uuid();
    const { value } = await this.#call<Ticket>({
      method: "POST",
      path: ROUTES.tickets,
      body: request,
      headers: { [IDEMPOTENCY_KEY]: key },
      signal: options.signal,
    });
    return value;
  }

  /** Reads a ticket; with `waitMs`, long-polls it for a version newer than `after`. */
  async getTicket(id: string, options: GetTicketOptions = {}): Promise<Ticket> {
    const { value } = await this.#call<Ticket>({
      method: "GET",
      path: fill(ROUTES.ticket, { id }),
      query: {
        [POLL_PARAMS.wait]: options.waitMs === undefined ? undefined : `${Math.max(0, Math.round(options.waitMs))}ms`,
        [POLL_PARAMS.after]: options.after,
        [UNTIL_PARAM]: options.until,
      },
      signal: options.signal,
      timeoutMs: this.#timeoutMs + (options.waitMs ?? 0),
    });
    return value;
  }

  /**
   * Cancels a searching ticket and answers it, cancelled. A ticket already
   * matched is a {@link QuickmatchError} `ticket_matched`.
   */
  async cancelTicket(id: string, options: CallOptions = {}): Promise<Ticket> {
    const { value } = await this.#call<Ticket>({
      method: "DELETE",
      path: fill(ROUTES.ticket, { id }),
      signal: options.signal,
    });
    return value;
  }

  /**
   * Answers the match a ticket is offered (pending_acceptance, in a queue
   * with `accept_timeout`): `true` accepts it, `false` declines it. Answers
   * the ticket: still pending_acceptance until every ticket has accepted,
   * matched once they all have, cancelled (reason `declined`) after a
   * decline. Answering again is harmless. A ticket offered no match is a
   * {@link QuickmatchError} `conflict` (or `ticket_matched`).
   */
  async acceptMatch(id: string, accept: boolean, options: CallOptions = {}): Promise<Ticket> {
    const body: AcceptRequest = { accept };
    const { value } = await this.#call<Ticket>({
      method: "POST",
      path: fill(ROUTES.accept, { id }),
      body,
      signal: options.signal,
    });
    return value;
  }

  /**
   * Every new version of a ticket, in order and each once, until it ends
   * (assigned, cancelled, expired, failed): the last one yielded is
   * terminal. It resumes after lost connections on the next base URL.
   * Leaving the loop early closes the connection.
   */
  watchTicket(id: string, options: WatchOptions = {}): AsyncGenerator<Ticket, void, undefined> {
    return this.#watch<Ticket>(
      {
        streamPath: fill(STREAM_ROUTES.ticket, { id }),
        pollPath: fill(ROUTES.ticket, { id }),
        event: "ticket",
        version: (t) => t.version,
        final: (t) => isTerminal(t.status),
      },
      options,
    );
  }

  /**
   * Waits until a ticket is assigned or ends otherwise (or, with
   * `until: "matched"`, is matched or further), and answers it. Check its
   * `status`: only `assigned` has an `assignment`. It also answers a ticket
   * whose match waits for its player to accept ({@link isAsked}): answer
   * with {@link acceptMatch}, then wait again.
   */
  async waitTicket(id: string, options: WaitTicketOptions = {}): Promise<Ticket> {
    const reached = REACHED[options.until ?? "assigned"];
    let last: Ticket | undefined;
    for await (const t of this.watchTicket(id, options)) {
      last = t;
      if (reached.includes(t.status) || isAsked(t)) return t;
    }
    if (last === undefined) throw new StreamError(`ticket ${id}: the watch ended with no version`);
    return last;
  }

  // ---- Game servers ----

  /** Registers a game server, or heartbeats it (PUT /v1/servers/{id}). */
  async registerServer(id: string, server: ServerRequest, options: CallOptions = {}): Promise<Server> {
    return (await this.#register(id, server, options.signal)).server;
  }

  /**
   * Registers a game server and keeps heartbeating it until `stop()` (or
   * the signal): by default every third of the time to live the server
   * answers with `expires_at`. A heartbeat that fails after its retries is
   * reported to `onError` and the loop goes on.
   */
  async startHeartbeat(id: string, server: ServerRequest, options: HeartbeatOptions = {}): Promise<Heartbeat> {
    const first = await this.#register(id, server, options.signal);
    let current = first.server;
    const interval = options.intervalMs ?? heartbeatInterval(first.server, first.serverNow);
    const stopper = new AbortController();
    const signal = stopper.signal;
    const onAbort = () => stopper.abort(options.signal?.reason);
    options.signal?.addEventListener("abort", onAbort, { once: true });
    const loop = (async () => {
      try {
        while (!signal.aborted) {
          try {
            await this.#sleep(interval, signal);
          } catch {
            return;
          }
          if (signal.aborted) return;
          try {
            current = (await this.#register(id, server, signal)).server;
            options.onBeat?.(current);
          } catch (err) {
            if (signal.aborted) return;
            options.onError?.(err);
          }
        }
      } finally {
        options.signal?.removeEventListener("abort", onAbort);
      }
    })();
    return {
      get server() {
        return current;
      },
      stop: async () => {
        stopper.abort(new Error("heartbeat stopped"));
        await loop;
      },
    };
  }

  /** Reads a game server. */
  async getServer(id: string, options: CallOptions = {}): Promise<Server> {
    const { value } = await this.#call<Server>({ method: "GET", path: fill(ROUTES.server, { id }), signal: options.signal });
    return value;
  }

  /** Reads the matches a server hosts; with `waitMs`, long-polls for a version newer than `after`. */
  async getAllocations(id: string, options: GetAllocationsOptions = {}): Promise<Allocations> {
    const { value } = await this.#call<Allocations>({
      method: "GET",
      path: fill(ROUTES.allocations, { id }),
      query: {
        [POLL_PARAMS.wait]: options.waitMs === undefined ? undefined : `${Math.max(0, Math.round(options.waitMs))}ms`,
        [POLL_PARAMS.after]: options.after,
      },
      signal: options.signal,
      timeoutMs: this.#timeoutMs + (options.waitMs ?? 0),
    });
    return value;
  }

  /**
   * Every new version of a server's allocations (all the matches it hosts
   * at that version), in order and each once, until the loop is left or
   * the signal aborts. It resumes after lost connections on the next base URL.
   */
  watchAllocations(id: string, options: WatchOptions = {}): AsyncGenerator<Allocations, void, undefined> {
    return this.#watch<Allocations>(
      {
        streamPath: fill(STREAM_ROUTES.allocations, { id }),
        pollPath: fill(ROUTES.allocations, { id }),
        event: "allocations",
        version: (a) => a.version,
        final: () => false,
      },
      options,
    );
  }

  /**
   * Ends a match and frees its slot. A retry that finds the match gone after
   * a try whose answer was lost counts as done.
   */
  async endMatch(id: string, matchId: string, options: CallOptions = {}): Promise<void> {
    await this.#call<undefined>({
      method: "DELETE",
      path: fill(ROUTES.match, { id, match_id: matchId }),
      signal: options.signal,
      goneIsDone: true,
    });
  }

  /**
   * Asks for the seats that players who left a running match opened, per
   * team in the order of its allocation's teams, to be filled from the
   * pool (POST /v1/servers/{id}/matches/{match_id}/backfill). The players
   * who join show in the match's allocation as they are seated. Asking
   * again replaces the seats asked for; `[0, 0]` withdraws the request, and
   * ending the match does too.
   */
  async requestBackfill(id: string, matchId: string, open: number[], options: CallOptions = {}): Promise<Backfill> {
    const body: BackfillRequest = { open };
    const { value } = await this.#call<Backfill>({
      method: "POST",
      path: fill(ROUTES.backfill, { id, match_id: matchId }),
      body,
      signal: options.signal,
    });
    return value;
  }

  /** Drains a game server: it gets no new matches; those it hosts go on until ended. */
  async drainServer(id: string, options: CallOptions = {}): Promise<Server> {
    const { value } = await this.#call<Server>({ method: "DELETE", path: fill(ROUTES.server, { id }), signal: options.signal });
    return value;
  }

  // ---- The machinery ----

  async #register(id: string, server: ServerRequest, signal: AbortSignal | undefined) {
    const { value, response } = await this.#call<Server>({
      method: "PUT",
      path: fill(ROUTES.server, { id }),
      body: server,
      signal,
    });
    const date = response ? Date.parse(response.headers.get("date") ?? "") : Number.NaN;
    return { server: value, serverNow: Number.isNaN(date) ? this.#now() : date };
  }

  async #authorization(): Promise<string | undefined> {
    const t = this.#token;
    if (t === undefined) return undefined;
    return typeof t === "string" ? t : await t();
  }

  #url(front: number, path: string, query?: Record<string, string | number | undefined>): string {
    let url = (this.baseUrls[front] as string) + path;
    if (query) {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(query)) if (v !== undefined) q.set(k, String(v));
      const s = q.toString();
      if (s) url += `?${s}`;
    }
    return url;
  }

  /** Moves calls on to the base URL after `front`, unless another call already has. */
  #rotate(front: number): void {
    if (this.#front === front) this.#front = (front + 1) % this.baseUrls.length;
  }

  #headers(token: string | undefined, extra: Record<string, string>): Record<string, string> {
    const h: Record<string, string> = { ...extra };
    if (token !== undefined) h["Authorization"] = `Bearer ${token}`;
    return h;
  }

  async #problem(res: Response, request: string): Promise<QuickmatchError> {
    const text = await res.text().catch(() => "");
    let problem: Problem | undefined;
    if (/json/i.test(res.headers.get("content-type") ?? "")) {
      try {
        const p: unknown = JSON.parse(text);
        if (p !== null && typeof p === "object" && typeof (p as Problem).code === "string") problem = p as Problem;
      } catch {
        // not a problem detail after all
      }
    }
    return new QuickmatchError({
      status: res.status,
      problem,
      retryAfterMs: parseRetryAfter(res.headers.get("retry-after"), this.#now()),
      request,
    });
  }

  /** One call, with its retries. */
  async #call<T>(call: Call): Promise<{ value: T; response: Response | undefined }> {
    const policy = this.#retry;
    let lost = false; // a try whose answer never came: it may have been done
    let token: string | undefined;
    let tokenRefreshed = false;
    let reuseToken = false;
    for (let attempt = 0; ; attempt++) {
      call.signal?.throwIfAborted();
      const front = this.#front;
      const url = this.#url(front, call.path, call.query);
      const request = `${call.method} ${url}`;
      if (!reuseToken) token = await this.#authorization();
      reuseToken = false;
      const extra: Record<string, string> = { Accept: "application/json", ...call.headers };
      if (call.body !== undefined) extra["Content-Type"] = "application/json";
      const headers = this.#headers(token, extra);
      const deadline = linked(call.signal, call.timeoutMs ?? this.#timeoutMs);
      let res: Response;
      let text: string;
      try {
        res = await this.#fetch(url, {
          method: call.method,
          headers,
          ...(call.body === undefined ? {} : { body: JSON.stringify(call.body) }),
          signal: deadline.signal,
        });
        if (res.ok) text = await res.text();
        else text = "";
      } catch (err) {
        deadline.dispose();
        if (call.signal?.aborted) throw call.signal.reason;
        lost = true;
        if (attempt + 1 >= policy.attempts) {
          throw new ConnectionError(`${request}: no answer after ${attempt + 1} tries`, { cause: err });
        }
        this.#rotate(front);
        await this.#sleep(retryDelay(attempt, undefined, policy, this.#random), call.signal);
        continue;
      }
      if (res.ok) {
        deadline.dispose();
        return { value: (text === "" ? undefined : JSON.parse(text)) as T, response: res };
      }
      let err: QuickmatchError;
      try {
        err = await this.#problem(res, request);
      } finally {
        deadline.dispose();
      }
      if (res.status === 404 && lost && call.goneIsDone) return { value: undefined as T, response: undefined };
      if (res.status === 401 && !tokenRefreshed && typeof this.#token === "function") {
        // The token may have expired since the callback gave it: ask once more.
        tokenRefreshed = true;
        const fresh = await this.#authorization();
        if (fresh !== token) {
          token = fresh;
          reuseToken = true;
          attempt--;
          continue;
        }
      }
      if (policy.statuses.includes(res.status) && attempt + 1 < policy.attempts) {
        if (err.retryAfterMs !== undefined && err.retryAfterMs > policy.maxRetryAfterMs) throw err;
        if (res.status !== 429) this.#rotate(front);
        await this.#sleep(retryDelay(attempt, err.retryAfterMs, policy, this.#random), call.signal);
        continue;
      }
      throw err;
    }
  }

  /** The versions of a record, over a stream or long-polls, resuming after losses. */
  async *#watch<T>(spec: WatchSpec<T>, options: WatchOptions): AsyncGenerator<T, void, undefined> {
    const signal = options.signal;
    const policy = this.#retry;
    let transport: Transport = options.transport ?? "auto";
    let last = options.after ?? 0;
    let connected = false; // a stream was opened once: later ones resume with Last-Event-ID
    let failures = 0; // in a row, without a byte between them
    let tokenRefreshed = false;
    while (transport !== "poll") {
      signal?.throwIfAborted();
      const front = this.#front;
      const resume = connected;
      const url = this.#url(front, spec.streamPath, resume ? undefined : { [STREAM_AFTER]: last });
      const token = await this.#authorization(); // a failing callback fails the watch, as it fails a call
      const conn = linked(signal, this.#idleMs);
      let retryAfterMs: number | undefined;
      try {
        const headers = this.#headers(token, {
          Accept: "text/event-stream",
          ...(resume ? { [LAST_EVENT_ID]: String(last) } : {}),
        });
        this.#onConnect?.({ transport: "sse", url, ...(resume ? { lastEventId: String(last) } : {}) });
        const res = await this.#fetch(url, { method: "GET", headers, signal: conn.signal, cache: "no-store" });
        if (!res.ok) {
          const err = await this.#problem(res, `GET ${url}`);
          if (transport === "auto" && NO_STREAM.includes(res.status)) {
            transport = "poll";
            continue;
          }
          if (res.status === 401 && !tokenRefreshed && typeof this.#token === "function") {
            // As for a call: once more if the callback now gives another token.
            tokenRefreshed = true;
            if ((await this.#authorization()) !== token) continue;
          }
          if (!policy.statuses.includes(res.status)) throw new Fatal(err);
          if (err.retryAfterMs !== undefined && err.retryAfterMs > policy.maxRetryAfterMs) throw new Fatal(err);
          retryAfterMs = err.retryAfterMs;
          throw err;
        }
        const type = res.headers.get("content-type") ?? "";
        if (!/^text\/event-stream\b/i.test(type) || res.body === null) {
          res.body?.cancel().catch(() => {});
          if (transport === "auto") {
            transport = "poll";
            continue;
          }
          throw new Fatal(new StreamError(`GET ${url}: answered ${type || "no content type"}, not text/event-stream`));
        }
        connected = true;
        tokenRefreshed = false;
        const events = readEventStream(res.body, () => {
          failures = 0;
          conn.reset(this.#idleMs);
        });
        for await (const event of events) {
          if (event.type !== spec.event) continue;
          let v: T;
          try {
            v = JSON.parse(event.data) as T;
          } catch (cause) {
            throw new Fatal(new StreamError(`GET ${url}: an event's data is not JSON`, { cause }));
          }
          const version = spec.version(v);
          if (!(version > last)) continue; // seen before the stream resumed
          last = version;
          yield v;
          if (spec.final(v)) return;
        }
        // The server ended the stream before a final version: it is shutting
        // down, or a proxy cut it. Resume on the next front.
        throw new StreamEnded();
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        if (err instanceof Fatal) throw err.error;
        failures++;
        if (failures >= policy.attempts) {
          if (err instanceof QuickmatchError) throw err;
          throw new ConnectionError(`GET ${url}: the stream failed ${failures} times in a row`, { cause: err });
        }
        // A short pause even after a healthy stream: when a front goes away,
        // its clients should not all arrive on the next one at once.
        if (!(err instanceof QuickmatchError && err.status === 429)) this.#rotate(front);
        await this.#sleep(retryDelay(failures - 1, retryAfterMs, policy, this.#random), signal);
      } finally {
        conn.dispose();
      }
    }
    // Long-polls, one after another.
    for (;;) {
      const front = this.#front;
      this.#onConnect?.({ transport: "poll", url: this.#url(front, spec.pollPath) });
      const { value } = await this.#call<T>({
        method: "GET",
        path: spec.pollPath,
        query: { [POLL_PARAMS.wait]: `${this.#pollWaitMs}ms`, [POLL_PARAMS.after]: last },
        signal,
        timeoutMs: this.#timeoutMs + this.#pollWaitMs,
      });
      const version = spec.version(value);
      if (!(version > last)) continue;
      last = version;
      yield value;
      if (spec.final(value)) return;
    }
  }
}

/** Wraps an error a watch must not retry. */
class Fatal {
  constructor(readonly error: unknown) {}
}

/** A stream that ended without its final version. */
class StreamEnded extends Error {
  override readonly name = "StreamEnded";
  constructor() {
    super("the stream ended before a final version");
  }
}

/**
 * An abort signal that follows `parent` and fires on its own after `ms`
 * (a timeout, re-armed by `reset`).
 */
function linked(parent: AbortSignal | undefined, ms: number) {
  const ctl = new AbortController();
  const onAbort = () => ctl.abort(parent?.reason);
  if (parent?.aborted) ctl.abort(parent.reason);
  else parent?.addEventListener("abort", onAbort, { once: true });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const arm = (d: number) => {
    if (timer !== undefined) clearTimeout(timer);
    timer = setTimeout(() => ctl.abort(new Timeout(`no answer within ${d} ms`)), d);
  };
  arm(ms);
  return {
    signal: ctl.signal,
    reset: arm,
    dispose() {
      if (timer !== undefined) clearTimeout(timer);
      parent?.removeEventListener("abort", onAbort);
      ctl.abort(); // ends a body still open
    },
  };
}

/** A route with its {params} filled in, each encoded. */
function fill(route: string, params: Record<string, string>): string {
  return route.replace(/\{([a-z_]+)\}/g, (_, name: string) => {
    const v = params[name];
    if (v === undefined || v === "") throw new TypeError(`quickmatch: ${name} must not be empty`);
    return encodeURIComponent(v);
  });
}

/** A third of the server's time to live, from 1 s to 60 s; 5 s if the clocks make no sense. */
function heartbeatInterval(server: Server, serverNow: number): number {
  const ttl = Date.parse(server.expires_at) - serverNow;
  if (!(ttl > 0)) return 5_000;
  return Math.min(60_000, Math.max(1_000, ttl / 3));
}

/** A random (version 4) UUID. */
export function uuid(): string {
  const c = (globalThis as { crypto?: Crypto }).crypto;
  if (typeof c?.randomUUID === "function") return c.randomUUID();
  const b = new Uint8Array(16);
  if (typeof c?.getRandomValues === "function") c.getRandomValues(b);
  else for (let i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
  b[6] = ((b[6] as number) & 0x0f) | 0x40;
  b[8] = ((b[8] as number) & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
