package cdp

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPage drives a real Chromium: evaluation, the viewport, the colour scheme, screenshots,
// and that the errors a page logs are seen (the dashboard's tests rely on an empty list meaning
// something).
func TestPage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := Launch()
	require.NoError(t, err)
	defer b.Close()
	p, err := b.NewPage(ctx)
	require.NoError(t, err)

	require.NoError(t, p.Navigate(ctx, `data:text/html,<meta name=viewport content="width=device-width"><title>t</title><button>Go</button><script>console.error("boom")</script>`))
	var sum int
	require.NoError(t, p.Eval(ctx, `Promise.resolve(20 + 22)`, &sum))
	assert.Equal(t, 42, sum)
	assert.Error(t, p.Eval(ctx, `no.such.thing`, nil))

	require.NoError(t, p.Viewport(ctx, 390, 844, true))
	var width int
	require.NoError(t, p.Eval(ctx, `window.innerWidth`, &width))
	assert.Equal(t, 390, width)

	require.NoError(t, p.ColorScheme(ctx, "dark"))
	var dark bool
	require.NoError(t, p.Eval(ctx, `matchMedia("(prefers-color-scheme: dark)").matches`, &dark))
	assert.True(t, dark)

	png, err := p.Screenshot(ctx, false)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(png), "\x89PNG"))

	nodes, err := p.Accessibility(ctx)
	require.NoError(t, err)
	assert.Contains(t, nodes, AXNode{Role: "button", Name: "Go"})

	require.Eventually(t, func() bool { return len(p.Errors()) > 0 }, 5*time.Second, 50*time.Millisecond)
	assert.Contains(t, p.Errors()[0], "boom")
}
