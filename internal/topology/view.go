package topology

import (
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// SlotCount is the number of hash slots in a Redis Cluster.
const SlotCount = 16384

// SlotMap holds the owner node id of every slot ("" when unassigned).
type SlotMap [SlotCount]string

// SlotOwners builds the slot map one node's CLUSTER NODES view describes:
// each slot maps to the id of the node whose line lists it. (In one node's
// view a slot has at most one owner; if the input lists a slot twice the
// later line wins.)
func SlotOwners(nodes []Node) *SlotMap {
	var m SlotMap
	for _, n := range nodes {
		for _, r := range n.Slots {
			for s := r.Start; s <= r.End && s < SlotCount; s++ {
				if s >= 0 {
					m[s] = n.ID
				}
			}
		}
	}
	return &m
}

// Uncovered returns the ranges of slots that no node of a view lists, in
// order. Unlike SlotOwners(nodes).Uncovered() it allocates no slot map (a
// 256 KiB array per view, which made a readiness round over 100 nodes
// spend most of its time in the allocator and the GC).
func Uncovered(nodes []Node) []SlotRange {
	var all []SlotRange
	for _, n := range nodes {
		for _, r := range n.Slots {
			r.Start, r.End = max(r.Start, 0), min(r.End, SlotCount-1)
			if r.Start <= r.End {
				all = append(all, r)
			}
		}
	}
	var gaps []SlotRange
	next := 0 // first slot not yet known to be covered
	for _, r := range MergeRanges(all) {
		if r.Start > next {
			gaps = append(gaps, SlotRange{next, r.Start - 1})
		}
		next = max(next, r.End+1)
	}
	if next < SlotCount {
		gaps = append(gaps, SlotRange{next, SlotCount - 1})
	}
	return gaps
}

// Uncovered returns the ranges of slots without an owner.
func (m *SlotMap) Uncovered() []SlotRange { return m.RangesOf("") }

// Covered is the number of slots with an owner.
func (m *SlotMap) Covered() int { return SlotCount - CountSlots(m.Uncovered()) }

// RangesOf returns the merged ranges owned by id (id "" gives the
// unassigned ranges).
func (m *SlotMap) RangesOf(id string) []SlotRange {
	var out []SlotRange
	for s := 0; s < SlotCount; s++ {
		if m[s] != id {
			continue
		}
		if k := len(out); k > 0 && out[k-1].End == s-1 {
			out[k-1].End = s
		} else {
			out = append(out, SlotRange{s, s})
		}
	}
	return out
}

// SlotSignature is a canonical string for the slot map a view describes:
// "id:ranges" for every node that owns slots, sorted by id, joined by "|".
// Two views have equal signatures exactly when they agree on the owner of
// every slot. Nodes without slots do not appear.
func SlotSignature(nodes []Node) string {
	parts := make([]string, 0, len(nodes))
	for _, n := range nodes {
		if len(n.Slots) == 0 {
			continue
		}
		parts = append(parts, n.ID+":"+FormatRanges(MergeRanges(n.Slots)))
	}
	sort.Strings(parts)
	return strings.Join(parts, "|")
}

// RoleSignature is a canonical string for the membership and roles a view
// describes: "id:master" or "id:replica-of:<master-id>" for every node,
// sorted by id, joined by "|". Nodes in handshake have random ids, so a view
// with a handshake in progress never matches a settled one.
func RoleSignature(nodes []Node) string {
	parts := make([]string, 0, len(nodes))
	for _, n := range nodes {
		switch {
		case n.IsReplica():
			parts = append(parts, n.ID+":replica-of:"+n.MasterID)
		case n.IsMaster():
			parts = append(parts, n.ID+":master")
		default:
			parts = append(parts, n.ID+":"+strings.Join(n.Flags, ","))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, "|")
}

// Trouble returns the node's flags that mean it is not healthy or not fully
// known (fail, fail?, handshake, noaddr), joined by ",", or "" when none.
func (n Node) Trouble() string {
	var bad []string
	for _, f := range n.Flags {
		switch f {
		case "fail", "fail?", "handshake", "noaddr":
			bad = append(bad, f)
		}
	}
	return strings.Join(bad, ",")
}

// Port returns the client port from Addr (0 when unknown).
func (n Node) Port() int {
	_, p, err := net.SplitHostPort(n.Addr)
	if err != nil {
		return 0
	}
	v, _ := strconv.Atoi(p)
	return v
}

// IP returns the announced IP from Addr ("" when unknown).
func (n Node) IP() string {
	h, _, err := net.SplitHostPort(n.Addr)
	if err != nil {
		return ""
	}
	return h
}

// OpenSlots returns every slot the node has in migrating or importing
// state, sorted.
func (n Node) OpenSlots() []int {
	var out []int
	for s := range n.Migrating {
		out = append(out, s)
	}
	for s := range n.Importing {
		if _, dup := n.Migrating[s]; !dup {
			out = append(out, s)
		}
	}
	sort.Ints(out)
	return out
}

// FindNode returns the node with the given id.
func FindNode(nodes []Node, id string) (Node, bool) {
	for _, n := range nodes {
		if n.ID == id {
			return n, true
		}
	}
	return Node{}, false
}

// HashSlot returns the hash slot of key as Redis Cluster computes it:
// CRC16 (XMODEM) of the key, or of the first non-empty {hash tag}, mod 16384.
func HashSlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key) & (SlotCount - 1))
}

func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc = crc<<8 ^ crcTable[byte(crc>>8)^s[i]]
	}
	return crc
}

var crcTable = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()

var slotKeys = sync.OnceValue(func() *[SlotCount]string {
	var keys [SlotCount]string
	missing := SlotCount
	buf := []byte("rcluster:")
	base := len(buf)
	for i := 0; missing > 0; i++ {
		buf = strconv.AppendInt(buf[:base], int64(i), 10)
		s := HashSlot(string(buf)) // no allocation: conversion does not escape
		if keys[s] == "" {
			keys[s] = string(buf)
			missing--
		}
	}
	return &keys
})

// KeyForSlot returns a short key ("rcluster:<n>") that hashes to slot.
// It panics if slot is outside 0..16383.
func KeyForSlot(slot int) string { return slotKeys()[slot] }
