#!/usr/bin/env bash
# Repeats the failures of a `go test -v` log at its end, where a CI log's tail shows them: the
# failed tests, then each testify failure (Error Trace, Error, Messages) and t.Fatal line, cut
# to a screenful each. The whole log stays in the file.
set -euo pipefail
log=$1
echo "===== failures (whole log: $log) ====="
grep -E -- '^ *--- FAIL' "$log" || true
awk '
  # testify: "    x_test.go:NN: " then the indented Error Trace block.
  /^ +[a-z_0-9]+_test\.go:[0-9]+: *$/ { head = $0; next }
  /^[ \t]+Error Trace:/ { print "-----"; if (head != "") print head; print; n = 30; head = ""; next }
  # t.Fatal, t.Error and friends: one line (and its continuation) naming a failure.
  /^ +[a-z_0-9]+_test\.go:[0-9]+: .*(fail|FAIL|not ready|broken|timed out|deadline|starting the local stack)/ { print "-----"; print; n = 10; next }
  n > 0 && /^(        |\t)/ { print; if (--n == 0) print "        …"; next }
  { n = 0; head = "" }
' "$log" | head -400
