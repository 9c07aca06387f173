package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-dev/ferry/dashboard/view"
)

func TestPrintStatus(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	last := now.Add(-90 * time.Second)
	page := view.Page{Groups: []view.Group{
		{Namespace: "shop", Backups: []view.Backup{{Name: "stage-1", Items: []view.Item{
			{Row: view.Row{Namespace: "shop", Kind: view.KindPVC, Name: "web-data", Backup: "stage-1", Phase: "Transferring", Percent: 41.6, RateBPS: 3 << 20, ETASeconds: 75, LastSuccess: &last, Verified: "identical (1200 files)"}},
			{Row: view.Row{Namespace: "shop", Kind: view.KindImageStream, Name: "web", Backup: "stage-1", Phase: "Completed", Percent: 100}},
		}}}},
		{Namespace: "blog", Backups: []view.Backup{{Name: "final-2", Items: []view.Item{
			{Row: view.Row{Namespace: "blog", Kind: view.KindPVC, Name: "db", Backup: "final-2", Phase: "Failed"}},
		}}}},
	}}
	tests := []struct {
		name       string
		namespaces []string
		format     string
		want       string
	}{
		{name: "all namespaces, sorted", format: "text", want: "" +
			"NAMESPACE   KIND          NAME       BACKUP    PHASE          PERCENT   RATE        ETA     LAST SUCCESS   VERIFIED\n" +
			"blog        PVC           db         final-2   Failed         0%        -           -       -              -\n" +
			"shop        ImageStream   web        stage-1   Completed      100%      -           -       -              -\n" +
			"shop        PVC           web-data   stage-1   Transferring   42%       3.0 MiB/s   1m15s   1m30s ago      identical (1200 files)\n"},
		{name: "one namespace", namespaces: []string{"blog"}, format: "text", want: "" +
			"NAMESPACE   KIND   NAME   BACKUP    PHASE    PERCENT   RATE   ETA   LAST SUCCESS   VERIFIED\n" +
			"blog        PVC    db     final-2   Failed   0%        -      -     -              -\n"},
		{name: "nothing there", namespaces: []string{"empty"}, format: "text", want: "no ferry transfers or image copies\n"},
		{name: "json", namespaces: []string{"blog"}, format: "json", want: "{\n  \"items\": [\n    {\n      \"namespace\": \"blog\",\n      \"kind\": \"PVC\",\n      \"name\": \"db\",\n      \"backup\": \"final-2\",\n      \"phase\": \"Failed\",\n      \"percent\": 0\n    }\n  ]\n}\n"},
		{name: "yaml, empty", namespaces: []string{"empty"}, format: "yaml", want: "items: []\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			require.NoError(t, printStatus(&b, tc.format, statusRows(page, tc.namespaces), now))
			assert.Equal(t, tc.want, b.String())
		})
	}
}
