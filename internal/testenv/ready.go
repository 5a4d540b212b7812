package testenv

import (
	"io"
	"net/http"
	"testing"
	"time"
)

// WaitReady waits, for at most 10 s, until the service at base answers
// /readyz with 200, and fails the test if it does not.
func WaitReady(t testing.TB, base string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/readyz not ready within 10s: %v", base, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
