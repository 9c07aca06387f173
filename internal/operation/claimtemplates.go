package operation

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/ferry-dev/ferry/internal/keys"
)

// ClaimTemplate is how a StatefulSet's volume claim template lands on the target: what its
// copied PVCs got (annotation keys.ClaimTemplates on the backed-up StatefulSet, by template).
type ClaimTemplate struct {
	// StorageClass nil: the target's default class.
	StorageClass *string                             `json:"storageClass,omitempty"`
	AccessModes  []corev1.PersistentVolumeAccessMode `json:"accessModes,omitempty"`
}

// ParseClaimTemplates reads keys.ClaimTemplates; nil when absent.
func ParseClaimTemplates(ann map[string]string) (map[string]ClaimTemplate, error) {
	v, ok := ann[keys.ClaimTemplates]
	if !ok {
		return nil, nil
	}
	var out map[string]ClaimTemplate
	if err := json.Unmarshal([]byte(v), &out); err != nil {
		return nil, fmt.Errorf("annotation %s is not ferry's claim-template record: %v", keys.ClaimTemplates, err)
	}
	return out, nil
}

// EncodeClaimTemplates renders the record for keys.ClaimTemplates.
func EncodeClaimTemplates(t map[string]ClaimTemplate) string {
	b, err := json.Marshal(t)
	if err != nil {
		panic(err) // plain fields: cannot fail
	}
	return string(b)
}
