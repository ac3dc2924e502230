// Package keyslot maps keys to Redis Cluster hash slots (CRC16/XMODEM of the
// key or of its {hash tag}, mod 16384) and finds keys for a given slot.
package keyslot

import (
	"strconv"
	"strings"
)

var table [256]uint16

func init() {
	for i := range table {
		crc := uint16(i) << 8
		for b := 0; b < 8; b++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
		table[i] = crc
	}
}

func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc = crc<<8 ^ table[byte(crc>>8)^s[i]]
	}
	return crc
}

// Slot returns the hash slot of key, honouring the first non-empty {tag}.
func Slot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key) % 16384)
}

// TagFor returns a short hash tag (without braces) whose slot is in
// [start, end], found by trying prefix0, prefix1, ... at most limit times.
func TagFor(prefix string, start, end, limit int) (string, bool) {
	for i := 0; i < limit; i++ {
		t := prefix + strconv.Itoa(i)
		if s := Slot(t); s >= start && s <= end {
			return t, true
		}
	}
	return "", false
}
