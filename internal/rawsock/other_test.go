//go:build !linux || 386 || s390x

package rawsock

func isLinux() bool { return false }
