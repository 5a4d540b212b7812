package redisstore

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/quickmatch/quickmatch/internal/store"
)

// Key layout. Redis Cluster hashes a key by its hash tag, the part between
// its first '{' and the next '}', so every key here carries exactly one tag
// right after the prefix, naming the slot it belongs to:
//
//	{<queue>}     one queue: its tickets <p>{q}:t:<id>, its pool <p>{q}:pool
//	              and <p>{q}:pool:e, its matches <p>{q}:m:<id>, its expiry
//	              index <p>{q}:expiry, the tickets no matcher has taken up
//	              yet <p>{q}:new, the releases owed <p>{q}:rel, the
//	              matches waiting for a server <p>{q}:waiting, those
//	              waiting for their players to accept <p>{q}:accepting, its
//	              backfill requests <p>{q}:bf and the fills owed to
//	              allocations <p>{q}:fills, the
//	              idempotency keys of creates <p>{q}:k:<hash of the key>. A
//	              claim, a cancel or an expiry touches one queue only, so
//	              each is one script on one slot, and queues spread over the
//	              shards.
//	{p:<player>}  one player's claim <p>{p:<player>}: the id of their live
//	              ticket. Claims are global across queues (docs/design.md, invariant 2), so
//	              they live apart from any queue and change by the protocol
//	              of CreateTicket and release.
//	{servers}     the whole server registry: <p>{servers}:srv:<id>,
//	              <p>{servers}:allocs:<id>, <p>{servers}:placed:<match id>,
//	              <p>{servers}:regions and <p>{servers}:region:<region>.
//	              Choosing the server with the most free slots needs every
//	              candidate in one atomic step, so the registry is one slot
//	              on one shard. The trade-off: that shard takes every
//	              heartbeat and the first step of every assignment, so it
//	              bounds how many matches per second the cluster can place.
//	              The registry changes far less often than tickets do (a
//	              heartbeat per server every few seconds, one allocation per
//	              match, against several writes per ticket), so it is not
//	              the first limit; splitting it by region would be the next
//	              step.
//	{meta}        <p>{meta}:queues, the names of the queues that have had
//	              tickets, for ExpireDue to visit; one SADD per created
//	              ticket.
//
// Queue names hold only letters, digits, '-', '_' and '.' (package queues
// checks), so a queue's tag never holds a brace or a ':' and never starts
// with "p:"; the suffixes of the registry differ from those of a queue, so
// a queue named "servers" or "meta" shares a slot with them but no key.
// Ids may hold ':', which is why they come last.
//
// The prefix should hold no '{': a tag in it would become the tag of every
// key, which still works but puts everything on one shard.

// queueTag starts every key of queue.
func (s *Store) queueTag(queue string) string { return s.prefix + "{" + queue + "}" }

func (s *Store) ticketKey(queue, id string) string  { return s.queueTag(queue) + ":t:" + id }
func (s *Store) matchKey(queue, id string) string   { return s.queueTag(queue) + ":m:" + id }
func (s *Store) poolKey(queue string) string        { return s.queueTag(queue) + ":pool" }
func (s *Store) poolEntriesKey(queue string) string { return s.queueTag(queue) + ":pool:e" }
func (s *Store) expiryKey(queue string) string      { return s.queueTag(queue) + ":expiry" }
func (s *Store) newKey(queue string) string         { return s.queueTag(queue) + ":new" }
func (s *Store) relKey(queue string) string         { return s.queueTag(queue) + ":rel" }
func (s *Store) waitingKey(queue string) string     { return s.queueTag(queue) + ":waiting" }
func (s *Store) acceptingKey(queue string) string   { return s.queueTag(queue) + ":accepting" }
func (s *Store) backfillKey(queue string) string    { return s.queueTag(queue) + ":bf" }
func (s *Store) fillsKey(queue string) string       { return s.queueTag(queue) + ":fills" }
func (s *Store) playerKey(playerID string) string   { return s.prefix + "{p:" + playerID + "}" }
func (s *Store) serverKey(id string) string         { return s.prefix + "{servers}:srv:" + id }
func (s *Store) allocKey(serverID string) string    { return s.prefix + "{servers}:allocs:" + serverID }
func (s *Store) placedKey(matchID string) string    { return s.prefix + "{servers}:placed:" + matchID }
func (s *Store) regionsKey() string                 { return s.prefix + "{servers}:regions" }
func (s *Store) regionKey(region string) string     { return s.prefix + "{servers}:region:" + region }
func (s *Store) queuesKey() string                  { return s.prefix + "{meta}:queues" }
func (s *Store) channel() string                    { return s.prefix + "changes" }

// listenerChannel is where the changes of the tickets a listener watches
// are sent (bump in scripts.go).
func (s *Store) listenerChannel(listener string) string { return s.channel() + ":" + listener }

// idemKey holds the ticket id and fingerprint of the create that used
// idempotency key key in queue. The key is the client's, of any length and
// any bytes, so its name holds a digest of it.
func (s *Store) idemKey(queue, key string) string {
	sum := sha256.Sum256([]byte(key))
	return s.queueTag(queue) + ":k:" + hex.EncodeToString(sum[:16])
}

// poolKeys are the keys of queue that every script changing a searching
// ticket takes first: pool, pool entries, expiry index, unannounced
// tickets, release log.
func (s *Store) poolKeys(queue string) []string {
	return []string{s.poolKey(queue), s.poolEntriesKey(queue), s.expiryKey(queue), s.newKey(queue), s.relKey(queue)}
}

// ticketKeyOf is the key of ticket id in the queue its id names; false for
// an id that names none, which no store ever issued.
func (s *Store) ticketKeyOf(id string) (string, bool) {
	q, ok := store.QueueOfID(id)
	if !ok {
		return "", false
	}
	return s.ticketKey(q, id), true
}
