// Package testenv finds the real services that integration tests run
// against. A test that needs one calls RedisAddr or AMQPURL: when the service
// is unreachable the test is skipped on a developer's machine, and fails
// under CI=true, where skipping would hide a broken setup.
package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/url"
	"os"
	"os/exec"
	"testing"
	"time"
)

// RedisAddr is the address of the Redis server tests may use
// (MM_TEST_REDIS_ADDR, default 127.0.0.1:6379). Tests isolate themselves with
// their own key prefix (see Prefix).
func RedisAddr(t testing.TB) string {
	t.Helper()
	addr := getenv("MM_TEST_REDIS_ADDR", "127.0.0.1:6379")
	require(t, "Redis", addr)
	return addr
}

// AMQPURL is the RabbitMQ URL tests may use (MM_TEST_AMQP_URL, default
// amqp://guest:guest@127.0.0.1:5672/). Tests isolate themselves with their
// own queue-name prefix (see Prefix).
func AMQPURL(t testing.TB) string {
	t.Helper()
	raw := getenv("MM_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("MM_TEST_AMQP_URL: %v", err)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "5672")
	}
	require(t, "RabbitMQ", host)
	return raw
}

// Prefix returns a name prefix unique to this test run, such as
// "test-3f9a1c0d:", for keys and queue names.
func Prefix(t testing.TB) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "test-" + hex.EncodeToString(b[:]) + "."
}

func require(t testing.TB, what, hostport string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", hostport, 2*time.Second)
	if err == nil {
		conn.Close()
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not reachable at %s under CI=true: %v", what, hostport, err)
	}
	t.Skipf("%s is not reachable at %s: %v", what, hostport, err)
}

func getenv(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// Command is the path of the program name that a test needs, such as
// rabbitmqctl to cut connections from the server side. When it is not
// installed the test is skipped on a developer's machine, and fails under
// CI=true, where the test command installs it.
func Command(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed under CI=true: %v", name, err)
	}
	t.Skipf("%s is not installed: %v", name, err)
	return ""
}
