package store

import (
	"strings"

	"github.com/google/uuid"
)

// NewID returns a new ticket or match id for queue: the queue's name, a dot
// and a random UUID, such as "duel.4f0c…". The id is opaque to clients; a
// store reads the queue back (QueueOfID) to keep all of a queue's records on
// one Redis Cluster hash slot with its pool, so that a claim stays atomic
// without a cross-slot script.
func NewID(queue string) string { return queue + "." + uuid.NewString() }

// QueueOfID returns the queue an id made by NewID belongs to. Queue names
// may hold dots; UUIDs never do, so the last dot separates them.
func QueueOfID(id string) (string, bool) {
	i := strings.LastIndexByte(id, '.')
	if i <= 0 || i == len(id)-1 {
		return "", false
	}
	return id[:i], true
}
