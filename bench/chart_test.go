package main

import (
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// synthTrials draws n durations uniformly in [lo, hi), reproducibly.
func synthTrials(r *rand.Rand, n int, lo, hi time.Duration) []time.Duration {
	d := make([]time.Duration, n)
	for i := range d {
		d[i] = lo + time.Duration(r.Int64N(int64(hi-lo)))
	}
	return d
}

func TestWriteChart(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	ss := []series{
		{"hapctl", synthTrials(r, 50, 2*time.Millisecond, 12*time.Millisecond), synthTrials(r, 50, 2*time.Millisecond, 8*time.Millisecond)},
		{"consul-template", synthTrials(r, 50, 40*time.Millisecond, 300*time.Millisecond), synthTrials(r, 50, 40*time.Millisecond, 250*time.Millisecond)},
		{"DNS SRV (1 s timers)", synthTrials(r, 50, 100*time.Millisecond, 3000*time.Millisecond), synthTrials(r, 50, 200*time.Millisecond, 2500*time.Millisecond)},
		// A zero must not break the log axis.
		{"DNS SRV (100 ms timers)", append(synthTrials(r, 49, 20*time.Millisecond, 300*time.Millisecond), 0), synthTrials(r, 50, 30*time.Millisecond, 350*time.Millisecond)},
	}
	path := filepath.Join(t.TempDir(), "chart.png")
	if err := writeChart(path, "Consul change → HAProxy serves it (50 trials each)", ss); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() == 0 || b.Dx() <= b.Dy() {
		t.Errorf("chart is %dx%d px, want a non-empty landscape image", b.Dx(), b.Dy())
	}
}

func TestWriteChartNoData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chart.png")
	if err := writeChart(path, "empty", nil); err == nil {
		t.Error("no series: want an error")
	}
	if err := writeChart(path, "empty", []series{{name: "x"}}); err == nil {
		t.Error("no trials: want an error")
	}
}
