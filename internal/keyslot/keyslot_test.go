package keyslot

import "testing"

func TestSlotKnownValues(t *testing.T) {
	// Values from the Redis Cluster spec and `CLUSTER KEYSLOT` on Redis 7.0.
	cases := map[string]int{
		"123456789":     0x31C3 % 16384, // CRC16/XMODEM check value
		"foo":           12182,
		"bar":           5061,
		"{foo}.x":       12182, // hash tag: only "foo" is hashed
		"somekey":       11058,
		"foo{hash_tag}": 2515,
	}
	for k, want := range cases {
		if got := Slot(k); got != want {
			t.Errorf("Slot(%q) = %d, want %d", k, got, want)
		}
	}
	if Slot("{user1000}.following") != Slot("{user1000}.followers") {
		t.Error("keys with the same hash tag must share a slot")
	}
	if Slot("foo{}{bar}") == Slot("bar") {
		t.Error("an empty first tag must not select the second tag")
	}
}

func TestTagFor(t *testing.T) {
	tag, ok := TagFor("t", 10923, 16383, 1000)
	if !ok {
		t.Fatal("no tag found in the last third of the slots")
	}
	if s := Slot(tag); s < 10923 || s > 16383 {
		t.Fatalf("tag %q has slot %d outside range", tag, s)
	}
}
