package images

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// finalStage is what the last stage of a Dockerfile says about the image it makes.
type finalStage struct {
	from       string
	debian     []string          // packages of `apt-get install`
	copies     map[string]string // destination -> "--from stage:source"
	user       string
	entrypoint []string
	err        error // an instruction of this stage that the test cannot mirror
}

// parseDockerfile reads the instructions of the last stage (continuation lines joined, comments
// dropped). It knows the instructions ferry's Dockerfiles use and fails on any other, so a new
// instruction makes the test fail until the definitions learn it.
func parseDockerfile(file string) (finalStage, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return finalStage{}, err
	}
	var lines []string
	var cur strings.Builder
	for _, l := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(l)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if body, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(trimmed)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	var st finalStage
	for _, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "FROM":
			st = finalStage{from: strings.Fields(rest)[0], copies: map[string]string{}}
		case "ARG", "WORKDIR":
		case "RUN":
			if pkgs, ok := aptInstall(rest); ok {
				st.debian = append(st.debian, pkgs...)
			}
		case "COPY":
			f := strings.Fields(rest)
			from := ""
			if v, ok := strings.CutPrefix(f[0], "--from="); ok {
				from, f = v, f[1:]
			}
			if len(f) != 2 {
				st.err = fmt.Errorf("%s: want COPY with one source in the final stage: %s", file, l)
				continue
			}
			dest := f[1]
			if strings.HasSuffix(dest, "/") {
				dest += path.Base(f[0])
			}
			st.copies[dest] = from + ":" + f[0]
		case "USER":
			st.user = rest
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &st.entrypoint); err != nil {
				return st, fmt.Errorf("%s: want ENTRYPOINT in exec form: %w", file, err)
			}
		default:
			return st, fmt.Errorf("%s: instruction %s is not mirrored by package images: teach the definitions and this test", file, instr)
		}
	}
	return st, st.err
}

// aptInstall returns the packages of the `apt-get install` in a RUN line.
func aptInstall(run string) ([]string, bool) {
	for _, cmd := range strings.Split(run, "&&") {
		f := strings.Fields(cmd)
		if len(f) >= 2 && f[0] == "apt-get" && f[1] == "install" {
			var pkgs []string
			for _, w := range f[2:] {
				if !strings.HasPrefix(w, "-") {
					pkgs = append(pkgs, w)
				}
			}
			return pkgs, true
		}
	}
	return nil, false
}

// The images built here and the Dockerfiles users build must stay one definition: same base,
// Debian packages, files, user and entrypoint.
func TestDefinitionsFollowTheDockerfiles(t *testing.T) {
	for _, d := range []Definition{Datamover, Plugins} {
		t.Run(d.Name, func(t *testing.T) {
			st, err := parseDockerfile(filepath.Join("..", "..", d.Dockerfile))
			require.NoError(t, err)
			switch {
			case strings.HasPrefix(st.from, "debian:bookworm"):
				require.NotNil(t, d.Debian, "the Dockerfile starts from Debian bookworm")
				assert.ElementsMatch(t, st.debian, d.Debian, "Debian packages")
			case st.from == "scratch":
				assert.Nil(t, d.Debian, "FROM scratch: no Debian base")
				assert.False(t, d.Busybox, "FROM scratch: no busybox base")
			default:
				t.Fatalf("base %q is not mirrored by package images", st.from)
			}
			want := map[string]string{}
			for dest, from := range st.copies {
				stage, src, _ := strings.Cut(from, ":")
				switch stage {
				case "build": // ferry's own binary, from `go build ./cmd/...`
					want[dest] = "ferry:" + path.Base(src)
				case "busybox":
					want[dest] = "busybox"
				default:
					t.Errorf("COPY --from=%s %s: stage not mirrored", stage, src)
				}
			}
			got := map[string]string{}
			for _, f := range d.Files {
				switch {
				case f.From.FerryBinary != "":
					got[f.Dest] = "ferry:" + f.From.FerryBinary
				case f.From.Busybox:
					got[f.Dest] = "busybox"
				default:
					got[f.Dest] = "go:" + f.From.GoPackage
				}
			}
			assert.Equal(t, want, got, "files")
			assert.Equal(t, st.user, d.User, "USER")
			assert.Equal(t, st.entrypoint, d.Entrypoint, "ENTRYPOINT")
		})
	}
}

func TestParseDockerfileRefusesUnknownInstructions(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "Dockerfile")
	require.NoError(t, os.WriteFile(f, []byte("FROM scratch\nRUN apt-get update \\\n && apt-get install -y a b\nUSER 1\n"), 0o644))
	st, err := parseDockerfile(f)
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b"}, st.debian)
	assert.Equal(t, "1", st.user)

	require.NoError(t, os.WriteFile(f, []byte("FROM scratch\nVOLUME /x\n"), 0o644))
	_, err = parseDockerfile(f)
	assert.ErrorContains(t, err, "VOLUME is not mirrored")
}
