package topology

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
)

// ParseNodes parses CLUSTER NODES output. Unparseable lines are an error
// that names the line.
//
// Each line is `id ip:port@cport[,hostname] flags master ping pong epoch
// link slot...`. Empty lines and "\r" line endings are accepted. Slot tokens
// are "0-5460", "42", "[93->-<id>]" (migrating) and "[93-<-<id>]"
// (importing). A noaddr node (":0@0") gets Addr ":0".
func ParseNodes(text string) ([]Node, error) {
	n := strings.Count(text, "\n") + 1
	nodes := make([]Node, 0, n)
	lineNo := 0
	for len(text) > 0 {
		var line string
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			line, text = text, ""
		}
		lineNo++
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		nd, err := parseNodeLine(line)
		if err != nil {
			return nil, fmt.Errorf("cluster nodes line %d %q: %w", lineNo, truncate(line, 120), err)
		}
		nodes = append(nodes, nd)
	}
	return nodes, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func parseNodeLine(line string) (Node, error) {
	var f [8]string
	rest := line
	for i := range f {
		rest = strings.TrimLeft(rest, " ")
		j := strings.IndexByte(rest, ' ')
		if j < 0 {
			f[i], rest = rest, ""
		} else {
			f[i], rest = rest[:j], rest[j+1:]
		}
		if f[i] == "" {
			return Node{}, fmt.Errorf("want at least 8 fields, got %d", i)
		}
	}
	var nd Node
	nd.ID = f[0]
	if err := parseAddr(f[1], &nd); err != nil {
		return Node{}, err
	}
	if f[2] != "noflags" {
		nd.Flags = strings.Split(f[2], ",")
	} else {
		nd.Flags = []string{"noflags"}
	}
	if f[3] != "-" {
		nd.MasterID = f[3]
	}
	var err error
	if nd.PingSent, err = strconv.ParseInt(f[4], 10, 64); err != nil {
		return Node{}, fmt.Errorf("ping-sent %q: not a number", f[4])
	}
	if nd.PongRecv, err = strconv.ParseInt(f[5], 10, 64); err != nil {
		return Node{}, fmt.Errorf("pong-recv %q: not a number", f[5])
	}
	if nd.Epoch, err = strconv.ParseUint(f[6], 10, 64); err != nil {
		return Node{}, fmt.Errorf("config-epoch %q: not a number", f[6])
	}
	switch f[7] {
	case "connected":
		nd.Connected = true
	case "disconnected":
	default:
		return Node{}, fmt.Errorf("link-state %q: want connected or disconnected", f[7])
	}
	for rest != "" {
		rest = strings.TrimLeft(rest, " ")
		if rest == "" {
			break
		}
		var tok string
		if j := strings.IndexByte(rest, ' '); j < 0 {
			tok, rest = rest, ""
		} else {
			tok, rest = rest[:j], rest[j+1:]
		}
		if err := parseSlotToken(tok, &nd); err != nil {
			return Node{}, err
		}
	}
	return nd, nil
}

// parseAddr handles "ip:port@cport[,hostname[,aux=val...]]". The ip may be
// an IPv6 address without brackets ("::1:7000@17000"): the port is after the
// last colon. Addr is rebuilt with net.JoinHostPort so it can be dialed.
func parseAddr(s string, nd *Node) error {
	at := strings.IndexByte(s, '@')
	if at < 0 {
		return fmt.Errorf("address %q: missing @cport", s)
	}
	hp, bus := s[:at], s[at+1:]
	if c := strings.IndexByte(bus, ','); c >= 0 {
		extra := bus[c+1:]
		bus = bus[:c]
		// Redis 7.0 prints the hostname after the comma; later versions
		// may append key=value aux fields: keep the first plain one.
		for _, x := range strings.Split(extra, ",") {
			if x != "" && !strings.Contains(x, "=") {
				nd.Hostname = x
				break
			}
		}
	}
	colon := strings.LastIndexByte(hp, ':')
	if colon < 0 {
		return fmt.Errorf("address %q: missing :port", s)
	}
	host, port := hp[:colon], hp[colon+1:]
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("address %q: bad port %q", s, port)
	}
	bp, err := strconv.Atoi(bus)
	if err != nil || bp < 0 || bp > 65535 {
		return fmt.Errorf("address %q: bad bus port %q", s, bus)
	}
	if host == "" && p == 0 {
		nd.Addr = ":0"
	} else if strings.IndexByte(host, ':') < 0 {
		nd.Addr = hp // fast path, already host:port
	} else {
		nd.Addr = net.JoinHostPort(host, port)
	}
	nd.BusPort = bp
	return nil
}

