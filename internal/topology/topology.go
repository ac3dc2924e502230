// Package topology parses what Redis Cluster nodes say about themselves:
// CLUSTER NODES lines, CLUSTER INFO / INFO fields, and slot ranges. It is
// pure (no I/O) and shared by slots, verify and status.
package topology

// SlotRange is an inclusive range of hash slots.
type SlotRange struct {
	Start, End int
}

// Node is one line of CLUSTER NODES (Redis 7.x format:
// id ip:port@cport[,hostname] flags master ping pong epoch link slots...).
type Node struct {
	ID        string
	Addr      string // ip:port as announced ("" or ":0" for noaddr)
	BusPort   int
	Hostname  string
	Flags     []string // raw flags: myself, master, slave, fail?, fail, handshake, noaddr, nofailover, noflags
	MasterID  string   // "" when "-"
	PingSent  int64
	PongRecv  int64
	Epoch     uint64 // config epoch
	Connected bool   // link-state == connected
	Slots     []SlotRange
	// Migrating maps slot -> destination node id ([slot->-id]).
	Migrating map[int]string
	// Importing maps slot -> source node id ([slot-<-id]).
	Importing map[int]string
}

// HasFlag reports whether the node carries flag f.
func (n Node) HasFlag(f string) bool {
	for _, x := range n.Flags {
		if x == f {
			return true
		}
	}
	return false
}

// IsMaster, IsReplica, IsMyself, Failed (fail), PFailed (fail?) are shorthands.
// Owns reports whether slot is among the node's slots.
func (n Node) Owns(slot int) bool {
	for _, r := range n.Slots {
		if slot >= r.Start && slot <= r.End {
			return true
		}
	}
	return false
}

func (n Node) IsMaster() bool  { return n.HasFlag("master") }
func (n Node) IsReplica() bool { return n.HasFlag("slave") }
func (n Node) IsMyself() bool  { return n.HasFlag("myself") }
func (n Node) Failed() bool    { return n.HasFlag("fail") }
func (n Node) PFailed() bool   { return n.HasFlag("fail?") }
