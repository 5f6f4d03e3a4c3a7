package usagectl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	"golang.org/x/time/rate"

	"github.com/usagemeter/usagemeter/config"
	"github.com/usagemeter/usagemeter/exporter/backup"
	"github.com/usagemeter/usagemeter/exporter/ledger"
	"github.com/usagemeter/usagemeter/exporter/retention"
)

func init() { registrars = append(registrars, registerBackup) }

// partialSuffix marks a backup file still being written: it becomes the real name only once
// complete, so a backup cut short (usagectl killed, the exporter gone) never has a real name.
const partialSuffix = ".partial"

func registerBackup(app *kingpin.Application) {
	bk := app.Command("backup", "Take a consistent backup of the store: from a running exporter (--url, POST /v1/admin/backup), or offline from the store directory (--storage.path, exporter stopped).")
	url := bk.Flag("url", "Exporter base URL (online backup).").Default("http://127.0.0.1:9477").Envar("USAGEMETER_URL").String()
	token := bk.Flag("token", "API key or bearer token of a principal allowed the admin action.").Envar("USAGEMETER_TOKEN").String()
	storagePath := bk.Flag("storage.path", "Back up this store directory offline instead of asking an exporter (stop the exporter first).").String()
	cfgFile := bk.Flag("config.file", "The exporter's config file: its archive key (retention.key_file or retention.key_env) seals offline backups and verifies any backup; its meters open the store offline.").String()
	output := bk.Flag("output", "Backup file to write.").String()
	outputDir := bk.Flag("output-dir", "Write the backup into this directory as usagemeter-<UTC time>"+backup.Extension+" (instead of --output).").String()
	keep := bk.Flag("keep", "With --output-dir: keep this many newest backups there and delete older ones (0 keeps all).").Default("0").Int()
	limit := bk.Flag("limit-rate", "Read the backup at most this fast, e.g. 50MiB (0: no limit), to spare the exporter's disk and network.").Default("0").Bytes()
	bk.Action(func(*kingpin.ParseContext) error {
		run := func(ctx context.Context) error {
			target, err := backupTarget(*output, *outputDir)
			if err != nil {
				return err
			}
			key, err := archiveKey(*cfgFile)
			if err != nil {
				return err
			}
			progress := printProgress("backup", "written")
			var m backup.Manifest
			if *storagePath != "" {
				m, err = offlineBackup(ctx, *storagePath, *cfgFile, target, key, progress)
			} else {
				m, err = onlineBackup(ctx, strings.TrimRight(*url, "/"), *token, target, int64(*limit), progress)
			}
			if err != nil {
				return err
			}
			vm, ok, err := verifyFile(ctx, target, key)
			switch {
			case err != nil:
				os.Remove(target)
				return fmt.Errorf("the backup written to %s does not check out, removed it: %w", target, err)
			case ok:
				m = vm
				fmt.Printf("backup %s: %d files, %s, %d events, schema %d, last group %d; verified: every checksum matches its manifest\n",
					target, len(m.Files), humanBytes(m.Bytes), m.Events, m.SchemaVersion, m.LastGroup)
			default:
				st, _ := os.Stat(target)
				fmt.Printf("backup %s: %s; encrypted, not verified here (give --config.file with the archive key to verify it)\n", target, humanBytes(st.Size()))
			}
			if *outputDir != "" && *keep > 0 {
				return pruneBackups(*outputDir, *keep)
			}
			return nil
		}
		return withSignals(run)
	})

	rs := app.Command("restore", "Check a backup (manifest, checksums, the store it holds) and restore it into an empty store directory (exporter stopped).")
	file := rs.Arg("backup", "The backup file.").Required().String()
	rsPath := rs.Flag("storage.path", "The store directory to restore into: empty or absent, unless --force.").Default("./data").String()
	rsCfg := rs.Flag("config.file", "The exporter's config file, for the archive key of encrypted backups (retention.key_file or retention.key_env).").String()
	force := rs.Flag("force", "Replace the contents of a store directory that is not empty (only after the backup checked out in full).").Bool()
	checkOnly := rs.Flag("check-only", "Only check the backup; restore nothing.").Bool()
	rs.Action(func(*kingpin.ParseContext) error {
		return withSignals(func(ctx context.Context) error {
			key, err := archiveKey(*rsCfg)
			if err != nil {
				return err
			}
			progress := printProgress("restore", "read")
			if *checkOnly {
				f, err := os.Open(*file)
				if err != nil {
					return err
				}
				defer f.Close()
				m, err := backup.Extract(ctx, f, key, "", progress)
				if err != nil {
					return fmt.Errorf("%s: %w", *file, err)
				}
				fmt.Printf("backup %s is complete and intact: %d files, %s, %d events, schema %d, last group %d, taken %s by exporter %s\n",
					*file, len(m.Files), humanBytes(m.Bytes), m.Events, m.SchemaVersion, m.LastGroup, m.Created.Format(time.RFC3339), m.ExporterVersion)
				return nil
			}
			m, err := backup.Restore(ctx, *file, *rsPath, backup.RestoreOptions{Key: key, Force: *force, Progress: progress})
			if err != nil {
				return err
			}
			fmt.Printf("restored %s into %s: %d files, %s, %d events, schema %d, last group %d, taken %s by exporter %s\n",
				*file, *rsPath, len(m.Files), humanBytes(m.Bytes), m.Events, m.SchemaVersion, m.LastGroup, m.Created.Format(time.RFC3339), m.ExporterVersion)
			return nil
		})
	})
}

