package apiclienttest

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/quickmatch/quickmatch/contracts"
)

// These answer like the suite, for fake servers in tests.

// WriteJSON answers v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// WriteProblem answers a problem with status and code, and Retry-After if
// retryAfter is positive.
func WriteProblem(w http.ResponseWriter, status int, code string, retryAfter int) {
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	}
	w.Header().Set("Content-Type", contracts.ProblemContentType)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(contracts.Problem{Status: status, Code: code, Title: http.StatusText(status)})
}

// DropConn closes the request's connection without an answer.
func DropConn(w http.ResponseWriter) {
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		conn.Close()
	}
}
