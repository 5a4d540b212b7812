// Watches and the heartbeat loop against small local servers.

import assert from "node:assert/strict";
import type { ServerResponse } from "node:http";
import { after, describe, test } from "node:test";

import { QuickmatchClient, QuickmatchError, StreamError, type ConnectInfo } from "@quickmatch/client";

import { FakeClock, instantSleep, json, problem, serve, sseEvent, ticket, type LocalServer } from "./helpers.js";

const servers: LocalServer[] = [];
after(async () => {
  await Promise.all(servers.map((s) => s.close()));
});
async function local(...args: Parameters<typeof serve>): Promise<LocalServer> {
  const s = await serve(...args);
  servers.push(s);
  return s;
}

function openStream(res: ServerResponse): void {
  res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache" });
  res.flushHeaders();
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

const tick = () => new Promise((r) => setTimeout(r, 20));

describe("watchTicket over SSE", () => {
  test("resumes on the second base URL from Last-Event-ID after the first drops mid-event; no version twice", async () => {
    const a = await local(async (req, res) => {
      assert.equal(req.url, "/v1/tickets/duel.t-1/events?after=0");
      openStream(res);
      res.write(sseEvent("ticket", 1, ticket(1, "searching")));
      await tick();
      res.write(": ping\n\n" + sseEvent("ticket", 2, ticket(2, "matched")));
      await tick();
      // Half an event, then the connection drops.
      res.write('id: 3\nevent: ticket\ndata: {"id":"duel.t-1","status":"assi');
      await tick();
      res.socket?.destroy();
    });
    const b = await local(async (_req, res) => {
      openStream(res);
      // The server may send again what the client has seen: the client drops it.
      res.write(sseEvent("ticket", 2, ticket(2, "matched")));
      res.write(sseEvent("ticket", 3, ticket(3, "assigned", { assignment: { server_id: "gs-1", address: "10.0.0.7:7777", region: "eu-west" } })));
      res.end();
    });
    const connects: ConnectInfo[] = [];
    const slept: number[] = [];
    const client = new QuickmatchClient({
      baseUrls: [a.url, b.url],
      token: () => "tok",
      sleep: instantSleep(slept),
      onConnect: (c) => connects.push(c),
    });
    const seen = await collect(client.watchTicket("duel.t-1"));
    assert.deepEqual(
      seen.map((t) => [t.version, t.status]),
      [
        [1, "searching"],
        [2, "matched"],
        [3, "assigned"],
      ],
    );
    assert.equal(seen[2]!.assignment?.address, "10.0.0.7:7777");
    assert.equal(a.requests.length, 1);
    assert.equal(b.requests.length, 1);
    const resumed = b.requests[0]!;
    assert.equal(resumed.headers["last-event-id"], "2", "resumes from the last version seen");
    assert.equal(resumed.url, "/v1/tickets/duel.t-1/events", "Last-Event-ID alone says where to resume");
    assert.equal(resumed.headers.accept, "text/event-stream");
    assert.equal(resumed.headers.authorization, "Bearer tok");
    assert.equal(slept.length, 1, "one short pause before resuming");
    assert.deepEqual(connects, [
      { transport: "sse", url: `${a.url}/v1/tickets/duel.t-1/events?after=0` },
      { transport: "sse", url: `${b.url}/v1/tickets/duel.t-1/events`, lastEventId: "2" },
    ]);
  });

  test("a stream gone quiet (no ping within streamIdleTimeoutMs) is taken as lost", async () => {
    const a = await local((_req, res) => {
      openStream(res);
      res.write(sseEvent("ticket", 4, ticket(4, "matched")));
      // and then nothing, not even a ping
    });
    const b = await local((req, res) => {
      openStream(res);
      res.end(sseEvent("ticket", 5, ticket(5, "cancelled")));
      void req;
    });
    const client = new QuickmatchClient({ baseUrls: [a.url, b.url], streamIdleTimeoutMs: 200, sleep: instantSleep([]) });
    const started = Date.now();
    const seen = await collect(client.watchTicket("duel.t-1", { after: 3, transport: "sse" }));
    assert.deepEqual(seen.map((t) => t.version), [4, 5]);
    assert.equal(a.requests[0]!.url, "/v1/tickets/duel.t-1/events?after=3");
    assert.equal(b.requests[0]!.headers["last-event-id"], "4");
    assert.ok(Date.now() - started >= 190);
  });

  test("a stream that ends before the final version resumes; 503 with Retry-After is honoured", async () => {
    let n = 0;
    const srv = await local((_req, res) => {
      n++;
      if (n === 1) {
        openStream(res);
        res.end(sseEvent("ticket", 1, ticket(1, "searching"))); // shutting down
      } else if (n === 2) problem(res, 503, "unavailable", { "Retry-After": "4" });
      else {
        openStream(res);
        res.end(": ping\n\n" + sseEvent("ticket", 2, ticket(2, "expired")));
      }
    });
    const slept: number[] = [];
    const client = new QuickmatchClient({ baseUrls: srv.url, sleep: instantSleep(slept), random: () => 0 });
    const seen = await collect(client.watchTicket("duel.t-1"));
    assert.deepEqual(seen.map((t) => t.status), ["searching", "expired"]);
    assert.deepEqual(slept, [125, 4000]);
    assert.deepEqual(srv.requests.map((r) => r.headers["last-event-id"]), [undefined, "1", "1"]);
  });

  test("a 404 or 403 is not retried", async () => {
    const srv = await local((_req, res) => problem(res, 404, "not_found"));
    const client = new QuickmatchClient({ baseUrls: srv.url, sleep: instantSleep([]) });
    const err = await collect(client.watchTicket("duel.nope", { transport: "sse" })).catch((e: unknown) => e);
    assert.ok(err instanceof QuickmatchError && err.code === "not_found", String(err));
    assert.equal(srv.requests.length, 1);
  });

  test("an answer that is not an event stream fails an sse watch", async () => {
    const srv = await local((_req, res) => json(res, 200, ticket(1, "searching")));
    const client = new QuickmatchClient({ baseUrls: srv.url });
    const err = await collect(client.watchTicket("duel.t-1", { transport: "sse" })).catch((e: unknown) => e);
    assert.ok(err instanceof StreamError, String(err));
  });

  test("auto falls back to long-polls when the server has no stream route", async () => {
    const answers = [ticket(1, "searching"), ticket(1, "searching"), ticket(3, "failed", { reason: "no_server_capacity" })];
    const srv = await local((req, res) => {
      if (req.url.includes("/events")) return problem(res, 404, "not_found");
      json(res, 200, answers.shift());
    });
    const connects: string[] = [];
    const client = new QuickmatchClient({ baseUrls: srv.url, onConnect: (c) => connects.push(c.transport) });
    const seen = await collect(client.watchTicket("duel.t-1"));
    assert.deepEqual(
      seen.map((t) => [t.version, t.status, t.reason]),
      [
        [1, "searching", ""],
        [3, "failed", "no_server_capacity"],
      ],
    );
    assert.deepEqual(connects, ["sse", "poll", "poll", "poll"]);
    assert.deepEqual(
      srv.requests.map((r) => r.url),
      [
        "/v1/tickets/duel.t-1/events?after=0",
        "/v1/tickets/duel.t-1?wait=30000ms&after=0",
        "/v1/tickets/duel.t-1?wait=30000ms&after=1", // answered unchanged: the wait ended
        "/v1/tickets/duel.t-1?wait=30000ms&after=1",
      ],
    );
  });

  test("waitTicket answers the first version that is that far", async () => {
    const srv = await local((_req, res) => {
      openStream(res);
      res.write(sseEvent("ticket", 1, ticket(1, "searching")));
      res.write(sseEvent("ticket", 2, ticket(2, "matched")));
      // the stream stays open: waitTicket closes it
    });
    const client = new QuickmatchClient({ baseUrls: srv.url });
    const t = await client.waitTicket("duel.t-1", { until: "matched" });
    assert.equal(t.status, "matched");
  });
});

describe("watchAllocations", () => {
  test("events of type allocations; leaving the loop closes the stream", async () => {
    let closed!: () => void;
    const gone = new Promise<void>((r) => (closed = r));
    const srv = await local((req, res, raw) => {
      assert.equal(req.url, "/v1/servers/gs-1/allocations/events?after=0");
      openStream(res);
      res.write(sseEvent("ticket", 9, { ignored: true }));
      res.write(sseEvent("allocations", 1, { server_id: "gs-1", version: 1, allocations: [] }));
      res.write(
        sseEvent("allocations", 2, {
          server_id: "gs-1",
          version: 2,
          allocations: [{ match_id: "duel.m-1", queue: "duel", region: "eu-west", teams: [["p-1"], ["p-2"]], players: [], ticket_ids: [], allocated_at: "2026-01-01T00:00:00Z" }],
        }),
      );
      raw.socket.on("close", () => closed());
    });
    const client = new QuickmatchClient({ baseUrls: srv.url });
    const versions: number[] = [];
    for await (const a of client.watchAllocations("gs-1")) {
      versions.push(a.version);
      if (a.allocations.length > 0) {
        assert.equal(a.allocations[0]!.match_id, "duel.m-1");
        break;
      }
    }
    assert.deepEqual(versions, [1, 2]);
    await gone;
  });

  test("an abort ends the watch with the signal's reason", async () => {
    const srv = await local((_req, res) => openStream(res));
    const client = new QuickmatchClient({ baseUrls: srv.url });
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(new Error("shutting down")), 50);
    const err = await collect(client.watchAllocations("gs-1", { signal: ctl.signal })).catch((e: unknown) => e);
    assert.ok(err instanceof Error && err.message === "shutting down", String(err));
  });
});

