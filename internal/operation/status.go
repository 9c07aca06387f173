package operation

import (
	"encoding/json"
	"fmt"
	"time"
)

// Header opens every status the sidecar writes: which request it answers, where it is, why,
// and when. Statuses embed it, so its fields sit at the top level of the JSON.
type Header struct {
	ID      string `json:"id"`
	Phase   Phase  `json:"phase"`
	Message string `json:"message,omitempty"`
	Started *Time  `json:"started,omitempty"`
	// Updated is when the status last changed.
	Updated   *Time `json:"updated,omitempty"`
	Completed *Time `json:"completed,omitempty"`
	// Since is when the current phase began; phase time limits count from it, so they survive a
	// restart of the sidecar.
	Since *Time `json:"since,omitempty"`
}

// Head returns the header, for code that handles any status.
func (h *Header) Head() *Header { return h }

// Status is a status with its header: TransferStatus or ImageCopyStatus.
type Status interface {
	Head() *Header
}

// Time is an RFC 3339 timestamp in JSON, to the second.
type Time struct{ time.Time }

// NewTime returns t truncated to seconds.
func NewTime(t time.Time) *Time { return &Time{t.UTC().Truncate(time.Second)} }

func (t Time) MarshalJSON() ([]byte, error) { return json.Marshal(t.UTC().Format(time.RFC3339)) }

func (t *Time) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	p, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return err
	}
	t.Time = p
	return nil
}

// decode reads a status kept as JSON in annotation key; (nil, nil) when there is none. what
// names the status in the error.
func decode[T any](ann map[string]string, key, what string) (*T, error) {
	v, ok := ann[key]
	if !ok || v == "" {
		return nil, nil
	}
	var out T
	if err := json.Unmarshal([]byte(v), &out); err != nil {
		return nil, fmt.Errorf("annotation %s is not %s: %v", key, what, err)
	}
	return &out, nil
}

// Encode renders a status for its annotation.
func Encode(st Status) string {
	b, err := json.Marshal(st)
	if err != nil {
		// Only plain fields: cannot fail.
		panic(err)
	}
	return string(b)
}
