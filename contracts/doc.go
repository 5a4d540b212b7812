// Package contracts holds the wire types every service shares: the player API
// (tickets), the game-server API (servers and allocations), the queue messages
// with their schema version, the problem+json error body, and the names of the
// queues the services talk through. It depends on nothing but the standard
// library so that clients in other repositories can import it alone.
package contracts
