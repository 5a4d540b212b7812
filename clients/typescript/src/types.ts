// The API's types, all taken from the OpenAPI document (contracts/openapi.yaml
// of the repository), which `npm run generate` turns into generated/openapi.ts
// with openapi-typescript at a pinned version. Nothing here is written by
// hand but the names: a change to the document changes these types, and the
// assertions at the end make the build fail when an operation no longer
// takes or answers what the client sends or reads.

import type { components, operations, paths } from "./generated/openapi.js";

export type { components, operations, paths };

type Schemas = components["schemas"];

/** A party's place in a queue; `version` goes up by one on every change. */
export type Ticket = Schemas["Ticket"];
/** The body of POST /v1/tickets. */
export type TicketRequest = Schemas["TicketRequest"];
/** searching → (pending_acceptance →) matched → assigned, or cancelled, expired, failed. */
export type TicketStatus = Schemas["Status"];
export type Player = Schemas["Player"];
/** Round trip to each region in milliseconds. */
export type Latencies = Schemas["Latencies"];
export type Attributes = Schemas["Attributes"];
export type Teams = Schemas["Teams"];
/** The match a ticket is in, from matched on. */
export type MatchRef = Schemas["MatchRef"];
/** While pending_acceptance: the match's deadline, and whether this ticket accepted. */
export type Acceptance = Schemas["Acceptance"];
/** The body of POST /v1/tickets/{id}/accept. */
export type AcceptRequest = Schemas["AcceptRequest"];
/** Where the players connect, once assigned. */
export type Assignment = Schemas["Assignment"];
/** The body of PUT /v1/servers/{id}. */
export type ServerRequest = Schemas["ServerRequest"];
/** A game server as the matchmaker knows it. */
export type Server = Schemas["Server"];
/** The matches a server hosts; `version` goes up when one is placed or ended. */
export type Allocations = Schemas["Allocations"];
/** One match placed on a server. */
export type Allocation = Schemas["Allocation"];
/** The body of POST /v1/servers/{id}/matches/{match_id}/backfill. */
export type BackfillRequest = Schemas["BackfillRequest"];
/** A running match's request for players, as recorded. */
export type Backfill = Schemas["Backfill"];
/** An RFC 9457 problem detail, the body of every error. */
export type Problem = Schemas["Problem"];
/** The stable error codes, for programs. */
export type ProblemCode = Problem["code"];
/** How far a long-poll waits: `matched` (or further) or `assigned` (or any end). */
export type Until = NonNullable<NonNullable<operations["getTicket"]["parameters"]["query"]>["until"]>;

/** The statuses after which a ticket never changes again. */
export const TERMINAL_STATUSES = Object.freeze([
  "assigned",
  "cancelled",
  "expired",
  "failed",
] as const satisfies readonly TicketStatus[]);

/** Reports whether a ticket's status is final. */
export function isTerminal(status: TicketStatus): boolean {
  return (TERMINAL_STATUSES as readonly string[]).includes(status);
}

/**
 * Reports whether a ticket is offered a match that waits for its player's
 * answer (pending_acceptance, not yet accepted): answer it with
 * `acceptMatch`.
 */
export function isAsked(ticket: Ticket): boolean {
  return ticket.status === "pending_acceptance" && ticket.acceptance?.accepted !== true;
}

// ---- What the client sends and reads, checked against the document. ----

type Json<R> = R extends { content: { "application/json": infer B } } ? B : never;

/** The routes the client calls, each a path of the document. */
export const ROUTES = {
  tickets: "/v1/tickets",
  ticket: "/v1/tickets/{id}",
  accept: "/v1/tickets/{id}/accept",
  server: "/v1/servers/{id}",
  allocations: "/v1/servers/{id}/allocations",
  match: "/v1/servers/{id}/matches/{match_id}",
  backfill: "/v1/servers/{id}/matches/{match_id}/backfill",
} as const satisfies Record<string, keyof paths>;