// withSignals runs fn with a context cancelled by SIGINT or SIGTERM, and makes the command's
// error the action's (usagectl prints it and exits non-zero).
func withSignals(fn func(ctx context.Context) error) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return fn(ctx)
}

func backupTarget(output, dir string) (string, error) {
	switch {
	case output != "" && dir != "":
		return "", errors.New("give --output or --output-dir, not both")
	case output != "":
		return output, nil
	case dir != "":
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", err
		}
		return filepath.Join(dir, "usagemeter-"+time.Now().UTC().Format("20060102T150405Z")+backup.Extension), nil
	}
	return "", errors.New("give --output FILE or --output-dir DIR")
}

// archiveKey reads the archive key the config file names (nil when there is none).
func archiveKey(cfgFile string) ([]byte, error) {
	if cfgFile == "" {
		return nil, nil
	}
	cfg, err := config.Load(cfgFile)
	if err != nil {
		return nil, err
	}
	p, err := retention.ParseConfig(&cfg.Retention)
	if err != nil {
		return nil, err
	}
	if p.KeyFile == "" && p.KeyEnv == "" {
		return nil, nil
	}
	return retention.LoadKey(p.KeyFile, p.KeyEnv)
}

func printProgress(what, verb string) backup.Progress {
	return func(n int64) { fmt.Fprintf(os.Stderr, "%s: %s %s\n", what, humanBytes(n), verb) }
}

// createPartial opens target's partial file; commitPartial makes it the target.
func createPartial(target string) (*os.File, error) {
	if _, err := os.Stat(target); err == nil {
		return nil, fmt.Errorf("%s exists: choose another name", target)
	}
	f, err := os.OpenFile(target+partialSuffix, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating the backup file: %w", err)
	}
	return f, nil
}

func commitPartial(f *os.File, target string) error {
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("writing %s: %w", f.Name(), err)
	}
	if err := os.Rename(f.Name(), target); err != nil {
		return fmt.Errorf("naming the backup %s: %w", target, err)
	}
	if d, err := os.Open(filepath.Dir(target)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func offlineBackup(ctx context.Context, path, cfgFile, target string, key []byte, progress backup.Progress) (backup.Manifest, error) {
	cfg, err := config.Load(cfgFile)
	if err != nil {
		return backup.Manifest{}, err
	}
	if _, err := os.Stat(path); err != nil {
		return backup.Manifest{}, fmt.Errorf("no store at %s: %w", path, err)
	}
	s, err := ledger.Open(ctx, ledger.Options{Path: path, Meters: cfg.Meters, SeriesLimit: cfg.Metrics.SeriesLimit, PerUserLabels: cfg.Metrics.PerUserLabels,
		Logger: promslog.New(&promslog.Config{Writer: os.Stderr})})
	if err != nil {
		return backup.Manifest{}, fmt.Errorf("%w (is an exporter running on this store? then back up through it with --url)", err)
	}
	defer s.Close()
	f, err := createPartial(target)
	if err != nil {
		return backup.Manifest{}, err
	}
	m, err := backup.Take(ctx, s, f, key, progress)
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return m, fmt.Errorf("backup failed, nothing was written to %s: %w", target, err)
	}
	return m, commitPartial(f, target)
}

