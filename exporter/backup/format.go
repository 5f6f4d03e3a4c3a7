// Package backup writes and reads usagemeter backups: a consistent snapshot of the exporter's
// store (a ledger checkpoint), with a manifest naming what it holds and the SHA-256 of every
// file, encrypted with the archive key when one is configured, and restores one into an empty
// store directory after checking all of it.
package backup

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"time"

	"github.com/prometheus/common/version"

	"github.com/usagemeter/usagemeter/exporter/ledger"
	"github.com/usagemeter/usagemeter/exporter/retention"
)

// File format, version 1:
//
//	"usagemeter-backup-v1\n"
//	header JSON, one line (created, encrypted, nonce)
//	body: a tar stream, sealed with the archive key's chunked AES-256-GCM when encrypted
//	      (retention.SealWriter: the header line is authenticated with every chunk)
//
// The tar holds the store's files under store/, then MANIFEST.json, last: a backup cut short
// anywhere lacks its manifest, and restore refuses it.
const magic = "usagemeter-backup-v1\n"

// ContentType is the media type of a backup stream.
const ContentType = "application/vnd.usagemeter.backup"

// Extension is the conventional file extension of a backup.
const Extension = ".umbak"

const (
	manifestName = "MANIFEST.json"
	storeDir     = "store/"
	formatV1     = 1
)

// Header is the plaintext line after the magic.
type Header struct {
	Format    int       `json:"format"`
	Created   time.Time `json:"created"`
	Encrypted bool      `json:"encrypted"`
	Nonce     string    `json:"nonce,omitempty"` // hex, of the sealed stream
}

