// Retries against small local servers, with a fake pause: nothing sleeps.

import assert from "node:assert/strict";
import { after, describe, test } from "node:test";

import {
  ConnectionError,
  DEFAULT_RETRY,
  QuickmatchClient,
  QuickmatchError,
  parseRetryAfter,
  retryDelay,
  type TicketRequest,
} from "@quickmatch/client";

import { FakeClock, instantSleep, json, problem, serve, ticket, type LocalServer } from "./helpers.js";

const body: TicketRequest = { queue: "duel", players: [{ id: "p-1", skill: 1500 }], latencies: { "eu-west": 30 } };

const servers: LocalServer[] = [];
after(async () => {
  await Promise.all(servers.map((s) => s.close()));
});
async function local(...args: Parameters<typeof serve>): Promise<LocalServer> {
  const s = await serve(...args);
  servers.push(s);
  return s;
}

/** A loopback URL nothing listens on. */
async function deadUrl(): Promise<string> {
  const s = await serve(() => {});
  await s.close();
  return s.url;
}

describe("retries", () => {
  test("503 with Retry-After: waits that long, then the same create succeeds with the same Idempotency-Key", async () => {
    let n = 0;
    const srv = await local((_req, res) => {
      if (n++ === 0) problem(res, 503, "overloaded", { "Retry-After": "7" });
      else json(res, 201, ticket(1, "searching"), { Location: "/v1/tickets/duel.t-1" });
    });
    const slept: number[] = [];
    const client = new QuickmatchClient({ baseUrls: srv.url, token: "tok", sleep: instantSleep(slept) });
    const t = await client.createTicket(body);
    assert.equal(t.status, "searching");
    assert.equal(srv.requests.length, 2);
    assert.equal(slept.length, 1);
    assert.ok(slept[0]! >= 7000 && slept[0]! <= 7700, `slept ${slept[0]} ms for Retry-After: 7`);
    const [first, second] = srv.requests;
    const key = first!.headers["idempotency-key"];
    assert.match(String(key), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(second!.headers["idempotency-key"], key, "one key per logical create, reused by its retries");
    assert.equal(first!.headers.authorization, "Bearer tok");
    assert.equal(first!.headers["content-type"], "application/json");
    assert.deepEqual(JSON.parse(second!.body), body);
    // The next create is another logical create: a new key.
    await client.createTicket(body);
    assert.notEqual(srv.requests[2]!.headers["idempotency-key"], key);
  });

  test("a fake clock sees every pause; a 503 moves on to the next front, a 429 stays", async () => {
    const a = await local((req, res) => {
      if (req.method === "POST") problem(res, 503, "unavailable");
      else problem(res, 429, "rate_limited", { "Retry-After": "2" });
    });
    let bCalls = 0;
    const b = await local((req, res) => {
      bCalls++;
      if (req.method === "GET" && bCalls === 2) problem(res, 429, "rate_limited", { "Retry-After": "3" });
      else json(res, req.method === "POST" ? 201 : 200, ticket(1, "searching"));
    });
    const clock = new FakeClock();
    const client = new QuickmatchClient({ baseUrls: [a.url, b.url], token: () => "tok", sleep: clock.sleep, random: () => 0.5 });
    const created = client.createTicket(body);
    // 503 without Retry-After: equal jitter on the first step (250 ms): 125 + 0.5 × 125.
    assert.equal(await clock.next(), 187.5);
    await created;
    assert.equal(a.requests.length, 1);
    assert.equal(b.requests.length, 1, "the retry went to the second front");
    // The client now uses b; a 429 there is retried on b after its Retry-After (3 s + 0.5 × 10%).
    const read = client.getTicket("duel.t-1");
    assert.equal(await clock.next(), 3150);
    await read;
    assert.equal(b.requests.length, 3);
    assert.equal(a.requests.length, 1, "a 429 does not move to another front");
  });

  test("a connection refused moves on to the next front", async () => {
    const dead = await deadUrl();
    const live = await local((_req, res) => json(res, 200, ticket(2, "matched")));
    const slept: number[] = [];
    const client = new QuickmatchClient({ baseUrls: [dead, live.url], sleep: instantSleep(slept), random: () => 0 });
    const t = await client.cancelTicket("duel.t-1").catch((e: unknown) => e);
    assert.deepEqual(t, ticket(2, "matched"));
    assert.deepEqual(slept, [125]);
    assert.equal(live.requests[0]!.method, "DELETE");
    assert.equal(live.requests[0]!.headers.authorization, undefined, "no token source, no header");
  });

  test("gives up after retry.attempts tries with the last answer's error", async () => {
    const srv = await local((_req, res) => problem(res, 503, "unavailable"));
    const slept: number[] = [];
    const client = new QuickmatchClient({ baseUrls: srv.url, sleep: instantSleep(slept), random: () => 1, retry: { attempts: 4 } });
    const err = await client.getServer("gs-1").then(
      () => assert.fail("resolved"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof QuickmatchError);
    assert.equal(err.status, 503);
    assert.equal(err.code, "unavailable");
    assert.equal(srv.requests.length, 4);
    // Exponential steps, 250, 500, 1000 ms, with random() = 1 the full step.
    assert.deepEqual(slept, [250, 500, 1000]);
  });

  test("connection failures on every front end in a ConnectionError", async () => {
    const slept: number[] = [];
    const client = new QuickmatchClient({ baseUrls: [await deadUrl(), await deadUrl()], sleep: instantSleep(slept), retry: { attempts: 3 } });
    const err = await client.getTicket("duel.t-1").catch((e: unknown) => e);
    assert.ok(err instanceof ConnectionError, String(err));
    assert.ok(err.cause !== undefined);
    assert.equal(slept.length, 2);
  });

  test("a Retry-After past maxRetryAfterMs fails at once", async () => {
    const srv = await local((_req, res) => problem(res, 429, "rate_limited", { "Retry-After": "3600" }));
    const slept: number[] = [];
    const client = new QuickmatchClient({ baseUrls: srv.url, sleep: instantSleep(slept) });
    const err = await client.createTicket(body).catch((e: unknown) => e);
    assert.ok(err instanceof QuickmatchError);
    assert.equal(err.code, "rate_limited");
    assert.equal(err.retryAfterMs, 3_600_000);
    assert.deepEqual(slept, []);
  });

  test("a 4xx is not retried; a 409 names the live ticket", async () => {
    const srv = await local((_req, res) => {
      const text = JSON.stringify({
        type: "https://quickmatch.dev/problems/player_has_ticket",
        title: "Conflict",
        status: 409,
        detail: "player p-1 already has a live ticket",
        code: "player_has_ticket",
        ticket_id: "duel.live",
      });
      res.writeHead(409, { "Content-Type": "application/problem+json", Location: "/v1/tickets/duel.live" });
      res.end(text);
    });
    const slept: number[] = [];
    const client = new QuickmatchClient({ baseUrls: srv.url, sleep: instantSleep(slept) });
    const err = await client.createTicket(body).catch((e: unknown) => e);
    assert.ok(err instanceof QuickmatchError);
    assert.equal(err.status, 409);
    assert.equal(err.code, "player_has_ticket");
    assert.equal(err.ticketId, "duel.live");
    assert.match(err.message, /already has a live ticket/);
    assert.equal(srv.requests.length, 1);
    assert.deepEqual(slept, []);
  });

  test("an answer that is not a problem detail has the code unknown", async () => {
    const srv = await local((_req, res) => {
      res.writeHead(502, { "Content-Type": "text/html" });
      res.end("<h1>Bad Gateway</h1>");
    });
    const client = new QuickmatchClient({ baseUrls: srv.url, sleep: instantSleep([]), retry: { attempts: 2 } });
    const err = await client.drainServer("gs-1").catch((e: unknown) => e);
    assert.ok(err instanceof QuickmatchError);
    assert.equal(err.status, 502);
    assert.equal(err.code, "unknown");
    assert.equal(srv.requests.length, 2, "502 is retried");
  });

  test("a 401 asks the token callback once more, and retries if the token changed", async () => {
    const srv = await local((req, res) => {
      if (req.headers.authorization === "Bearer fresh") json(res, 200, ticket(1, "searching"));
      else problem(res, 401, "invalid_token", { "WWW-Authenticate": 'Bearer realm="quickmatch", error="invalid_token"' });
    });
    const tokens = ["stale", "fresh"];
    const ok = new QuickmatchClient({ baseUrls: srv.url, token: async () => tokens.shift() ?? "none" });
    assert.equal((await ok.getTicket("duel.t-1")).version, 1);
    assert.equal(srv.requests.length, 2);

    const stuck = new QuickmatchClient({ baseUrls: srv.url, token: () => "stale" });
    const err = await stuck.getTicket("duel.t-1").catch((e: unknown) => e);
    assert.ok(err instanceof QuickmatchError);
    assert.equal(err.code, "invalid_token");
    assert.equal(srv.requests.length, 3, "the same token is not sent again");
  });

  test("an end of match whose answer was lost is done when the retry finds it gone", async () => {
    let n = 0;
    const srv = await local((_req, res) => {
      if (n++ === 0) res.socket?.destroy(); // ended, but the answer is lost
      else problem(res, 404, "not_found");
    });
    const client = new QuickmatchClient({ baseUrls: srv.url, sleep: instantSleep([]) });
    await client.endMatch("gs-1", "duel.m-1");
    assert.equal(srv.requests.length, 2);
    assert.equal(srv.requests[0]!.url, "/v1/servers/gs-1/matches/duel.m-1");
    // Without a lost try, a 404 is an error.
    const err = await client.endMatch("gs-1", "duel.m-2").catch((e: unknown) => e);
    assert.ok(err instanceof QuickmatchError && err.code === "not_found");
  });

  test("a long-poll asks for its wait; a slow answer times out and is retried", async () => {
    let n = 0;
    const srv = await local((req, res) => {
      if (n++ === 0) return; // never answers
      json(res, 200, ticket(3, "assigned"));
      void req;
    });
    const client = new QuickmatchClient({ baseUrls: srv.url, requestTimeoutMs: 100, sleep: instantSleep([]) });
    const t = await client.getTicket("duel.t-1", { waitMs: 50, after: 2, until: "assigned" });
    assert.equal(t.version, 3);
    assert.equal(srv.requests.length, 2);
    assert.equal(srv.requests[1]!.url, "/v1/tickets/duel.t-1?wait=50ms&after=2&until=assigned");
  });

  test("an abort ends a pause at once", async () => {
    const srv = await local((_req, res) => problem(res, 503, "overloaded", { "Retry-After": "30" }));
    const client = new QuickmatchClient({ baseUrls: srv.url }); // the real sleep
    const ctl = new AbortController();
    const started = Date.now();
    setTimeout(() => ctl.abort(new Error("user gave up")), 50);
    const err = await client.createTicket(body, { signal: ctl.signal }).catch((e: unknown) => e);
    assert.ok(err instanceof Error && err.message === "user gave up", String(err));
    assert.ok(Date.now() - started < 5000);
  });
});

describe("retry arithmetic", () => {
  test("parseRetryAfter reads seconds and HTTP dates", () => {
    const now = Date.parse("2026-01-01T00:00:00Z");
    assert.equal(parseRetryAfter("5", now), 5000);
    assert.equal(parseRetryAfter(" 0 ", now), 0);
    assert.equal(parseRetryAfter("Thu, 01 Jan 2026 00:00:09 GMT", now), 9000);
    assert.equal(parseRetryAfter("Wed, 31 Dec 2025 23:59:00 GMT", now), 0);
    assert.equal(parseRetryAfter("soon", now), undefined);
    assert.equal(parseRetryAfter("-1", now), undefined);
    assert.equal(parseRetryAfter(null, now), undefined);
  });

  test("retryDelay: capped exponential steps with equal jitter; Retry-After plus up to a tenth", () => {
    const p = { ...DEFAULT_RETRY, baseDelayMs: 100, maxDelayMs: 1000 };
    assert.deepEqual(
      [0, 1, 2, 3, 4, 5].map((n) => retryDelay(n, undefined, p, () => 0)),
      [50, 100, 200, 400, 500, 500],
    );
    assert.deepEqual(
      [0, 1, 2, 3, 4, 5].map((n) => retryDelay(n, undefined, p, () => 1)),
      [100, 200, 400, 800, 1000, 1000],
    );
    assert.equal(retryDelay(3, 2000, p, () => 0), 2000);
    assert.equal(retryDelay(3, 2000, p, () => 1), 2200);
  });
});
