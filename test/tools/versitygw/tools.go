//go:build tools

// Package tools pins versitygw, the S3 gateway the local stack serves its bucket from.
package tools

import _ "github.com/versity/versitygw/cmd/versitygw"
