import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { EventStreamParser, readEventStream, type ServerSentEvent } from "@quickmatch/client";

interface Parsed {
  events: ServerSentEvent[];
  comments: string[];
  retries: number[];
}

function parse(pieces: readonly string[], end = true): Parsed {
  const out: Parsed = { events: [], comments: [], retries: [] };
  const p = new EventStreamParser({
    event: (e) => out.events.push(e),
    comment: (c) => out.comments.push(c),
    retry: (ms) => out.retries.push(ms),
  });
  for (const piece of pieces) p.feed(piece);
  if (end) p.end();
  return out;
}

/** Every way of cutting `text` in two, and in three. */
function* cuts(text: string): Generator<string[]> {
  for (let i = 0; i <= text.length; i++) {
    yield [text.slice(0, i), text.slice(i)];
    for (let j = i; j <= text.length; j++) yield [text.slice(0, i), text.slice(i, j), text.slice(j)];
  }
}

const ev = (type: string, data: string, lastEventId = ""): ServerSentEvent => ({ type, data, lastEventId });

describe("EventStreamParser", () => {
  test("an event of the matchmaker: id, event, data", () => {
    const { events } = parse(['id: 3\nevent: ticket\ndata: {"version":3}\n\n']);
    assert.deepEqual(events, [ev("ticket", '{"version":3}', "3")]);
  });

  test("data over several lines is joined with newlines", () => {
    const { events } = parse(["data: first\ndata:second\ndata:  third\ndata\ndata:\n\n"]);
    // one leading space is dropped, not two; a bare "data" is an empty line
    assert.deepEqual(events, [ev("message", "first\nsecond\n third\n\n")]);
  });

  test("comments are not events, and are reported", () => {
    const { events, comments } = parse([": ping\n\n:no space\ndata: x\n: between\n\n"]);
    assert.deepEqual(events, [ev("message", "x")]);
    assert.deepEqual(comments, ["ping", "no space", "between"]);
  });

  test("LF, CRLF and CR end lines alike", () => {
    const body = (nl: string) => `id: 1${nl}event: ticket${nl}data: a${nl}data: b${nl}${nl}: ping${nl}${nl}data: c${nl}${nl}`;
    const want = parse([body("\n")]);
    assert.deepEqual(want.events, [ev("ticket", "a\nb", "1"), ev("message", "c", "1")]);
    assert.deepEqual(parse([body("\r\n")]), want);
    assert.deepEqual(parse([body("\r")]), want);
    assert.deepEqual(parse(["id: 1\r\nevent: ticket\rdata: a\ndata: b\r\n\r: ping\n\r\ndata: c\r\r"]), want);
  });

  test("a stream cut anywhere, in two or three pieces, parses the same", () => {
    const text =
      '\ufeffid: 7\r\nevent: ticket\r\ndata: {"a":1}\r\ndata: {"b":2}\r\n\r\n: ping\r\n\r\nretry: 1500\nid: 8\revent: allocations\rdata: x\r\r';
    const want = parse([text]);
    assert.deepEqual(want.events, [ev("ticket", '{"a":1}\n{"b":2}', "7"), ev("allocations", "x", "8")]);
    assert.deepEqual(want.comments, ["ping"]);
    assert.deepEqual(want.retries, [1500]);
    let n = 0;
    for (const pieces of cuts(text)) {
      assert.deepEqual(parse(pieces), want, JSON.stringify(pieces));
      n++;
    }
    assert.ok(n > 1000);
    assert.deepEqual(parse([...text]), want, "one character at a time");
  });

  test("a CR at the end of a piece and an LF at the start of the next are one line end", () => {
    const { events } = parse(["data: a\r", "\ndata: b\r", "\n\r", "\n"]);
    assert.deepEqual(events, [ev("message", "a\nb")]);
  });

  test("the last event ID carries over to later events; an id with NUL is ignored", () => {
    const { events } = parse(["id: 1\ndata: a\n\ndata: b\n\nid: 2\u0000x\ndata: c\n\nid\ndata: d\n\n"]);
    assert.deepEqual(events, [ev("message", "a", "1"), ev("message", "b", "1"), ev("message", "c", "1"), ev("message", "d", "")]);
  });

  test("a block without data dispatches nothing, and its event type does not leak", () => {
    const { events } = parse(["event: ticket\nid: 4\n\ndata: x\n\n"]);
    assert.deepEqual(events, [ev("message", "x", "4")]);
  });

  test("an event not ended by a blank line is dropped at the end of the stream", () => {
    const p: ServerSentEvent[] = [];
    const parser = new EventStreamParser({ event: (e) => p.push(e) });
    parser.feed("id: 1\ndata: whole\n\nid: 2\ndata: cut in the midd");
    parser.end();
    assert.deepEqual(p, [ev("message", "whole", "1")]);
    assert.equal(parser.lastEventId, "2");
  });

  test("retry takes digits only; unknown fields are ignored", () => {
    const { events, retries } = parse(["retry: 10s\nretry: 250\nfoo: bar\nretry\ndata: x\n\n"]);
    assert.deepEqual(retries, [250]);
    assert.deepEqual(events, [ev("message", "x")]);
  });

  test("a field name with no colon, a colon in the value", () => {
    const { events } = parse(["event:a:b\ndata:http://x\n\n"]);
    assert.deepEqual(events, [ev("a:b", "http://x")]);
  });
});

describe("readEventStream", () => {
  function body(chunks: Uint8Array[]): ReadableStream<Uint8Array> {
    return new ReadableStream({
      start(c) {
        for (const x of chunks) c.enqueue(x);
        c.close();
      },
    });
  }

  async function read(chunks: Uint8Array[]): Promise<ServerSentEvent[]> {
    const out: ServerSentEvent[] = [];
    for await (const e of readEventStream(body(chunks))) out.push(e);
    return out;
  }

  test("bytes cut inside a character, a CRLF or a field still decode", async () => {
    const bytes = new TextEncoder().encode('id: 9\r\nevent: ticket\r\ndata: {"name":"Zoë 🎮"}\r\n\r\n');
    const want = [ev("ticket", '{"name":"Zoë 🎮"}', "9")];
    for (let i = 0; i <= bytes.length; i++) {
      assert.deepEqual(await read([bytes.slice(0, i), bytes.slice(i)]), want, `cut at ${i}`);
    }
    assert.deepEqual(await read(Array.from(bytes, (b) => Uint8Array.of(b))), want, "one byte at a time");
  });

  test("tells of every chunk, comments included, and stops early on demand", async () => {
    let chunks = 0;
    const enc = new TextEncoder();
    let cancelled = false;
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(enc.encode(": ping\n\n"));
        c.enqueue(enc.encode("data: 1\n\ndata: 2\n\n"));
      },
      cancel() {
        cancelled = true;
      },
    });
    const got: string[] = [];
    for await (const e of readEventStream(stream, () => chunks++)) {
      got.push(e.data);
      break;
    }
    assert.deepEqual(got, ["1"]);
    assert.equal(chunks, 2);
    assert.ok(cancelled, "leaving the loop cancels the body");
  });
});
