package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
)

// Pseudonymize maps a user id to a stable label value that does not reveal it: a keyed HMAC,
// so nobody without the key can confirm a guess by hashing candidate ids (a plain hash of an
// e-mail address is easily reversed by dictionary). 80 bits keep collisions out of reach for
// any realistic number of users per tenant while keeping labels short.
func Pseudonymize(key []byte, user string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(user))
	return "u_" + hex.EncodeToString(m.Sum(nil)[:10])
}