// File is one file of the store in a backup.
type File struct {
	Name   string `json:"name"` // relative to the store directory, slash-separated
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Manifest says what a backup holds.
type Manifest struct {
	Format          int       `json:"format"`
	Created         time.Time `json:"created"`
	ExporterVersion string    `json:"exporter_version"`
	ledger.SnapshotInfo
	Files []File `json:"files"`
	// Bytes is the sum of the files' sizes.
	Bytes int64 `json:"bytes"`
}

// Progress is told the bytes written or read so far, about once a second and once at the end.
type Progress func(bytes int64)

// throttled calls p at most once a second; done reports the final figure.
type throttled struct {
	p    Progress
	last time.Time
	n    int64
}

func (t *throttled) add(n int) {
	t.n += int64(n)
	if t.p != nil && time.Since(t.last) >= time.Second {
		t.last = time.Now()
		t.p(t.n)
	}
}

func (t *throttled) done() {
	if t.p != nil {
		t.p(t.n)
	}
}

type countingWriter struct {
	w io.Writer
	t *throttled
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.t.add(n)
	return n, err
}

// Write streams a backup of the checkpoint directory dir (ledger.Store.Checkpoint) to w,
// sealed with key when key is not nil, and returns its manifest.
func Write(ctx context.Context, w io.Writer, dir string, info ledger.SnapshotInfo, key []byte, progress Progress) (Manifest, error) {
	m := Manifest{Format: formatV1, Created: time.Now().UTC(), ExporterVersion: version.Version, SnapshotInfo: info}
	if m.ExporterVersion == "" {
		m.ExporterVersion = "unknown"
	}
	names, err := storeFiles(dir)
	if err != nil {
		return m, err
	}
	h := Header{Format: formatV1, Created: m.Created, Encrypted: key != nil}
	var nonce []byte
	if key != nil {
		if nonce, err = retention.NewNonce(); err != nil {
			return m, err
		}
		h.Nonce = hex.EncodeToString(nonce)
	}
	line, _ := json.Marshal(h)
	line = append(line, '\n')
	t := &throttled{p: progress, last: time.Now()}
	defer t.done()
	cw := &countingWriter{w: w, t: t}
	bw := bufio.NewWriterSize(cw, 1<<20)
	if _, err := bw.WriteString(magic); err != nil {
		return m, err
	}
	if _, err := bw.Write(line); err != nil {
		return m, err
	}
	var body io.Writer = bw
	var sealed io.WriteCloser
	if key != nil {
		if sealed, err = retention.SealWriter(bw, key, nonce, line); err != nil {
			return m, err
		}
		body = sealed
	}
	tw := tar.NewWriter(body)
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return m, err
		}
		f, err := addFile(tw, filepath.Join(dir, filepath.FromSlash(name)), name)
		if err != nil {
			return m, err
		}
		m.Files = append(m.Files, f)
		m.Bytes += f.Size
	}
	mb, _ := json.MarshalIndent(m, "", "  ")
	if err := tw.WriteHeader(&tar.Header{Name: manifestName, Mode: 0o600, Size: int64(len(mb)), ModTime: m.Created, Typeflag: tar.TypeReg}); err != nil {
		return m, fmt.Errorf("writing the manifest: %w", err)
	}
	if _, err := tw.Write(mb); err != nil {
		return m, fmt.Errorf("writing the manifest: %w", err)
	}
	if err := tw.Close(); err != nil {
		return m, fmt.Errorf("finishing the backup: %w", err)
	}
	if sealed != nil {
		if err := sealed.Close(); err != nil {
			return m, fmt.Errorf("sealing the backup: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return m, fmt.Errorf("writing the backup: %w", err)
	}
	return m, nil
}

// storeFiles lists the regular files under dir, slash-separated and sorted.
func storeFiles(dir string) ([]string, error) {
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		names = append(names, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing the checkpoint %s: %w", dir, err)
	}
	sort.Strings(names)
	return names, nil
}

func addFile(tw *tar.Writer, p, name string) (File, error) {
	f, err := os.Open(p)
	if err != nil {
		return File{}, fmt.Errorf("backing up %s: %w", name, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return File{}, fmt.Errorf("backing up %s: %w", name, err)
	}
	if err := tw.WriteHeader(&tar.Header{Name: storeDir + name, Mode: 0o600, Size: st.Size(), ModTime: st.ModTime(), Typeflag: tar.TypeReg}); err != nil {
		return File{}, fmt.Errorf("backing up %s: %w", name, err)
	}
	sum := sha256.New()
	// The checkpoint's files are immutable (tables are hard links; the rest are copies): the
	// size read above is what is copied.
	n, err := io.Copy(io.MultiWriter(tw, sum), io.LimitReader(f, st.Size()))
	if err != nil {
		return File{}, fmt.Errorf("backing up %s: %w", name, err)
	}
	if n != st.Size() {
		return File{}, fmt.Errorf("backing up %s: read %d of %d bytes", name, n, st.Size())
	}
	return File{Name: name, Size: n, SHA256: hex.EncodeToString(sum.Sum(nil))}, nil
}

// ReadHeader reads the plaintext header of a backup (to learn whether it is encrypted).
func ReadHeader(r io.Reader) (Header, error) {
	var h Header
	br := bufio.NewReader(r)
	got := make([]byte, len(magic))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != magic {
		return h, fmt.Errorf("%w: not a usagemeter backup (no %q header)", ErrDamaged, magic[:len(magic)-1])
	}
	line, err := br.ReadBytes('\n')
	if err != nil {
		return h, fmt.Errorf("%w: truncated in its header", ErrDamaged)
	}
	if err := json.Unmarshal(line, &h); err != nil {
		return h, fmt.Errorf("%w: bad header: %v", ErrDamaged, err)
	}
	return h, nil
}

// ErrDamaged is wrapped by every refusal of a backup that is truncated, changed or not a backup.
var ErrDamaged = errors.New("backup is damaged or incomplete")

// Extract reads a backup from r and writes the store's files into dir (which must exist; "" only
// checks the backup). Every file's checksum and size is checked against the manifest, and the
// manifest must come last and list exactly the files read: a truncated or changed backup is an
// error wrapping ErrDamaged that names the file. Key opens encrypted backups. On error, dir
// holds a partial copy for the caller to remove.
func Extract(ctx context.Context, r io.Reader, key []byte, dir string, progress Progress) (Manifest, error) {
	var m Manifest
	t := &throttled{p: progress, last: time.Now()}
	defer t.done()
	br := bufio.NewReaderSize(&countingReader{r: r, t: t}, 1<<20)
	got := make([]byte, len(magic))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != magic {
		return m, fmt.Errorf("%w: not a usagemeter backup (no %q header)", ErrDamaged, magic[:len(magic)-1])
	}
	line, err := br.ReadBytes('\n')
	if err != nil {
		return m, fmt.Errorf("%w: truncated in its header", ErrDamaged)
	}
	var h Header
	if err := json.Unmarshal(line, &h); err != nil {
		return m, fmt.Errorf("%w: bad header: %v", ErrDamaged, err)
	}
	if h.Format != formatV1 {
		return m, fmt.Errorf("backup format %d is not supported by this build (it reads format %d): upgrade usagectl", h.Format, formatV1)
	}
	var body io.Reader = br
	if h.Encrypted {
		if key == nil {
			return m, errors.New("the backup is encrypted: give the archive key (the config file's retention.key_file or retention.key_env)")
		}
		nonce, err := hex.DecodeString(h.Nonce)
		if err != nil {
			return m, fmt.Errorf("%w: bad nonce in the header", ErrDamaged)
		}
		if body, err = retention.OpenReader(br, key, nonce, line); err != nil {
			return m, err
		}
	}
	tr := tar.NewReader(body)
	files := map[string]File{}
	var order []string
	last := "the backup's header"
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return m, fmt.Errorf("%w: the backup ends after %s without its manifest (truncated: was the backup interrupted?)", ErrDamaged, last)
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return m, fmt.Errorf("%w: truncated after %s (was the backup interrupted?)", ErrDamaged, last)
		}
		if err != nil {
			return m, fmt.Errorf("%w: after %s: %v", ErrDamaged, last, err)
		}
		if err := ctx.Err(); err != nil {
			return m, err
		}
		if hdr.Name == manifestName {
			if err := readManifest(tr, hdr, &m); err != nil {
				return m, err
			}
			break
		}
		name, ok := cutStoreName(hdr.Name)
		if !ok || hdr.Typeflag != tar.TypeReg {
			return m, fmt.Errorf("%w: unexpected entry %q", ErrDamaged, hdr.Name)
		}
		if _, dup := files[name]; dup {
			return m, fmt.Errorf("%w: %s appears twice", ErrDamaged, name)
		}
		f, err := extractFile(tr, hdr, name, dir)
		if err != nil {
			return m, err
		}
		files[name] = f
		order = append(order, name)
		last = name
	}
	// Nothing may follow the manifest but the tar's end (and, sealed, the last chunk).
	if _, err := tr.Next(); !errors.Is(err, io.EOF) {
		return m, fmt.Errorf("%w: data after the manifest", ErrDamaged)
	}
	if _, err := io.Copy(io.Discard, body); err != nil {
		return m, fmt.Errorf("%w: at its end: %v", ErrDamaged, err)
	}
	if m.Format != formatV1 {
		return m, fmt.Errorf("%w: manifest format %d", ErrDamaged, m.Format)
	}
	listed := map[string]bool{}
	for _, f := range m.Files {
		listed[f.Name] = true
		got, ok := files[f.Name]
		switch {
		case !ok:
			return m, fmt.Errorf("%w: %s is listed in the manifest but missing", ErrDamaged, f.Name)
		case got.Size != f.Size:
			return m, fmt.Errorf("%w: %s has %d bytes, the manifest says %d", ErrDamaged, f.Name, got.Size, f.Size)
		case got.SHA256 != f.SHA256:
			return m, fmt.Errorf("%w: %s does not match its SHA-256 checksum (the file was changed)", ErrDamaged, f.Name)
		}
	}
	for _, name := range order {
		if !listed[name] {
			return m, fmt.Errorf("%w: %s is not listed in the manifest", ErrDamaged, name)
		}
	}
	return m, nil
}