func onlineBackup(ctx context.Context, url, token, target string, limit int64, progress backup.Progress) (backup.Manifest, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/admin/backup", nil)
	if err != nil {
		return backup.Manifest{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := http.DefaultClient
	if limit > 0 {
		// A small receive buffer, or the kernel reads tens of MiB ahead of the limit (its
		// autotuning) and the exporter's disk is not spared at all.
		rcvbuf := int(min(max(limit/4, 64<<10), 4<<20))
		dialer := &net.Dialer{Timeout: 30 * time.Second, Control: func(_, _ string, c syscall.RawConn) error { return setReceiveBuffer(c, rcvbuf) }}
		client = &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext, Proxy: http.ProxyFromEnvironment}}
	}
	resp, err := client.Do(req)
	if err != nil {
		return backup.Manifest{}, fmt.Errorf("asking %s for a backup: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return backup.Manifest{}, fmt.Errorf("the exporter refused the backup: %s", describeRefusal(resp))
	}
	f, err := createPartial(target)
	if err != nil {
		return backup.Manifest{}, err
	}
	var body io.Reader = resp.Body
	if limit > 0 {
		body = &limitedReader{r: body, l: rate.NewLimiter(rate.Limit(limit), int(min(limit, 256<<10))), ctx: ctx}
	}
	t := &progressWriter{w: f, p: progress, last: time.Now()}
	n, err := io.Copy(t, body)
	progress(n)
	if err == nil {
		if msg := resp.Trailer.Get(backup.ErrorTrailer); msg != "" {
			err = fmt.Errorf("the exporter reported: %s", msg)
		}
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return backup.Manifest{}, fmt.Errorf("the backup stream from %s broke after %s (%w): the backup is incomplete and was discarded; nothing was written to %s", url, humanBytes(n), err, target)
	}
	return backup.Manifest{}, commitPartial(f, target)
}

// verifyFile checks a backup file in full; ok is false when it cannot (encrypted, no key).
func verifyFile(ctx context.Context, file string, key []byte) (backup.Manifest, bool, error) {
	f, err := os.Open(file)
	if err != nil {
		return backup.Manifest{}, false, err
	}
	defer f.Close()
	h, err := backup.ReadHeader(f)
	if err != nil {
		return backup.Manifest{}, false, err
	}
	if h.Encrypted && key == nil {
		return backup.Manifest{}, false, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return backup.Manifest{}, false, err
	}
	m, err := backup.Extract(ctx, f, key, "", nil)
	return m, err == nil, err
}

type progressWriter struct {
	w    io.Writer
	p    backup.Progress
	n    int64
	last time.Time
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.n += int64(n)
	if time.Since(p.last) >= time.Second {
		p.last = time.Now()
		p.p(p.n)
	}
	return n, err
}

type limitedReader struct {
	r   io.Reader
	l   *rate.Limiter
	ctx context.Context
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if len(p) > l.l.Burst() {
		p = p[:l.l.Burst()]
	}
	n, err := l.r.Read(p)
	if n > 0 {
		if werr := l.l.WaitN(l.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}

// pruneBackups keeps the newest keep backups in dir (by their time-stamped names), and removes
// the partial files of backups interrupted more than a day ago (usagectl killed: nothing else
// removes them; a younger one may belong to a backup still running).
func pruneBackups(dir string, keep int) error {
	all, err := filepath.Glob(filepath.Join(dir, "usagemeter-*"+backup.Extension))
	if err != nil {
		return err
	}
	sort.Strings(all)
	for len(all) > keep {
		if err := os.Remove(all[0]); err != nil {
			return fmt.Errorf("pruning old backups: %w", err)
		}
		fmt.Printf("removed old backup %s\n", all[0])
		all = all[1:]
	}
	partial, err := filepath.Glob(filepath.Join(dir, "usagemeter-*"+backup.Extension+partialSuffix))
	if err != nil {
		return err
	}
	for _, p := range partial {
		if st, err := os.Stat(p); err == nil && time.Since(st.ModTime()) > 24*time.Hour {
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("pruning interrupted backups: %w", err)
			}
			fmt.Printf("removed the partial file of an interrupted backup %s\n", p)
		}
	}
	return nil
}

// describeRefusal renders an error answer: its status and its problem detail when it has one.
func describeRefusal(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var p struct {
		Detail string `json:"detail"`
	}
	if json.Unmarshal(b, &p) == nil && p.Detail != "" {
		return resp.Status + ": " + p.Detail
	}
	return resp.Status
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, u := float64(n)/unit, 0
	for f >= unit && u < 4 {
		f /= unit
		u++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGTP"[u])
}
