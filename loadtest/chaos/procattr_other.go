//go:build !linux

package main

import "syscall"

// childAttr: outside Linux a child cannot be tied to the run's life; the
// run's cleanup kills it.
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
