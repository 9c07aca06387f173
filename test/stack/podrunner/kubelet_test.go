package podrunner

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseLogQuery(t *testing.T) {
	req := httptest.NewRequest("GET", "/containerLogs/ns/p/c?follow=true&previous=1&timestamps=true&tailLines=5&limitBytes=100&sinceTime=2026-01-02T03:04:05Z", nil)
	opts, previous, err := parseLogQuery(req)
	require.NoError(t, err)
	assert.True(t, opts.follow)
	assert.True(t, previous)
	assert.True(t, opts.timestamps)
	assert.Equal(t, int64(5), *opts.tailLines)
	assert.Equal(t, int64(100), *opts.limitBytes)
	assert.Equal(t, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), *opts.since)

	opts, _, err = parseLogQuery(httptest.NewRequest("GET", "/containerLogs/ns/p/c?sinceSeconds=60", nil))
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now().Add(-time.Minute), *opts.since, 5*time.Second)

	for _, bad := range []string{"follow=maybe", "tailLines=-1", "limitBytes=x", "sinceTime=yesterday", "sinceSeconds=1.5"} {
		_, _, err := parseLogQuery(httptest.NewRequest("GET", "/containerLogs/ns/p/c?"+bad, nil))
		assert.Error(t, err, bad)
	}
}
