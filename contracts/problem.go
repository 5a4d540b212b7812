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
	CodeUnavailable         = "unavailable"
	CodeOverloaded          = "overloaded"
	CodeInternal            = "internal"
)

// ProblemTypeBase prefixes every problem type URI; the code completes it.
const ProblemTypeBase = "https://quickmatch.dev/problems/"
