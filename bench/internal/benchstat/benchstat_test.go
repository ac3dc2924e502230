package benchstat

import (
	"context"
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