func parseSlotToken(tok string, nd *Node) error {
	if tok[0] == '[' {
		if len(tok) < 2 || tok[len(tok)-1] != ']' {
			return fmt.Errorf("slot token %q: unterminated [", tok)
		}
		body := tok[1 : len(tok)-1]
		if i := strings.Index(body, "->-"); i >= 0 {
			slot, err := parseSlot(body[:i])
			if err != nil || body[i+3:] == "" {
				return fmt.Errorf("slot token %q: bad migrating slot", tok)
			}
			if nd.Migrating == nil {
				nd.Migrating = make(map[int]string)
			}
			nd.Migrating[slot] = body[i+3:]
			return nil
		}
		if i := strings.Index(body, "-<-"); i >= 0 {
			slot, err := parseSlot(body[:i])
			if err != nil || body[i+3:] == "" {
				return fmt.Errorf("slot token %q: bad importing slot", tok)
			}
			if nd.Importing == nil {
				nd.Importing = make(map[int]string)
			}
			nd.Importing[slot] = body[i+3:]
			return nil
		}
		return fmt.Errorf("slot token %q: want [slot->-id] or [slot-<-id]", tok)
	}
	var r SlotRange
	var err error
	if i := strings.IndexByte(tok, '-'); i >= 0 {
		r.Start, err = parseSlot(tok[:i])
		if err == nil {
			r.End, err = parseSlot(tok[i+1:])
		}
		if err == nil && r.End < r.Start {
			err = fmt.Errorf("end before start")
		}
	} else {
		r.Start, err = parseSlot(tok)
		r.End = r.Start
	}
	if err != nil {
		return fmt.Errorf("slot token %q: %w", tok, err)
	}
	nd.Slots = append(nd.Slots, r)
	return nil
}

func parseSlot(s string) (int, error) {
	if s == "" || len(s) > 5 {
		return 0, fmt.Errorf("bad slot %q", s)
	}
	v := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad slot %q", s)
		}
		v = v*10 + int(c-'0')
	}
	if v >= SlotCount {
		return 0, fmt.Errorf("slot %d out of range 0-%d", v, SlotCount-1)
	}
	return v, nil
}

// Myself returns the node flagged myself.
func Myself(nodes []Node) (Node, bool) {
	for _, n := range nodes {
		if n.IsMyself() {
			return n, true
		}
	}
	return Node{}, false
}

// ParseInfo parses INFO / CLUSTER INFO output ("key:value" lines, "#"
// section headers ignored) into a map.
func ParseInfo(text string) map[string]string {
	m := make(map[string]string, 32)
	for len(text) > 0 {
		var line string
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			line, text = text, ""
		}
		line = strings.TrimRight(line, "\r")
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexByte(line, ':'); i > 0 {
			m[line[:i]] = line[i+1:]
		}
	}
	return m
}

// FormatRanges renders ranges as "0-5460,5461" style (single slots without a dash).
func FormatRanges(r []SlotRange) string {
	var b strings.Builder
	for i, x := range r {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(x.Start))
		if x.End != x.Start {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(x.End))
		}
	}
	return b.String()
}

// CountSlots returns how many slots the ranges cover.
func CountSlots(r []SlotRange) int {
	n := 0
	for _, x := range r {
		if x.End >= x.Start {
			n += x.End - x.Start + 1
		}
	}
	return n
}

// MergeRanges returns the ranges sorted, with overlapping and adjacent
// ranges merged ("0-5","6-9","3" -> "0-9"). The input is not modified.
func MergeRanges(r []SlotRange) []SlotRange {
	if len(r) == 0 {
		return nil
	}
	s := append([]SlotRange(nil), r...)
	sort.Slice(s, func(i, j int) bool {
		if s[i].Start != s[j].Start {
			return s[i].Start < s[j].Start
		}
		return s[i].End < s[j].End
	})
	out := s[:1]
	for _, x := range s[1:] {
		last := &out[len(out)-1]
		if x.Start <= last.End+1 {
			if x.End > last.End {
				last.End = x.End
			}
			continue
		}
		out = append(out, x)
	}
	return out
}
