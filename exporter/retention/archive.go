// Package retention enforces data retention: data past its retention period is archived to a
// compressed, encrypted file, verified, and only then deleted from the store; an archive can be
// restored, and restored data answers usage queries exactly as before.
package retention

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// File format, version 1:
//
//	"usagemeter-archive-v1\n"
//	header JSON, one line (class, month, nonce, created, keys)
//	chunks: uint32 length, then AES-256-GCM ciphertext of up to 1 MiB of plaintext
//
// The plaintext is a gzip stream of records: uvarint key length, key, uvarint value length,
// value. Chunk i is sealed with nonce = header nonce (8 bytes) || i (4 bytes), and additional
// data = SHA-256(header line) || i || last flag, so chunks cannot be reordered, dropped,
// truncated or moved to another archive without the open failing.
const magic = "usagemeter-archive-v1\n"

const chunkSize = 1 << 20

// Header describes an archive.
type Header struct {
	Class   string    `json:"class"`
	Month   string    `json:"month"` // YYYY-MM
	Created time.Time `json:"created"`
	Nonce   string    `json:"nonce"` // hex, 8 bytes
	Keys    int       `json:"keys"`
}

// FileName is the archive's name: <class>-<YYYY-MM>.umarc.
func FileName(class string, month time.Time) string {
	return class + "-" + month.UTC().Format("2006-01") + ".umarc"
}

type sealer struct {
	aead   cipher.AEAD
	nonce  []byte
	hdrSum [32]byte
	n      uint32
}

func newSealer(key []byte, nonce []byte, headerLine []byte) (*sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("archive key has %d bytes; AES-256 needs 32", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead, nonce: nonce, hdrSum: sha256.Sum256(headerLine)}, nil
}

func (s *sealer) params(last bool) (nonce, ad []byte) {
	nonce = binary.BigEndian.AppendUint32(bytes.Clone(s.nonce), s.n)
	ad = binary.BigEndian.AppendUint32(s.hdrSum[:], s.n)
	if last {
		ad = append(ad, 1)
	} else {
		ad = append(ad, 0)
	}
	return nonce, ad
}

// chunkWriter seals plaintext in chunks; Close seals the last one.
type chunkWriter struct {
	w   io.Writer
	s   *sealer
	buf []byte
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		room := chunkSize - len(c.buf)
		take := min(room, len(p))
		c.buf = append(c.buf, p[:take]...)
		p = p[take:]
		if len(c.buf) == chunkSize {
			if err := c.seal(false); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (c *chunkWriter) seal(last bool) error {
	nonce, ad := c.s.params(last)
	ct := c.s.aead.Seal(nil, nonce, c.buf, ad)
	if err := binary.Write(c.w, binary.BigEndian, uint32(len(ct))); err != nil {
		return err
	}
	if _, err := c.w.Write(ct); err != nil {
		return err
	}
	c.s.n++
	c.buf = c.buf[:0]
	return nil
}

func (c *chunkWriter) Close() error { return c.seal(true) }

// Writer writes an archive. Add records, then Close; the file is complete only after Close.
type Writer struct {
	f    *os.File
	path string
	bw   *bufio.Writer
	cw   *chunkWriter
	gz   *gzip.Writer
	keys int
	tmp  string
}

// Create starts an archive at path (written to path.tmp and renamed on Close, so a crash never
// leaves a half archive under the real name).
func Create(path string, key []byte, class string, month time.Time, keys int) (*Writer, error) {
	nonce := make([]byte, 8)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	hdr, _ := json.Marshal(Header{Class: class, Month: month.UTC().Format("2006-01"), Created: time.Now().UTC(), Nonce: hex.EncodeToString(nonce), Keys: keys})
	line := append(hdr, '\n')
	s, err := newSealer(key, nonce, line)
	if err != nil {
		return nil, err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating archive: %w", err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	bw.WriteString(magic)
	bw.Write(line)
	cw := &chunkWriter{w: bw, s: s, buf: make([]byte, 0, chunkSize)}
	gz, _ := gzip.NewWriterLevel(cw, gzip.BestSpeed)
	return &Writer{f: f, path: path, bw: bw, cw: cw, gz: gz, tmp: tmp}, nil
}

// Add appends one record.
func (w *Writer) Add(k, v []byte) error {
	var n [binary.MaxVarintLen64]byte
	for _, b := range [][]byte{k, v} {
		if _, err := w.gz.Write(n[:binary.PutUvarint(n[:], uint64(len(b)))]); err != nil {
			return err
		}
		if _, err := w.gz.Write(b); err != nil {
			return err
		}
	}
	w.keys++
	return nil
}

// Close finishes, fsyncs and renames the archive into place.
func (w *Writer) Close() error {
	err := errors.Join(w.gz.Close(), w.cw.Close(), w.bw.Flush(), w.f.Sync(), w.f.Close())
	if err != nil {
		os.Remove(w.tmp)
		return fmt.Errorf("writing archive: %w", err)
	}
	if err := os.Rename(w.tmp, w.path); err != nil {
		return fmt.Errorf("writing archive: %w", err)
	}
	return nil
}

// Abort removes an unfinished archive.
func (w *Writer) Abort() { w.f.Close(); os.Remove(w.tmp) }

// Reader reads an archive's records in order, authenticating every chunk.
type Reader struct {
	Header Header
	f      *os.File
	gz     *gzip.Reader
	br     *bufio.Reader
}

// Open opens an archive with key.
func Open(path string, key []byte) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(f, 1<<20)
	m := make([]byte, len(magic))
	if _, err := io.ReadFull(br, m); err != nil || string(m) != magic {
		f.Close()
		return nil, fmt.Errorf("%s is not a usagemeter archive", path)
	}
	line, err := br.ReadBytes('\n')
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: reading the header: %w", path, err)
	}
	var h Header
	if err := json.Unmarshal(line, &h); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: bad header: %w", path, err)
	}
	nonce, err := hex.DecodeString(h.Nonce)
	if err != nil || len(nonce) != 8 {
		f.Close()
		return nil, fmt.Errorf("%s: bad nonce in the header", path)
	}
	s, err := newSealer(key, nonce, line)
	if err != nil {
		f.Close()
		return nil, err
	}
	cr := &chunkReader{r: br, s: s}
	gz, err := gzip.NewReader(cr)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &Reader{Header: h, f: f, gz: gz, br: bufio.NewReader(gz)}, nil
}

