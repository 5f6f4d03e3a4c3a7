package retention

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"io"
)

// Sealed streams: the archive's chunked AES-256-GCM framing (see the file format above) over any
// byte stream, for other files that must be encrypted with the archive key (backups). The
// header line is authenticated with every chunk, so a stream cannot be moved under another
// header; chunks cannot be reordered, dropped or truncated without Read failing.

// NonceSize is the length of a sealed stream's nonce prefix.
const NonceSize = 8

// NewNonce returns a fresh random nonce prefix for a sealed stream.
func NewNonce() ([]byte, error) {
	n := make([]byte, NonceSize)
	if _, err := rand.Read(n); err != nil {
		return nil, fmt.Errorf("drawing a nonce: %w", err)
	}
	return n, nil
}

// SealWriter encrypts what is written to it in chunks onto w; Close seals the last chunk (the
// stream is complete only after Close). headerLine is the plaintext header the stream belongs
// to, written by the caller before.
func SealWriter(w io.Writer, key, nonce, headerLine []byte) (io.WriteCloser, error) {
	if len(nonce) != NonceSize {
		return nil, fmt.Errorf("sealed stream nonce has %d bytes, want %d", len(nonce), NonceSize)
	}
	s, err := newSealer(key, nonce, headerLine)
	if err != nil {
		return nil, err
	}
	return &chunkWriter{w: w, s: s, buf: make([]byte, 0, chunkSize)}, nil
}

// OpenReader authenticates and decrypts a stream SealWriter wrote. Read returns io.EOF only
// after the last chunk; a truncated, changed or foreign stream is an error.
func OpenReader(r *bufio.Reader, key, nonce, headerLine []byte) (io.Reader, error) {
	if len(nonce) != NonceSize {
		return nil, fmt.Errorf("sealed stream nonce has %d bytes, want %d", len(nonce), NonceSize)
	}
	s, err := newSealer(key, nonce, headerLine)
	if err != nil {
		return nil, err
	}
	return &chunkReader{r: r, s: s}, nil
}
