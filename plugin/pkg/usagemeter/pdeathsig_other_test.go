//go:build !linux

package usagemeter

import "os/exec"

func dieWithTest(*exec.Cmd) {}