type countingReader struct {
	r io.Reader
	t *throttled
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.t.add(n)
	return n, err
}

func readManifest(tr *tar.Reader, hdr *tar.Header, m *Manifest) error {
	if hdr.Size > 64<<20 {
		return fmt.Errorf("%w: the manifest is %d bytes", ErrDamaged, hdr.Size)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		return fmt.Errorf("%w: reading the manifest: %v", ErrDamaged, err)
	}
	if err := json.Unmarshal(b, m); err != nil {
		return fmt.Errorf("%w: the manifest: %v", ErrDamaged, err)
	}
	return nil
}

// cutStoreName returns the store-relative name of a store/ entry, refusing any that would leave
// the directory.
func cutStoreName(name string) (string, bool) {
	if len(name) <= len(storeDir) || name[:len(storeDir)] != storeDir {
		return "", false
	}
	rel := name[len(storeDir):]
	if !fs.ValidPath(rel) || path.Clean(rel) != rel {
		return "", false
	}
	return rel, true
}

func extractFile(tr *tar.Reader, hdr *tar.Header, name, dir string) (File, error) {
	sum := sha256.New()
	var w io.Writer = sum
	var out *os.File
	if dir != "" {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return File{}, fmt.Errorf("restoring %s: %w", name, err)
		}
		f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return File{}, fmt.Errorf("restoring %s: %w", name, err)
		}
		defer f.Close()
		out = f
		w = io.MultiWriter(f, sum)
	}
	n, err := io.Copy(w, tr)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return File{}, fmt.Errorf("%w: truncated inside %s (%d of %d bytes): was the backup interrupted?", ErrDamaged, name, n, hdr.Size)
		}
		return File{}, fmt.Errorf("%w: reading %s: %v", ErrDamaged, name, err)
	}
	if out != nil {
		if err := out.Sync(); err != nil {
			return File{}, fmt.Errorf("restoring %s: %w", name, err)
		}
	}
	return File{Name: name, Size: n, SHA256: hex.EncodeToString(sum.Sum(nil))}, nil
}
