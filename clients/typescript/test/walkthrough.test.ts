// Against the real embedded matchmaker (QM_MATCHMAKER_BIN, or built with go
// build), with auth on: every call carries an HS256 token minted here.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  QuickmatchClient,
  QuickmatchError,
  type Allocations,
  type ConnectInfo,
  type Ticket,
} from "@quickmatch/client";

import { serve, startMatchmaker, type LocalServer, type Matchmaker } from "./helpers.js";

let mm: Matchmaker;
before(async () => {
  mm = await startMatchmaker();
});
after(async () => {
  await mm?.stop();
});

function player(id: string, extra: { baseUrls?: string[]; onConnect?: (c: ConnectInfo) => void } = {}) {
  return new QuickmatchClient({
    baseUrls: extra.baseUrls ?? mm.url,
    token: () => mm.token({ sub: id, role: "player" }),
    onConnect: extra.onConnect,
  });
}

function gameServer(id: string) {
  return new QuickmatchClient({ baseUrls: mm.url, token: () => mm.token({ sub: id, role: "server" }) });
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

function increasing(versions: number[]): void {
  for (let i = 1; i < versions.length; i++) {
    assert.ok(versions[i]! > versions[i - 1]!, `versions ${versions.join(", ")} are not strictly increasing`);
  }
}

describe("against the embedded matchmaker", { timeout: 60_000 }, () => {
  test("walk-through: a server registers, two players queue, both see assigned on a stream, the server ends the match", async () => {
    const gs = gameServer("gs-1");
    const heartbeat = await gs.startHeartbeat("gs-1", { address: "10.0.0.7:7777", region: "eu-west", capacity: 4 });
    assert.equal(heartbeat.server.id, "gs-1");
    assert.equal(heartbeat.server.draining, false);

    // The server watches its allocations on a stream of its own.
    const allocConnects: ConnectInfo[] = [];
    const watcher = new QuickmatchClient({
      baseUrls: mm.url,
      token: () => mm.token({ sub: "gs-1", role: "server" }),
      onConnect: (c) => allocConnects.push(c),
    });
    const placed = (async (): Promise<Allocations> => {
      for await (const a of watcher.watchAllocations("gs-1", { transport: "sse" })) {
        if (a.allocations.length > 0) return a;
      }
      throw new Error("the allocations watch ended");
    })();

    const connects: ConnectInfo[] = [];
    const p1 = player("p-1", { onConnect: (c) => connects.push(c) });
    const p2 = player("p-2", { onConnect: (c) => connects.push(c) });
    const t1 = await p1.createTicket({ queue: "duel", players: [{ id: "p-1", skill: 1500 }], latencies: { "eu-west": 30 } });
    assert.equal(t1.status, "searching");
    assert.equal(t1.version, 1);
    const w1 = collect(p1.watchTicket(t1.id, { transport: "sse" }));
    const t2 = await p2.createTicket({ queue: "duel", players: [{ id: "p-2", skill: 1510 }], latencies: { "eu-west": 30 } });
    const w2 = collect(p2.watchTicket(t2.id, { transport: "sse" }));
    const [seen1, seen2] = await Promise.all([w1, w2]);

    for (const [seen, t] of [
      [seen1, t1],
      [seen2, t2],
    ] as const) {
      increasing(seen.map((x) => x.version));
      const last = seen[seen.length - 1] as Ticket;
      assert.equal(last.id, t.id);
      assert.equal(last.status, "assigned", JSON.stringify(seen));
      assert.deepEqual(last.assignment, { server_id: "gs-1", address: "10.0.0.7:7777", region: "eu-west" });
      assert.equal(last.match?.region, "eu-west");
    }
    const matchId = seen1[seen1.length - 1]!.match!.id;
    assert.equal(seen2[seen2.length - 1]!.match!.id, matchId, "one match for both");
    assert.ok(connects.length >= 2 && connects.every((c) => c.transport === "sse"), JSON.stringify(connects));

    const a = await placed;
    assert.equal(allocConnects[0]?.transport, "sse");
    assert.equal(a.allocations.length, 1);
    const alloc = a.allocations[0]!;
    assert.equal(alloc.match_id, matchId);
    assert.equal(alloc.queue, "duel");
    assert.deepEqual(new Set(alloc.ticket_ids), new Set([t1.id, t2.id]));
    assert.deepEqual(new Set(alloc.players.map((p) => p.id)), new Set(["p-1", "p-2"]));
    assert.equal((await gs.getServer("gs-1")).allocated, 1);

    await gs.endMatch("gs-1", matchId);
    const now = await gs.getAllocations("gs-1");
    assert.deepEqual(now.allocations, []);
    assert.ok(now.version > a.version);
    assert.equal((await gs.getServer("gs-1")).allocated, 0);
    // Ending it again: the match is gone.
    const again = await gs.endMatch("gs-1", matchId).catch((e: unknown) => e);
    assert.ok(again instanceof QuickmatchError && again.status === 404 && again.code === "not_found");

    const drained = await gs.drainServer("gs-1");
    assert.equal(drained.draining, true);
    await heartbeat.stop();
  });

  test("a stream cut by the first front resumes on the second from Last-Event-ID", async () => {
    const gs = gameServer("gs-2");
    const heartbeat = await gs.startHeartbeat("gs-2", { address: "10.0.0.8:7777", region: "eu-west", capacity: 1 });
    // The first "front" is a proxy to the matchmaker that cuts every stream
    // after its first event.
    const proxy: LocalServer = await serve(async (req, res) => {
      const headers: Record<string, string> = {};
      for (const h of ["authorization", "accept", "last-event-id", "content-type", "idempotency-key"]) {
        const v = req.headers[h];
        if (typeof v === "string") headers[h] = v;
      }
      const cut = new AbortController();
      const upstream = await fetch(mm.url + req.url, {
        method: req.method,
        headers,
        ...(req.body === "" ? {} : { body: req.body }),
        signal: cut.signal,
      });
      const type = upstream.headers.get("content-type") ?? "";
      res.writeHead(upstream.status, { "Content-Type": type });
      if (!type.startsWith("text/event-stream")) {
        res.end(await upstream.text());
        return;
      }
      res.flushHeaders();
      let text = "";
      const decoder = new TextDecoder();
      for await (const chunk of upstream.body as unknown as AsyncIterable<Uint8Array>) {
        text += decoder.decode(chunk, { stream: true });
        const end = text.indexOf("\n\n");
        if (end >= 0) {
          res.write(text.slice(0, end + 2));
          await new Promise((r) => setTimeout(r, 20));
          res.socket?.destroy();
          cut.abort();
          return;
        }
      }
      res.end();
    });
    try {
      let resumed!: () => void;
      const onSecond = new Promise<void>((r) => (resumed = r));
      const connects: ConnectInfo[] = [];
      const p3 = player("p-3", {
        baseUrls: [proxy.url, mm.url],
        onConnect: (c) => {
          connects.push(c);
          if (connects.length === 2) resumed();
        },
      });
      const t3 = await p3.createTicket({ queue: "duel", players: [{ id: "p-3", skill: 1400 }], latencies: { "eu-west": 20 } });
      const watch = collect(p3.watchTicket(t3.id, { transport: "sse" }));
      await onSecond;
      await player("p-4").createTicket({ queue: "duel", players: [{ id: "p-4", skill: 1410 }], latencies: { "eu-west": 25 } });
      const seen = await watch;
      const versions = seen.map((t) => t.version);
      assert.equal(versions[0], 1);
      increasing(versions);
      assert.equal(seen[seen.length - 1]!.status, "assigned");
      assert.equal(seen[seen.length - 1]!.assignment?.server_id, "gs-2");
      assert.equal(proxy.requests.filter((r) => r.url.includes("/events")).length, 1);
      assert.equal(connects[0]!.url, `${proxy.url}/v1/tickets/${encodeURIComponent(t3.id)}/events?after=0`);
      assert.equal(connects[1]!.url, `${mm.url}/v1/tickets/${encodeURIComponent(t3.id)}/events`);
      assert.equal(connects[1]!.lastEventId, "1");
    } finally {
      await proxy.close();
      await heartbeat.stop();
    }
  });

  test("idempotent creates, the busy player's ticket, cancel over long-polls, refused tokens", async () => {
    const p5 = player("p-5");
    const body = { queue: "duel", players: [{ id: "p-5", skill: 900 }], latencies: { "eu-west": 40 } };
    const key = "2f1d7a9e-3a51-4c1e-9a39-1f3b0e0c5d21";
    const first = await p5.createTicket(body, { idempotencyKey: key });
    const replay = await p5.createTicket(body, { idempotencyKey: key });
    assert.equal(replay.id, first.id, "a retry with the same key answers the first create's ticket");

    const busy = await p5.createTicket(body).catch((e: unknown) => e);
    assert.ok(busy instanceof QuickmatchError);
    assert.equal(busy.status, 409);
    assert.equal(busy.code, "player_has_ticket");
    assert.equal(busy.ticketId, first.id);

    // Wait for the cancel on long-polls, with the until parameter on one read.
    const watch = p5.watchTicket(first.id, { transport: "poll" });
    const v1 = await watch.next();
    assert.equal(v1.done, false);
    assert.equal(v1.value?.status, "searching");
    const polled = p5.getTicket(first.id, { waitMs: 10_000, after: 1, until: "assigned" });
    const cancelled = await p5.cancelTicket(first.id);
    assert.equal(cancelled.status, "cancelled");
    const v2 = await watch.next();
    assert.equal(v2.value?.status, "cancelled");
    assert.equal(v2.value?.version, cancelled.version);
    assert.equal((await watch.next()).done, true, "the watch ends after a terminal version");
    assert.equal((await polled).status, "cancelled");
    assert.equal((await p5.cancelTicket(first.id)).status, "cancelled", "cancelling again answers it unchanged");

    // Another player's ticket is not found, word for word as an unknown one.
    const stranger = await player("p-6").getTicket(first.id).catch((e: unknown) => e);
    assert.ok(stranger instanceof QuickmatchError && stranger.status === 404 && stranger.code === "not_found");

    const forged = new QuickmatchClient({ baseUrls: mm.url, token: "not-a-jwt" });
    const err401 = await forged.getTicket(first.id).catch((e: unknown) => e);
    assert.ok(err401 instanceof QuickmatchError && err401.status === 401 && err401.code === "invalid_token");

    const err403 = await p5.registerServer("gs-9", { address: "10.0.0.9:7777", region: "eu-west", capacity: 1 }).catch((e: unknown) => e);
    assert.ok(err403 instanceof QuickmatchError && err403.status === 403 && err403.code === "forbidden");

    const unknownQueue = await p5.createTicket({ ...body, queue: "nope" }).catch((e: unknown) => e);
    assert.ok(unknownQueue instanceof QuickmatchError && unknownQueue.code === "unknown_queue", String(unknownQueue));
  });
});