// Next returns the next record, or io.EOF after the last (the stream was complete).
func (r *Reader) Next() (k, v []byte, err error) {
	kl, err := binary.ReadUvarint(r.br)
	if err == io.EOF {
		return nil, nil, io.EOF
	}
	if err != nil {
		return nil, nil, fmt.Errorf("archive record: %w", err)
	}
	k = make([]byte, kl)
	if _, err := io.ReadFull(r.br, k); err != nil {
		return nil, nil, fmt.Errorf("archive record: %w", err)
	}
	vl, err := binary.ReadUvarint(r.br)
	if err != nil {
		return nil, nil, fmt.Errorf("archive record: %w", err)
	}
	v = make([]byte, vl)
	if _, err := io.ReadFull(r.br, v); err != nil {
		return nil, nil, fmt.Errorf("archive record: %w", err)
	}
	return k, v, nil
}

// Close closes the file.
func (r *Reader) Close() error { return r.f.Close() }

type chunkReader struct {
	r    *bufio.Reader
	s    *sealer
	buf  []byte
	done bool
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for len(c.buf) == 0 {
		if c.done {
			return 0, io.EOF
		}
		var n uint32
		if err := binary.Read(c.r, binary.BigEndian, &n); err != nil {
			return 0, fmt.Errorf("archive is truncated: %w", io.ErrUnexpectedEOF)
		}
		if n > chunkSize+64 {
			return 0, errors.New("archive chunk is too large: corrupt")
		}
		ct := make([]byte, n)
		if _, err := io.ReadFull(c.r, ct); err != nil {
			return 0, fmt.Errorf("archive is truncated: %w", io.ErrUnexpectedEOF)
		}
		// The last chunk is sealed as last: try "not last" first, then "last".
		nonce, ad := c.s.params(false)
		pt, err := c.s.aead.Open(nil, nonce, ct, ad)
		if err != nil {
			nonce, ad = c.s.params(true)
			if pt, err = c.s.aead.Open(nil, nonce, ct, ad); err != nil {
				return 0, errors.New("archive does not authenticate: wrong key, or the file was changed")
			}
			c.done = true
			if _, err := c.r.Peek(1); err == nil {
				return 0, errors.New("archive has data after its last chunk")
			}
		}
		c.s.n++
		c.buf = pt
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	return n, nil
}

// LoadKey reads the 32-byte archive key: 64 hex digits (or 32 raw bytes) in a file, or 64 hex
// digits in an environment variable.
func LoadKey(file, env string) ([]byte, error) {
	var raw []byte
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("archive key: %w", err)
		}
		raw = b
	case env != "":
		v, ok := os.LookupEnv(env)
		if !ok {
			return nil, fmt.Errorf("archive key: environment variable %s is not set", env)
		}
		raw = []byte(v)
	default:
		return nil, errors.New("archive key: set retention.key_file or retention.key_env")
	}
	if len(raw) == 32 {
		return raw, nil
	}
	k, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(k) != 32 {
		return nil, errors.New("archive key must be 32 bytes: 64 hex digits (e.g. `openssl rand -hex 32`)")
	}
	return k, nil
}
