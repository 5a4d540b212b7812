package redisstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quickmatch/quickmatch/internal/testenv"
)

// clusterMasters is how many masters the test cluster has.
const clusterMasters = 3

// startCluster starts a Redis Cluster of three masters on loopback, as child
// processes that end with t, and answers their addresses. It skips t if
// redis-server or redis-cli is not installed (and fails it under CI=true).
func startCluster(t *testing.T) []string {
	t.Helper()
	for _, tool := range []string{"redis-server", "redis-cli"} {
		testenv.Command(t, tool)
	}
	dir := t.TempDir()
	ports, err := freeClusterPorts(clusterMasters)
	if err != nil {
		t.Fatalf("finding free ports: %v", err)
	}
	addrs := make([]string, len(ports))
	for i, p := range ports {
		addrs[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		startNode(t, dir, p)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, a := range addrs {
		waitFor(ctx, t, "node "+a+" to answer", func() (bool, error) {
			c := redis.NewClient(&redis.Options{Addr: a, MaxRetries: -1})
			defer c.Close()
			return c.Ping(ctx).Err() == nil, nil
		})
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, a := range addrs {
		waitFor(ctx, t, "node "+a+" to see the cluster ok", func() (bool, error) {
			c := redis.NewClient(&redis.Options{Addr: a})
			defer c.Close()
			info, err := c.ClusterInfo(ctx).Result()
			if err != nil {
				return false, nil
			}
			return strings.Contains(info, "cluster_state:ok"), nil
		})
	}
	return addrs
}

// startNode starts one cluster node on port, killed when t ends. Its log
// is shown if t fails.
func startNode(t *testing.T, dir string, port int) {
	t.Helper()
	p := strconv.Itoa(port)
	cmd := exec.Command("redis-server",
		"--port", p,
		"--cluster-enabled", "yes",
		"--cluster-config-file", filepath.Join(dir, "nodes-"+p+".conf"),
		"--dir", dir,
		"--save", "",
		"--appendonly", "no",
		"--bind", "127.0.0.1",
		"--daemonize", "no")
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting redis-server on port %s: %v", p, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("redis-server on port %s:\n%s", p, log.String())
		}
	})
}

// freeClusterPorts finds n loopback ports that are free, each with its
// cluster bus port (port+10000) free too.
func freeClusterPorts(n int) ([]int, error) {
	var ports []int
	for range 100 {
		if len(ports) == n {
			return ports, nil
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if port+10000 > 65535 {
			continue
		}
		bus, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+10000))
		if err != nil {
			continue
		}
		bus.Close()
		ports = append(ports, port)
	}
	return nil, errors.New("no free ports")
}

// waitFor polls cond every 50ms until it holds or ctx ends.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
