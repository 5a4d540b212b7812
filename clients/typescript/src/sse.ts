// A parser of the text/event-stream format (HTML Living Standard, "Server-sent
// events", the interpretation of an event stream). Browsers' EventSource
// cannot send an Authorization header, so the client reads streams over
// fetch and parses them here.

/** One dispatched event. */
export interface ServerSentEvent {
  /** The `event` field, or "message" when the event had none. */
  type: string;
  /** The `data` fields, joined with "\n". */
  data: string;
  /**
   * The stream's last event ID when the event was dispatched: the `id` of
   * this event or of an earlier one ("" when none came yet).
   */
  lastEventId: string;
}

/** What a parser reports, besides events. */
export interface EventStreamHandlers {
  /** A complete event. */
  event(event: ServerSentEvent): void;
  /** A comment line (`: ping`), without the colon and one leading space. */
  comment?(text: string): void;
  /** A `retry` field: the reconnection time the server asks for, in ms. */
  retry?(ms: number): void;
}

const LF = 0x0a;
const CR = 0x0d;

/**
 * Parses an event stream given as text in pieces of any size: a line, a
 * CRLF or a multi-byte character may be split anywhere between two calls of
 * {@link EventStreamParser.feed} (decode bytes with a streaming TextDecoder,
 * as {@link readEventStream} does).
 */
export class EventStreamParser {
  readonly #on: EventStreamHandlers;
  #line = ""; // the start of a line whose end has not come yet
  #afterCR = false; // the last piece ended with CR: a leading LF ends nothing
  #started = false; // past the first character (a BOM there is skipped)
  #data = "";
  #type = "";
  #lastId = "";

  constructor(handlers: EventStreamHandlers) {
    this.#on = handlers;
  }

  /** The last event ID seen so far (what a reconnect sends as Last-Event-ID). */
  get lastEventId(): string {
    return this.#lastId;
  }

  /** Parses the next piece of the stream. */
  feed(text: string): void {
    let i = 0;
    if (!this.#started && text.length > 0) {
      this.#started = true;
      if (text.charCodeAt(0) === 0xfeff) i = 1;
    }
    if (this.#afterCR && i < text.length) {
      this.#afterCR = false;
      if (text.charCodeAt(i) === LF) i++;
    }
    let start = i;
    for (; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c !== LF && c !== CR) continue;
      const line = this.#line + text.slice(start, i);
      this.#line = "";
      if (c === CR) {
        if (i + 1 === text.length) this.#afterCR = true;
        else if (text.charCodeAt(i + 1) === LF) i++;
      }
      start = i + 1;
      this.#process(line);
    }
    this.#line += text.slice(start);
  }

  /**
   * Ends the stream. An event not yet ended by a blank line is dropped, as
   * the standard says: a stream cut in the middle of an event loses it, and
   * a reconnect from the last event ID gets it again.
   */
  end(): void {
    this.#line = "";
    this.#data = "";
    this.#type = "";
    this.#afterCR = false;
  }

  #process(line: string): void {
    if (line === "") {
      this.#dispatch();
      return;
    }
    if (line.charCodeAt(0) === 0x3a /* : */) {
      this.#on.comment?.(line.startsWith(": ") ? line.slice(2) : line.slice(1));
      return;
    }
    const colon = line.indexOf(":");
    let field = line;
    let value = "";
    if (colon >= 0) {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
    }
    switch (field) {
      case "event":
        this.#type = value;
        break;
      case "data":
        this.#data += value + "\n";
        break;
      case "id":
        if (!value.includes("\0")) this.#lastId = value;
        break;
      case "retry":
        if (/^[0-9]+$/.test(value)) this.#on.retry?.(Number(value));
        break;
      default:
      // Other fields are ignored.
    }
  }

  #dispatch(): void {
    if (this.#data === "") {
      this.#type = "";
      return;
    }
    const event: ServerSentEvent = {
      type: this.#type === "" ? "message" : this.#type,
      data: this.#data.endsWith("\n") ? this.#data.slice(0, -1) : this.#data,
      lastEventId: this.#lastId,
    };
    this.#data = "";
    this.#type = "";
    this.#on.event(event);
  }
}

/**
 * Reads the events of a text/event-stream body (a fetch Response's `body`)
 * until it ends. `onChunk` is told of every piece that arrives, comments
 * included, which is how a reader notices a stream that has gone quiet.
 * Leaving the loop early cancels the body.
 */
export async function* readEventStream(
  body: ReadableStream<Uint8Array>,
  onChunk?: () => void,
): AsyncGenerator<ServerSentEvent, void, undefined> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const events: ServerSentEvent[] = [];
  const parser = new EventStreamParser({ event: (e) => events.push(e) });
  let finished = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        parser.feed(decoder.decode());
        parser.end();
        finished = true;
        return;
      }
      onChunk?.();
      parser.feed(decoder.decode(value, { stream: true }));
      while (events.length > 0) yield events.shift() as ServerSentEvent;
    }
  } finally {
    if (!finished) {
      // Cancel the body (and so the connection); a reader in error rejects, which does not matter here.
      reader.cancel().catch(() => {});
    }
    reader.releaseLock();
  }
}
