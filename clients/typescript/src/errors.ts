import type { Problem, ProblemCode } from "./types.js";

/**
 * The matchmaker answered with an error: an RFC 9457 problem detail whose
 * `code` is stable (`player_has_ticket`, `rate_limited`, `unavailable`, …).
 * An answer that is not a problem detail (a proxy's 502 page) has the code
 * `unknown`.
 */
export class QuickmatchError extends Error {
  override readonly name = "QuickmatchError";
  /** The HTTP status. */
  readonly status: number;
  /** The problem's stable code, for programs. */
  readonly code: ProblemCode | "unknown";
  /** The problem detail as answered, when the body was one. */
  readonly problem: Problem | undefined;
  /** The pause the answer's Retry-After asked for, in milliseconds. */
  readonly retryAfterMs: number | undefined;
  /** On `player_has_ticket`, the caller's live ticket (only told to that player). */
  readonly ticketId: string | undefined;
  /** The request, as "METHOD url". */
  readonly request: string;

  constructor(init: {
    status: number;
    problem: Problem | undefined;
    retryAfterMs: number | undefined;
    request: string;
  }) {
    const p = init.problem;
    super(
      p
        ? `${init.request}: ${init.status} ${p.code}${p.detail ? `: ${p.detail}` : ""}`
        : `${init.request}: HTTP ${init.status}`,
    );
    this.status = init.status;
    this.code = p?.code ?? "unknown";
    this.problem = p;
    this.retryAfterMs = init.retryAfterMs;
    this.ticketId = p?.ticket_id;
    this.request = init.request;
  }
}

/**
 * No answer came: every try of a call, across every base URL, failed to
 * connect, was cut or timed out. `cause` is the last failure.
 */
export class ConnectionError extends Error {
  override readonly name = "ConnectionError";
  constructor(message: string, options: { cause: unknown }) {
    super(message, options);
  }
}

/** A stream answered something that is not a well-formed event stream. */
export class StreamError extends Error {
  override readonly name = "StreamError";
}
