package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
)

// KeyPrefix starts every generated key and token, so a leaked one is easy to recognize (and to
// find with secret scanners).
const KeyPrefix = "um_"

// NewAPIKey makes a random credential (usable as an API key or a static bearer token) and the
// hash to put in the config file. 256 random bits make a plain SHA-256 safe to store: there is
// nothing to guess, so no slow password hash is needed.
func NewAPIKey() (plaintext, hash string) {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it panics if the OS cannot supply)
	plaintext = KeyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return plaintext, HashKey(plaintext)
}

// HashKey is the config file form of a key's hash: "sha256:<hex>".
func HashKey(plaintext string) string {
	sum := sha256.Sum256([]byte(plaintext))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// MinKeyBytes is the shortest secret LoadKey accepts (128 bits).
const MinKeyBytes = 16

// LoadKey reads a secret key file (audit chain, pseudonyms). Surrounding white space is
// dropped, so `usagectl keys new > file` or `head -c 32 /dev/urandom | base64 > file` both work.
func LoadKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) < MinKeyBytes {
		return nil, fmt.Errorf("key file %s: %d bytes, want at least %d", path, len(b), MinKeyBytes)
	}
	return b, nil
}
