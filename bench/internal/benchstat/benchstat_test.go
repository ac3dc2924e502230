package benchstat

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	if Summarize(nil) != nil {
		t.Error("no values must give nil")
	}
	if s := Summarize([]float64{3, 1, 2}); *s != (Stats{N: 3, MedianMS: 2, MinMS: 1, MaxMS: 3}) {
		t.Errorf("odd: %+v", s)
	}
	if s := Summarize([]float64{4, 1, 2, 3}); *s != (Stats{N: 4, MedianMS: 2.5, MinMS: 1, MaxMS: 4}) {
		t.Errorf("even: %+v", s)
	}
	// The cases clusterbench's and opsbench's own copies were tested with.
	if s := Summarize([]float64{5, 1, 3}); s.N != 3 || s.MedianMS != 3 || s.MinMS != 1 || s.MaxMS != 5 {
		t.Errorf("odd: %+v", s)
	}
	if s := Summarize([]float64{30, 10, 20}); *s != (Stats{N: 3, MedianMS: 20, MinMS: 10, MaxMS: 30}) {
		t.Errorf("odd: %+v", s)
	}
	if s := Summarize([]float64{4, 1, 2, 10}); s.MedianMS != 3 {
		t.Errorf("even median: %+v", s)
	}
}

func TestBusyBetweenClampsRounding(t *testing.T) {
	// Readings where the idle delta equals the total delta (an idle
	// window) but float sums give 100*(1-x) = -1.5e-9: seen in CI.
	if b := busyBetween(65507.7, 65507.7+78.87, 65507.7+0.48, 65507.7+78.87+0.48); b != 0 {
		t.Errorf("idle window = %v, want 0", b)
	}
	if b := busyBetween(10, 20, 10, 30); b != 100 {
		t.Errorf("busy window = %v, want 100", b)
	}
	if b := busyBetween(10, 20, 15, 30); b != 50 {
		t.Errorf("half window = %v, want 50", b)
	}
	if b := busyBetween(10, 20, 10, 20); b != -1 {
		t.Errorf("no time passed = %v, want -1", b)
	}
}

func TestBusyPercent(t *testing.T) {
	if b := BusyPercent(context.Background(), 50*time.Millisecond); b < 0 || b > 100 {
		t.Errorf("BusyPercent = %v, want 0..100", b)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if b := BusyPercent(ctx, time.Second); b != -1 {
		t.Errorf("BusyPercent on an ended context = %v, want -1", b)
	}
}

func TestEmitJSONAndHost(t *testing.T) {
	h := ThisHost("/nonexistent/redis-server")
	if h.CPUs < 1 || h.GoVersion == "" || h.RedisVersion != "unknown" {
		t.Errorf("ThisHost with a missing binary = %+v", h)
	}
	path := filepath.Join(t.TempDir(), "r.json")
	if err := EmitJSON(path, nil, map[string]any{"host": h}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(b), `"redis": "unknown"`) {
		t.Errorf("EmitJSON wrote %q (%v)", b, err)
	}
	var out strings.Builder
	if err := EmitJSON("-", &out, []int{1}); err != nil || out.String() != "[\n  1\n]\n" {
		t.Errorf("EmitJSON to stdout = %q (%v)", out.String(), err)
	}
}
