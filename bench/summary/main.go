// Command summary prints the benchmark results that `make bench` collected in
// bench-results/*.tsv (name, value, unit, note per line) as one table.
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
	sort.Strings(files)
	if len(files) == 0 {
		fmt.Fprintln(os.Stderr, "no benchmark results in", dir)
		os.Exit(1)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "AREA\tBENCHMARK\tVALUE\tUNIT\tNOTE")
	for _, f := range files {
		area := strings.TrimSuffix(filepath.Base(f), ".tsv")
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
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