describe("startHeartbeat", () => {
  test("registers, heartbeats every third of the time to live, reports failures and goes on, stops", async () => {
    const date = new Date(Math.floor(Date.now() / 1000) * 1000);
    let n = 0;
    const srv = await local((req, res) => {
      n++;
      if (n === 3) return problem(res, 400, "bad_request");
      json(
        res,
        200,
        {
          id: "gs-1",
          ...JSON.parse(req.body),
          allocated: 0,
          draining: false,
          expires_at: new Date(date.getTime() + 15_000).toISOString(),
          version: n,
        },
        { Date: date.toUTCString() },
      );
    });
    const clock = new FakeClock();
    const errors: unknown[] = [];
    const beats: number[] = [];
    const client = new QuickmatchClient({ baseUrls: srv.url, token: () => "gs", sleep: clock.sleep });
    const hb = await client.startHeartbeat(
      "gs-1",
      { address: "10.0.0.7:7777", region: "eu-west", capacity: 4 },
      { onError: (e) => errors.push(e), onBeat: (s) => beats.push(s.version) },
    );
    assert.equal(hb.server.version, 1);
    // next() waits for the loop's next pause and ends it: by then the beat
    // before that pause is done, and the one after it is under way.
    assert.equal(await clock.next(), 5000, "a third of the 15 s the server gives"); // beat 2
    assert.equal(await clock.next(), 5000); // beat 3, refused
    assert.deepEqual(beats, [2]);
    assert.equal(hb.server.version, 2);
    while (clock.pending === 0) await tick();
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof QuickmatchError && errors[0].code === "bad_request");
    assert.equal(hb.server.version, 2);
    assert.equal(await clock.next(), 5000); // beat 4: the loop goes on
    while (clock.pending === 0) await tick();
    assert.deepEqual(beats, [2, 4]);
    await hb.stop();
    assert.equal(clock.pending, 0);
    assert.equal(srv.requests.length, 4);
    for (const r of srv.requests) {
      assert.equal(r.method, "PUT");
      assert.equal(r.url, "/v1/servers/gs-1");
      assert.deepEqual(JSON.parse(r.body), { address: "10.0.0.7:7777", region: "eu-west", capacity: 4 });
    }
  });
});
