//go:build !unix

package ledger

func lockHolderPID(string) int { return 0 }
