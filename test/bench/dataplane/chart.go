package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// The chart (docs/benchmarks.svg): per figure of the tables (a dataset on disk or in memory, a
// re-stage), one horizontal bar of seconds per tool. Plain SVG on an opaque white background,
// so it reads the same on a light or a dark page. The figures also go into the file as JSON
// (<metadata>): a run of some parts redraws the chart with the others' figures kept.

type panel struct {
	Title string `json:"title"`
	Bars  []bar  `json:"bars"`
}

type bar struct {
	Tool    string  `json:"tool"` // a key of chartTools
	Seconds float64 `json:"seconds"`
}

// chartTools are the tools the chart shows, in the order of their bars. Okabe–Ito colours:
// told apart with the common colour blindnesses too.
var chartTools = []struct{ key, short, long, color string }{
	{"ferry", "ferry", "ferry send/serve, 4 streams (default)", "#0072B2"},
	{"stunnel", "rsync via stunnel", "rsync -aHS via stunnel, 1 stream", "#E69F00"},
	{"rsync", "rsync -a", "rsync -a to a daemon, no TLS", "#009E73"},
	{"restic", "restic", "restic backup + restore (disk only, 1 round)", "#CC79A7"},
	{"tar", "tar | tar", "tar | tar over loopback TCP", "#888888"},
}

const chartDataTag = `<metadata id="ferry-bench-data">`

// writeChart redraws the chart at path with this run's panels and the earlier runs' panels of
// the other parts. A run without panels (say, -only block) leaves the file alone.
func (r *report) writeChart(path string) error {
	if len(r.panels) == 0 {
		return nil
	}
	byPart := map[string][]panel{}
	if old, err := os.ReadFile(path); err == nil {
		if _, rest, ok := strings.Cut(string(old), chartDataTag); ok {
			if data, _, ok := strings.Cut(rest, "</metadata>"); ok {
				_ = json.Unmarshal([]byte(data), &byPart) // unreadable: start afresh
			}
		}
	}
	for part, ps := range r.panels {
		byPart[part] = ps
	}
	svg, err := renderChart(byPart)
	if err != nil {
		return err
	}
	return os.WriteFile(path, svg, 0o644)
}

func renderChart(byPart map[string][]panel) ([]byte, error) {
	const (
		width, margin, gap = 960, 20, 24
		colW               = (width - 2*margin - gap) / 2
		labelW             = 124 // the tools' short names, right-aligned
		valueW             = 64  // "123.45 s" after the longest bar
		rowH, barH         = 22, 15
	)
	var panels []panel
	for _, p := range allParts {
		for _, pn := range byPart[p] {
			if len(pn.Bars) > 0 {
				panels = append(panels, pn)
			}
		}
	}
	esc := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace
	var body strings.Builder
	y := 34
	fmt.Fprintf(&body, `<text x="%d" y="%d" font-size="17" font-weight="bold">ferry's data plane against other tools: seconds per copy, shorter is faster</text>`+"\n", margin, y)
	// The legend, wrapped; the width of a label guessed at 7 px a character.
	x, y := margin, y+26
	for _, t := range chartTools {
		w := 18 + 7*len([]rune(t.long)) + 22
		if x+w > width-margin {
			x, y = margin, y+20
		}
		fmt.Fprintf(&body, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d" font-size="12.5">%s</text>`+"\n",
			x, y-10, t.color, x+18, y, esc(t.long))
		x += w
	}
	y += 20
	for i := 0; i < len(panels); i += 2 {
		rowEnd := y
		for j := i; j < min(i+2, len(panels)); j++ {
			px := margin + (j-i)*(colW+gap)
			rowEnd = max(rowEnd, drawPanel(&body, esc, panels[j], px, y, colW, labelW, valueW, rowH, barH))
		}
		y = rowEnd + 14
	}
	fmt.Fprintf(&body, `<text x="%d" y="%d" font-size="11.5" fill="#555555">Medians of the rounds; each panel has its own scale. Made by test/bench/dataplane; the tables, the rounds and the machine: docs/benchmarks.md.</text>`+"\n", margin, y+4)
	height := y + 18
	data, err := json.Marshal(byPart) // escapes <, > and &: safe inside the XML
	if err != nil {
		return nil, err
	}
	var svg strings.Builder
	fmt.Fprintf(&svg, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" fill="#1a1a1a" role="img">`+"\n",
		width, height, width, height)
	svg.WriteString("<title>ferry's data plane against tar, rsync and restic: seconds per copy</title>\n")
	svg.WriteString(chartDataTag + string(data) + "</metadata>\n")
	fmt.Fprintf(&svg, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", width, height)
	svg.WriteString(body.String())
	svg.WriteString("</svg>\n")
	return []byte(svg.String()), nil
}

// drawPanel draws one figure's bars at (x, y) and returns the y below it.
func drawPanel(w *strings.Builder, esc func(string) string, p panel, x, y, colW, labelW, valueW, rowH, barH int) int {
	fmt.Fprintf(w, `<text x="%d" y="%d" font-size="13.5" font-weight="bold">%s</text>`+"\n", x, y+14, esc(p.Title))
	longest := 0.0
	for _, b := range p.Bars {
		longest = max(longest, b.Seconds)
	}
	barX, barMax := x+labelW+6, colW-labelW-6-valueW
	y += 24
	fmt.Fprintf(w, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#bbbbbb"/>`+"\n", barX, y-3, barX, y+rowH*len(p.Bars)-3)
	for _, t := range chartTools {
		for _, b := range p.Bars {
			if b.Tool != t.key {
				continue
			}
			length := 1.0
			if longest > 0 {
				length = max(1, float64(barMax)*b.Seconds/longest)
			}
			fmt.Fprintf(w, `<text x="%d" y="%d" font-size="12.5" text-anchor="end">%s</text>`, x+labelW, y+barH-3, esc(t.short))
			fmt.Fprintf(w, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`, barX, y, length, barH, t.color)
			fmt.Fprintf(w, `<text x="%.1f" y="%d" font-size="12.5">%s</text>`+"\n", float64(barX)+length+5, y+barH-3, secondsLabel(b.Seconds))
			y += rowH
		}
	}
	return y
}

func secondsLabel(s float64) string {
	if s >= 100 {
		return fmt.Sprintf("%.0f s", s)
	}
	return fmt.Sprintf("%.2f s", s)
}
