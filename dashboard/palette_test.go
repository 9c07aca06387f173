package dashboard

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// palettes reads the colour variables of web/app.css: the light one in the first :root block,
// the dark one in the prefers-color-scheme: dark block.
func palettes(t *testing.T) map[string]map[string]string {
	t.Helper()
	css, err := webFS.ReadFile("web/app.css")
	require.NoError(t, err)
	text := string(css)
	darkAt := strings.Index(text, "@media (prefers-color-scheme: dark)")
	require.Positive(t, darkAt, "app.css has no dark palette")
	vars := regexp.MustCompile(`--([a-z-]+):\s*(#[0-9a-fA-F]{6})`)
	read := func(s string) map[string]string {
		out := map[string]string{}
		for _, m := range vars.FindAllStringSubmatch(s, -1) {
			out[m[1]] = m[2]
		}
		return out
	}
	light, dark := read(text[:darkAt]), read(text[darkAt:])
	require.NotEmpty(t, light)
	require.Equal(t, len(light), len(dark), "the dark palette sets every colour the light one does")
	return map[string]map[string]string{"light": light, "dark": dark}
}

func luminance(hex string) float64 {
	v, _ := strconv.ParseUint(hex[1:], 16, 32)
	ch := func(c uint64) float64 {
		s := float64(c) / 255
		if s <= 0.03928 {
			return s / 12.92
		}
		return math.Pow((s+0.055)/1.055, 2.4)
	}
	return 0.2126*ch(v>>16&0xff) + 0.7152*ch(v>>8&0xff) + 0.0722*ch(v&0xff)
}

// contrast is the WCAG 2 contrast ratio of two colours.
func contrast(a, b string) float64 {
	la, lb := luminance(a), luminance(b)
	return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)
}

func TestContrast(t *testing.T) {
	assert.InDelta(t, 21, contrast("#000000", "#ffffff"), 0.01)
	assert.InDelta(t, 1, contrast("#777777", "#777777"), 0.01)
}

// TestPaletteMeetsWCAGAA: text on every background it is drawn on reaches 4.5:1, and the
// progress bar and borders (graphical objects) 3:1, in light and dark mode.
func TestPaletteMeetsWCAGAA(t *testing.T) {
	text := []string{"fg", "muted", "accent", "ok", "warn", "bad"}
	backgrounds := []string{"bg", "card"}
	for mode, p := range palettes(t) {
		for _, fg := range text {
			for _, bg := range backgrounds {
				t.Run(fmt.Sprintf("%s %s on %s", mode, fg, bg), func(t *testing.T) {
					require.Contains(t, p, fg)
					require.Contains(t, p, bg)
					assert.GreaterOrEqual(t, contrast(p[fg], p[bg]), 4.5, "%s on %s", p[fg], p[bg])
				})
			}
		}
		for _, pair := range [][2]string{{"bar", "bar-bg"}, {"bar-ok", "bar-bg"}, {"bar-bad", "bar-bg"}, {"border", "bg"}, {"border", "card"}} {
			t.Run(fmt.Sprintf("%s %s against %s", mode, pair[0], pair[1]), func(t *testing.T) {
				assert.GreaterOrEqual(t, contrast(p[pair[0]], p[pair[1]]), 3.0, "%s against %s", p[pair[0]], p[pair[1]])
			})
		}
	}
}
