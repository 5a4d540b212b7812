// The match lifecycle against the real embedded matchmaker: a queue that
// asks its players to accept their match (accept_timeout), and a running
// match that asks for a player to fill a seat (backfill).

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { QuickmatchClient, QuickmatchError, isAsked } from "@quickmatch/client";

import { startMatchmaker, type Matchmaker } from "./helpers.js";

let mm: Matchmaker;
let dir: string;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), "qm-accept-"));
  const queues = join(dir, "queues.yaml");
  writeFileSync(queues, "queues:\n  - name: tour\n    accept_timeout: 10s\n    max_wait: 30s\n  - name: fill\n    max_wait: 30s\n");
  mm = await startMatchmaker({ MM_QUEUES_FILE: queues });
});
after(async () => {
  await mm?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function player(id: string) {
  return new QuickmatchClient({ baseUrls: mm.url, token: () => mm.token({ sub: id, role: "player" }) });
}

describe("the match lifecycle against the embedded matchmaker", { timeout: 60_000 }, () => {
  test("waitTicket stops at the match offered; both accept and are assigned; a decline sends the other back", async () => {
    const gs = new QuickmatchClient({ baseUrls: mm.url, token: () => mm.token({ sub: "gs-t", role: "server" }) });
    await gs.registerServer("gs-t", { address: "10.0.0.7:7777", region: "eu-west", capacity: 4 });
    const queue = (c: QuickmatchClient, id: string) => c.createTicket({ queue: "tour", players: [{ id, skill: 1500 }] });

    const [pa, pb] = [player("t-a"), player("t-b")];
    const [a, b] = [await queue(pa, "t-a"), await queue(pb, "t-b")];
    const [oa, ob] = await Promise.all([pa.waitTicket(a.id), pb.waitTicket(b.id)]);
    assert.ok(isAsked(oa) && isAsked(ob), `offered ${oa.status} and ${ob.status}`);
    assert.equal(oa.match?.id, ob.match?.id);
    assert.ok(oa.acceptance && Date.parse(oa.acceptance.deadline) > Date.now());

    const first = await pa.acceptMatch(a.id, true);
    assert.equal(first.status, "pending_acceptance");
    assert.equal(first.acceptance?.accepted, true);
    assert.equal(isAsked(first), false);
    assert.equal((await pb.acceptMatch(b.id, true)).status, "matched");
    const done = await pa.waitTicket(a.id);
    assert.equal(done.status, "assigned");
    assert.equal(done.assignment?.server_id, "gs-t");

    const [pc, pd] = [player("t-c"), player("t-d")];
    const [c, d] = [await queue(pc, "t-c"), await queue(pd, "t-d")];
    await Promise.all([pc.waitTicket(c.id), pd.waitTicket(d.id)]);
    const declined = await pc.acceptMatch(c.id, false);
    assert.equal(declined.status, "cancelled");
    assert.equal(declined.reason, "declined");
    const back = await pd.getTicket(d.id);
    assert.equal(back.status, "searching");
    assert.equal(back.created_at, d.created_at, "the other keeps its wait");
    const late = await pd.acceptMatch(d.id, true).catch((e: unknown) => e);
    assert.ok(late instanceof QuickmatchError && late.status === 409, String(late));
    await pd.cancelTicket(d.id);
  });

  test("a running match asks for a seat and the next player is seated in it", async () => {
    const gs = new QuickmatchClient({ baseUrls: mm.url, token: () => mm.token({ sub: "gs-f", role: "server" }) });
    // More free slots than gs-t of the test before: the match goes here.
    await gs.registerServer("gs-f", { address: "10.0.0.8:7777", region: "eu-west", capacity: 10 });
    const queue = (c: QuickmatchClient, id: string) => c.createTicket({ queue: "fill", players: [{ id, skill: 1500 }] });
    const [pa, pb] = [player("f-a"), player("f-b")];
    const a = await queue(pa, "f-a");
    await queue(pb, "f-b");
    const assigned = await pa.waitTicket(a.id);
    assert.equal(assigned.status, "assigned");
    assert.equal(assigned.assignment?.server_id, "gs-f");
    const matchId = assigned.match!.id;

    const req = await gs.requestBackfill("gs-f", matchId, [1, 0]);
    assert.deepEqual(req.open, [1, 0]);
    assert.equal(req.match_id, matchId);
    const bad = await gs.requestBackfill("gs-f", matchId, [1]).catch((e: unknown) => e);
    assert.ok(bad instanceof QuickmatchError && bad.status === 400, String(bad));

    const pc = player("f-c");
    const c = await queue(pc, "f-c");
    const seated = await pc.waitTicket(c.id);
    assert.equal(seated.status, "assigned");
    assert.equal(seated.match?.id, matchId);
    assert.equal(seated.assignment?.server_id, "gs-f");
    const allocs = await gs.getAllocations("gs-f");
    assert.ok(allocs.allocations[0]?.ticket_ids.includes(c.id), JSON.stringify(allocs));
    await gs.endMatch("gs-f", matchId);
  });
});
