package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
)

// pseudonymDomain separates these HMACs from any other use of the key, and names the encoding:
// v1 hashed the user id alone, so a user had one pseudonym in every tenant.
const pseudonymDomain = "usagemeter.pseudonym.v2\x00"

// Pseudonymize maps a tenant's user id to a stable label value that does not reveal it: a keyed
// HMAC, so nobody without the key can confirm a guess by hashing candidate ids (a plain hash of
// an e-mail address is easily reversed by dictionary). The tenant is part of the message, so the
// same id in two tenants gets two pseudonyms and series cannot be linked across customers. The
// tenant goes in length-prefixed, so no choice of ids can move the boundary between the two
// (("ab","c") and ("a","bc") differ). 80 bits keep collisions out of reach for any realistic
// number of users per tenant while keeping labels short.
func Pseudonymize(key []byte, tenant, user string) string {
	msg := make([]byte, 0, len(pseudonymDomain)+binary.MaxVarintLen64+len(tenant)+len(user))
	msg = append(msg, pseudonymDomain...)
	msg = binary.AppendUvarint(msg, uint64(len(tenant)))
	msg = append(append(msg, tenant...), user...)
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return "u_" + hex.EncodeToString(m.Sum(nil)[:10])
}

// PseudonymizeV1 is the pseudonym of releases before per-tenant keying: the HMAC of the user id
// alone, the same in every tenant. It is kept only so that an operator holding the key can
// correlate a user's series across the upgrade (usagectl pseudonym); nothing labels with it.
func PseudonymizeV1(key []byte, user string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(user))
	return "u_" + hex.EncodeToString(m.Sum(nil)[:10])
}