/**
 * The streams (Server-Sent Events). Their data is the JSON of what the
 * long-poll of the same record answers: a Ticket, or Allocations.
 */
export const STREAM_ROUTES = {
  ticket: "/v1/tickets/{id}/events",
  allocations: "/v1/servers/{id}/allocations/events",
} as const satisfies Record<string, keyof paths>;

type StreamParams<Op extends "streamTicket" | "streamAllocations"> = operations[Op]["parameters"];
/** The header a resuming stream sends. */
export const LAST_EVENT_ID = "Last-Event-ID" satisfies keyof NonNullable<StreamParams<"streamTicket">["header"]> &
  keyof NonNullable<StreamParams<"streamAllocations">["header"]>;
/** Where a new stream starts. */
export const STREAM_AFTER = "after" satisfies keyof NonNullable<StreamParams<"streamTicket">["query"]> &
  keyof NonNullable<StreamParams<"streamAllocations">["query"]>;

/** The header that makes a create safe to retry. */
export const IDEMPOTENCY_KEY = "Idempotency-Key" satisfies keyof NonNullable<
  operations["createTicket"]["parameters"]["header"]
>;

type PollQuery = keyof NonNullable<operations["getTicket"]["parameters"]["query"]> &
  keyof NonNullable<operations["getAllocations"]["parameters"]["query"]>;
/** The long-poll parameters, as the document names them. */
export const POLL_PARAMS = {
  wait: "wait",
  after: "after",
} as const satisfies Record<string, PollQuery>;
export const UNTIL_PARAM = "until" satisfies keyof NonNullable<operations["getTicket"]["parameters"]["query"]>;

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Assert<T extends true> = T;

// Each operation takes and answers the schema the client's methods name.
export type _Checks = [
  Assert<Equal<NonNullable<operations["createTicket"]["requestBody"]>["content"]["application/json"], TicketRequest>>,
  Assert<Equal<Json<operations["createTicket"]["responses"][201]>, Ticket>>,
  Assert<Equal<Json<operations["getTicket"]["responses"][200]>, Ticket>>,
  Assert<Equal<Json<operations["cancelTicket"]["responses"][200]>, Ticket>>,
  Assert<Equal<NonNullable<operations["acceptMatch"]["requestBody"]>["content"]["application/json"], AcceptRequest>>,
  Assert<Equal<Json<operations["acceptMatch"]["responses"][200]>, Ticket>>,
  Assert<Equal<NonNullable<operations["requestBackfill"]["requestBody"]>["content"]["application/json"], BackfillRequest>>,
  Assert<Equal<Json<operations["requestBackfill"]["responses"][202]>, Backfill>>,
  Assert<Equal<NonNullable<operations["registerServer"]["requestBody"]>["content"]["application/json"], ServerRequest>>,
  Assert<Equal<Json<operations["registerServer"]["responses"][200]>, Server>>,
  Assert<Equal<Json<operations["getServer"]["responses"][200]>, Server>>,
  Assert<Equal<Json<operations["drainServer"]["responses"][200]>, Server>>,
  Assert<Equal<Json<operations["getAllocations"]["responses"][200]>, Allocations>>,
  Assert<Equal<NonNullable<operations["endMatch"]["responses"][204]["content"]>, never>>,
  Assert<Equal<operations["createTicket"]["responses"][409]["content"]["application/problem+json"], Problem>>,
  Assert<Equal<operations["getTicket"]["responses"][503]["content"]["application/problem+json"], Problem>>,
  Assert<Equal<keyof operations["streamTicket"]["responses"][200]["content"], "text/event-stream">>,
  Assert<Equal<keyof operations["streamAllocations"]["responses"][200]["content"], "text/event-stream">>,
  Assert<Equal<operations["streamTicket"]["responses"][503]["content"]["application/problem+json"], Problem>>,
];
