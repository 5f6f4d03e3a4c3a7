// Command summary prints the benchmark results that `make bench` collected in bench-results/
// as one table: *.tsv files (name, value, unit, note per line) and *.txt files holding
// `go test -bench` output (every metric of every benchmark line).
package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
)

func main() {
	dir := "bench-results"
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.tsv"))
	txt, _ := filepath.Glob(filepath.Join(dir, "*.txt"))
	files = append(files, txt...)
	sort.Strings(files)
	if len(files) == 0 {
		fmt.Fprintln(os.Stderr, "no benchmark results in", dir)
		os.Exit(1)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "AREA\tBENCHMARK\tVALUE\tUNIT\tNOTE")
	for _, f := range files {
		area := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(f), ".tsv"), ".txt")
		goBench := strings.HasSuffix(f, ".txt")
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			if goBench {
				// BenchmarkName-2   10   123 ns/op   45.6 events/s ...
				fields := strings.Fields(sc.Text())
				if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
					continue
				}
				for i := 2; i+1 < len(fields); i += 2 {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", area, fields[0], fields[i], fields[i+1], fields[1]+" iterations")
				}
				continue
			}
			parts := strings.SplitN(sc.Text(), "\t", 4)
			for len(parts) < 4 {
				parts = append(parts, "")
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", area, parts[0], parts[1], parts[2], parts[3])
		}
		fh.Close()
	}
	w.Flush()
}
