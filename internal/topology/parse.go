package topology

// ParseNodes parses CLUSTER NODES output. Unparseable lines are an error
// that names the line.
func ParseNodes(text string) ([]Node, error) { panic("unimplemented") }

// Myself returns the node flagged myself.
func Myself(nodes []Node) (Node, bool) { panic("unimplemented") }

// ParseInfo parses INFO / CLUSTER INFO output ("key:value" lines, "#"
// section headers ignored) into a map.
func ParseInfo(text string) map[string]string { panic("unimplemented") }

// FormatRanges renders ranges as "0-5460,5461" style (single slots without a dash).
func FormatRanges(r []SlotRange) string { panic("unimplemented") }

// CountSlots returns how many slots the ranges cover.
func CountSlots(r []SlotRange) int { panic("unimplemented") }
