package main

import "syscall"

// childAttr makes every child die with the run, even if the run itself is
// killed before it can clean up (a test timeout, SIGKILL).
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
