package contracts

// ProblemContentType is the media type of every error body.
const ProblemContentType = "application/problem+json"

// Problem is an RFC 9457 problem details body. Code is stable and meant for
// programs; Title and Detail are for people.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	Code   string `json:"code"`
	// TicketID points at the player's live ticket on a 409 for a duplicate.
	TicketID string `json:"ticket_id,omitempty"`
}

// Problem codes.
const (
	CodeBadRequest      = "bad_request"
	CodeUnknownQueue    = "unknown_queue"
	CodeNotFound        = "not_found"
	CodePlayerHasTicket = "player_has_ticket"
	CodeTicketMatched   = "ticket_matched"
	CodeConflict        = "conflict"
	CodeBodyTooLarge    = "body_too_large"
	CodeUnsupportedType = "unsupported_media_type"
	// CodeIdempotencyMismatch: the request's Idempotency-Key was used
	// before for a request with other content.
	CodeIdempotencyMismatch = "idempotency_key_mismatch"
	// CodeInvalidToken: no token, or one that does not verify (401).
	CodeInvalidToken = "invalid_token"
	// CodeForbidden: the caller's role may not make the request (403).
	CodeForbidden = "forbidden"
	// CodeRateLimited: too many requests of this kind from the caller;
	// Retry-After says when to come back (429).
	CodeRateLimited = "rate_limited"
	// CodeUnknownRegion: the ticket names a region the deployment does
	// not know (400).
	CodeUnknownRegion = "unknown_region"
	// CodeMethodNotAllowed: the path exists, but not with this method;
	// Allow lists the methods it takes (405).
	CodeMethodNotAllowed = "method_not_allowed"
	CodeUnavailable      = "unavailable"
	CodeOverloaded       = "overloaded"
	// CodeOutcomeUnknown: the store stopped answering while a create was
	// under way, and could not be reached again in time to learn whether
	// the ticket was made (503). Retry with the same Idempotency-Key: once
	// the store is back, the retry answers the ticket if it was made, or
	// makes it.
	CodeOutcomeUnknown = "outcome_unknown"
	CodeInternal       = "internal"
)

// ProblemTypeBase prefixes every problem type URI; the code completes it.
const ProblemTypeBase = "https://quickmatch.dev/problems/"
