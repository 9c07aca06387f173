package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// The bench writes each part's tables into the docs (docs/benchmarks.md) between that part's
// markers,
//
//	<!-- bench:dataplane:PART:begin --> … <!-- bench:dataplane:PART:end -->
//
// and the runs that measured them between the markers of "run", with a link to the chart
// (chart.go). Everything outside the markers is hand-written. A run replaces only the parts it
// measured, so `-only block` leaves the other tables, and their run's line, as they were.

// report is what a run measured, part by part: the Markdown printed on stdout and written into
// the docs, and the chart's panels.
type report struct {
	started   time.Time
	loadStart string
	parts     []string // in the order measured
	markdown  map[string]string
	panels    map[string][]panel
}

func newReport() *report {
	return &report{started: time.Now(), loadStart: loadAvg(), markdown: map[string]string{}, panels: map[string][]panel{}}
}

// publish prints a part's Markdown and keeps it, with its chart panels, for the docs.
func (b *bench) publish(part, markdown string, panels ...panel) {
	fmt.Printf("\n%s", markdown)
	r := b.report
	if !slices.Contains(r.parts, part) {
		r.parts = append(r.parts, part)
	}
	if r.markdown[part] != "" {
		r.markdown[part] += "\n"
	}
	r.markdown[part] += markdown
	if len(panels) > 0 {
		r.panels[part] = append(r.panels[part], panels...)
	}
}

func markers(name string) (begin, end string) {
	return "<!-- bench:dataplane:" + name + ":begin -->", "<!-- bench:dataplane:" + name + ":end -->"
}

// region returns the bounds of the text between name's markers.
func region(doc, name string) (from, to int, err error) {
	begin, end := markers(name)
	i := strings.Index(doc, begin)
	if i < 0 {
		return 0, 0, fmt.Errorf("no %s in the docs: add the pair %s %s where the %s tables go", begin, begin, end, name)
	}
	from = i + len(begin)
	j := strings.Index(doc[from:], end)
	if j < 0 {
		return 0, 0, fmt.Errorf("%s has no %s after it in the docs", begin, end)
	}
	return from, from + j, nil
}

// checkDocs fails before the measurements, not half an hour later, if the docs lack a region
// the run will write. A docs file that does not exist is made at the end.
func checkDocs(path string, parts []string) error {
	doc, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, p := range append([]string{"run"}, parts...) {
		if _, _, err := region(string(doc), p); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return nil
}

// writeDocs puts the measured parts' Markdown into the docs and this run into its list of runs,
// with a link to the chart (chartPath, "" for none).
func (r *report) writeDocs(path, chartPath string) error {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		var b strings.Builder
		b.WriteString("# Data-plane benchmark\n")
		for _, p := range append([]string{"run"}, allParts...) {
			begin, end := markers(p)
			fmt.Fprintf(&b, "\n%s\n%s\n", begin, end)
		}
		raw, err = []byte(b.String()), nil
	}
	if err != nil {
		return err
	}
	doc := string(raw)
	replace := func(name, content string) error {
		from, to, err := region(doc, name)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		doc = doc[:from] + "\n" + strings.TrimSpace(content) + "\n" + doc[to:]
		return nil
	}
	for _, p := range r.parts {
		if err := replace(p, r.markdown[p]); err != nil {
			return err
		}
	}
	from, to, err := region(doc, "run")
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	link := ""
	if chartPath != "" {
		if link, err = relativeLink(path, chartPath); err != nil {
			return err
		}
	}
	if err := replace("run", r.runs(doc[from:to], link)); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(doc), 0o644)
}

func relativeLink(docs, target string) (string, error) {
	d, err := filepath.Abs(filepath.Dir(docs))
	if err != nil {
		return "", err
	}
	t, err := filepath.Abs(target)
	if err != nil {
		return "", err
	}
	return filepath.Rel(d, t)
}

// runs rewrites the list of runs: this one first, naming the parts it measured, then the
// earlier ones that still have parts in the docs. Each entry reads
// "- **part, part**: what ran, when, where".
func (r *report) runs(old, link string) string {
	var b strings.Builder
	image := ""
	var earlier []string
	for _, line := range strings.Split(old, "\n") {
		if strings.HasPrefix(line, "![") {
			image = line
		}
		rest, ok := strings.CutPrefix(line, "- **")
		if !ok {
			continue
		}
		names, what, ok := strings.Cut(rest, "**: ")
		if !ok {
			continue
		}
		var keep []string
		for _, n := range strings.Split(names, ", ") {
			if !slices.Contains(r.parts, n) {
				keep = append(keep, n)
			}
		}
		if len(keep) > 0 {
			earlier = append(earlier, fmt.Sprintf("- **%s**: %s", strings.Join(keep, ", "), what))
		}
	}
	if link != "" {
		image = fmt.Sprintf("![Time of each tool, per dataset: bar chart of the tables below](%s)", link)
	}
	if image != "" {
		b.WriteString(image + "\n\n")
	}
	b.WriteString("The runs that measured the tables below, each part from its latest run:\n\n")
	fmt.Fprintf(&b, "- **%s**: %s\n", strings.Join(r.parts, ", "), r.describe())
	for _, e := range earlier {
		b.WriteString(e + "\n")
	}
	return b.String()
}

// describe says what ran, when and where: the command line, the time, the machine and its load.
func (r *report) describe() string {
	end := time.Now().UTC()
	span := r.started.UTC().Format("2006-01-02 15:04") + "–" + end.Format("15:04") + " UTC"
	return fmt.Sprintf("`%s` (as root), %s, on %d × %s with %s of memory; load average (1, 5, 15 min) %s at the start, %s at the end",
		commandLine(), span, runtime.NumCPU(), cpuModel(), memTotal(), r.loadStart, loadAvg())
}

// commandLine is the bench's command line as typed: `go run` for a binary in Go's build cache,
// paths below the working directory relative to it, and the environment the bench reads.
func commandLine() string {
	cwd, _ := os.Getwd()
	args := []string{os.Args[0]}
	if strings.Contains(os.Args[0], "go-build") {
		args = []string{"go", "run", "./test/bench/dataplane"}
	}
	for _, a := range os.Args[1:] {
		if cwd != "" {
			a = strings.ReplaceAll(a, cwd+"/", "")
		}
		if strings.ContainsAny(a, " '\"$*?") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		args = append(args, a)
	}
	var env []string
	for _, name := range []string{"FERRY_BENCH_ONLY", "FERRY_BENCH_REPEAT"} {
		if v := os.Getenv(name); v != "" {
			env = append(env, name+"="+v)
		}
	}
	return strings.Join(append(env, args...), " ")
}

func memTotal() string {
	b, _ := os.ReadFile("/proc/meminfo")
	var kb int64
	for _, line := range strings.Split(string(b), "\n") {
		if _, err := fmt.Sscanf(line, "MemTotal: %d kB", &kb); err == nil {
			break
		}
	}
	return fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
}

func (r *report) printHeader() {
	host, _ := os.Hostname()
	fmt.Printf("ferry data-plane benchmark — %s, %d CPUs (%s), %s of memory, %s\n", host, runtime.NumCPU(), cpuModel(), memTotal(), r.started.Format(time.RFC3339))
	fmt.Printf("%s\n", commandLine())
	fmt.Printf("load average at start: %s\n", r.loadStart)
}

func (r *report) printFooter() {
	fmt.Printf("\nload average at the end: %s; the bench took %s\n", loadAvg(), time.Since(r.started).Round(time.Second))
}
