package main

import (
	"errors"
	"image/color"
	"math"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// series is one system's propagation trials, for the chart.
type series struct {
	name   string          // e.g. "hapctl", "consul-template", "DNS SRV (1 s timers)", "DNS SRV (100 ms timers)"
	add    []time.Duration // instance registered -> HAProxy serves it, one per trial
	remove []time.Duration // instance deregistered -> HAProxy stops serving it
}

// writeChart draws the propagation latency of each system and writes it as a PNG to path.
func writeChart(path, title string, ss []series) error {
	if len(ss) == 0 {
		return errors.New("chart: no series")
	}
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = "ms, log scale"
	// The systems differ by three orders of magnitude: on a linear axis the
	// fast ones would be a flat line at zero.
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	grid := plotter.NewGrid()
	grid.Vertical.Color = nil // it would run between each add/remove pair
	p.Add(grid)
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.XOffs = vg.Points(8)

	names := make([]string, len(ss))
	lo, hi := math.Inf(1), math.Inf(-1)
	for i, s := range ss {
		names[i] = s.name
		for j, d := range [][]time.Duration{s.add, s.remove} {
			if len(d) == 0 {
				continue
			}
			vs := millis(d)
			// add left of the system's name, remove right of it.
			x := float64(i) + 0.2*float64(2*j-1)
			box, err := plotter.NewBoxPlot(vg.Points(36), x, vs)
			if err != nil {
				return err
			}
			box.FillColor = withAlpha(palette[j], 0x50)
			box.BoxStyle.Color = palette[j]
			box.MedianStyle.Color = palette[j]
			box.MedianStyle.Width = vg.Points(2)
			box.WhiskerStyle.Color = palette[j]
			// Every trial is drawn below, so the box's own outlier marks would
			// only repeat some of them.
			box.GlyphStyle.Radius = 0
			pts, err := plotter.NewScatter(jitter(x, vs))
			if err != nil {
				return err
			}
			pts.GlyphStyle = draw.GlyphStyle{Color: withAlpha(palette[j], 0xb0), Radius: vg.Points(1.6), Shape: draw.CircleGlyph{}}
			p.Add(box, pts)
			lo, hi = min(lo, box.Min), max(hi, box.Max)
		}
	}
	if math.IsInf(lo, 0) {
		return errors.New("chart: no trials")
	}
	p.Legend.Add("add", swatch{palette[0]})
	p.Legend.Add("remove", swatch{palette[1]})
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.5, float64(len(ss))-0.5
	// LogTicks labels only powers of ten: stretch the axis to whole decades so
	// that at least two labels are always in view.
	p.Y.Min = math.Pow(10, math.Floor(math.Log10(lo)))
	p.Y.Max = math.Pow(10, math.Ceil(math.Log10(hi)))
	if p.Y.Max <= p.Y.Min {
		p.Y.Max = p.Y.Min * 10
	}
	return p.Save(vg.Points(675), vg.Points(375), path) // 900x500 px at 96 dpi
}

// palette is add (blue) and remove (orange).
var palette = [2]color.RGBA{{0x1f, 0x77, 0xb4, 0xff}, {0xff, 0x7f, 0x0e, 0xff}}

func withAlpha(c color.RGBA, a uint8) color.NRGBA {
	return color.NRGBA{c.R, c.G, c.B, a}
}

// millis converts to milliseconds, raising anything not positive to 1 µs
// because a log axis cannot place zero.
func millis(d []time.Duration) plotter.Values {
	vs := make(plotter.Values, len(d))
	for i, v := range d {
		vs[i] = max(float64(v)/float64(time.Millisecond), 1e-3)
	}
	return vs
}

// jitter spreads the trials evenly across the box's width so equal values do
// not hide each other; evenly rather than randomly so that reruns draw the
// same picture from the same data.
func jitter(x float64, vs plotter.Values) plotter.XYs {
	xys := make(plotter.XYs, len(vs))
	for i, v := range vs {
		xys[i] = plotter.XY{X: x - 0.08 + 0.16*(float64(i)+0.5)/float64(len(vs)), Y: v}
	}
	return xys
}

// swatch is a legend entry: a filled square of one colour.
type swatch struct{ c color.RGBA }

func (s swatch) Thumbnail(c *draw.Canvas) {
	c.FillPolygon(withAlpha(s.c, 0xb0), c.ClipPolygonY([]vg.Point{
		{X: c.Min.X, Y: c.Min.Y}, {X: c.Max.X, Y: c.Min.Y},
		{X: c.Max.X, Y: c.Max.Y}, {X: c.Min.X, Y: c.Max.Y},
	}))
}
