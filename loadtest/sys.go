package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc/<pid>/stat. It
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// raiseOpenFiles lifts the soft limit on open files to the hard limit, for
// the many connections a load test holds, and returns the new soft limit.
func raiseOpenFiles() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("reading the open-file limit: %w", err)
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return 0, fmt.Errorf("raising the open-file limit to %d: %w", rl.Max, err)
		}
	}
	return rl.Cur, nil
}

// selfCPU is the CPU time, user and system, this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is the CPU time, user and system, process pid has used.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the CPU time of process %d: %w", pid, err)
	}
	return parseStatCPU(b)
}

// parseStatCPU reads utime and stime, fields 14 and 15 of /proc/<pid>/stat.
// The command name, field 2, is in parentheses and may hold spaces, so the
// fields are counted from its closing parenthesis.
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("parsing /proc stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 13 {
		return 0, fmt.Errorf("parsing /proc stat: %d fields", len(f)+2)
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parsing /proc stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// procRSS is the resident memory of process pid in KiB (VmRSS).
func procRSS(pid int) (int64, error) {
	v, err := procStatus(pid, "VmRSS")
	if err != nil {
		return 0, err
	}
	fields := strings.Fields(v)
	if len(fields) != 2 || fields[1] != "kB" {
		return 0, fmt.Errorf("reading the memory of process %d: VmRSS is %q", pid, v)
	}
	n, err := strconv.ParseInt(fields[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("reading the memory of process %d: %w", pid, err)
	}
	return n, nil
}

// procStatus returns the value of one key of /proc/<pid>/status.
func procStatus(pid int, key string) (string, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "", fmt.Errorf("reading the status of process %d: %w", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && k == key {
			return strings.TrimSpace(v), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("reading the status of process %d: %w", pid, err)
	}
	return "", fmt.Errorf("reading the status of process %d: no %s", pid, key)
}

// procOpenFilesLimit is the soft limit on open files of process pid.
func procOpenFilesLimit(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the limits of process %d: %w", pid, err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			if f[0] == "unlimited" {
				return 1 << 62, nil
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("reading the limits of process %d: no open-file limit", pid)
}

// machineCPU is the time all CPUs spent busy and in total since boot, from
// the first line of /proc/stat; zero where there is none.
func machineCPU() (busy, total time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	busy, total, _ = parseProcStat(b)
	return busy, total
}

// parseProcStat reads the "cpu" line: user nice system idle iowait irq
// softirq steal ..., in USER_HZ. Idle and iowait are not busy.
func parseProcStat(b []byte) (busy, total time.Duration, err error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("parsing /proc/stat: no cpu line")
	}
	for i, s := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("parsing /proc/stat: %w", err)
		}
		d := time.Duration(n) * time.Second / clockTicks
		total += d
		if i != 3 && i != 4 {
			busy += d
		}
	}
	return busy, total, nil
}

// cpuMeter measures CPU use between two points: this process's, that of
// the processes named on the command line, and the whole machine's.
type cpuMeter struct {
	start       time.Time
	self        time.Duration
	procs       []PID
	before      []time.Duration
	machineBusy time.Duration
}

// ProcessCPU is the CPU a process used during a run.
type ProcessCPU struct {
	Name       string  `json:"name"`
	PID        int     `json:"pid"`
	CPUSeconds float64 `json:"cpu_s"`
	Cores      float64 `json:"cores"` // CPU seconds per wall second
	RSSKiB     int64   `json:"rss_kib,omitempty"`
	Error      string  `json:"error,omitempty"`
}

func startCPUMeter(procs ...[]PID) *cpuMeter {
	m := &cpuMeter{start: time.Now(), self: selfCPU()}
	m.machineBusy, _ = machineCPU()
	for _, p := range procs {
		m.procs = append(m.procs, p...)
	}
	for _, s := range m.procs {
		d, _ := procCPU(s.PID)
		m.before = append(m.before, d)
	}
	return m
}

// MachineCPU is what the whole machine did during a run: its busy cores,
// and the part of them no measured process (the generator, -service-pids,
// -infra-pids) accounts for, such as other work sharing the machine.
type MachineCPU struct {
	BusyCores  float64 `json:"busy_cores"`
	OtherCores float64 `json:"other_cores"`
}

// machine is the whole machine's use since start, given the measured
// processes' use.
func (m *cpuMeter) machine(measured ...ProcessCPU) MachineCPU {
	busy, _ := machineCPU()
	if busy == 0 {
		return MachineCPU{}
	}
	wall := time.Since(m.start).Seconds()
	mc := MachineCPU{BusyCores: (busy - m.machineBusy).Seconds() / wall}
	mc.OtherCores = mc.BusyCores
	for _, p := range measured {
		mc.OtherCores -= p.Cores
	}
	mc.OtherCores = max(mc.OtherCores, 0)
	return mc
}

// stop returns the generator's use and each other process's, in the order
// given to startCPUMeter.
func (m *cpuMeter) stop() (ProcessCPU, []ProcessCPU) {
	wall := time.Since(m.start).Seconds()
	self := (selfCPU() - m.self).Seconds()
	gen := ProcessCPU{Name: "loadtest", PID: os.Getpid(), CPUSeconds: self, Cores: self / wall}
	gen.RSSKiB, _ = procRSS(os.Getpid())
	var out []ProcessCPU
	for i, s := range m.procs {
		p := ProcessCPU{Name: s.Name, PID: s.PID}
		d, err := procCPU(s.PID)
		if err != nil {
			p.Error = err.Error()
		} else {
			p.CPUSeconds = (d - m.before[i]).Seconds()
			p.Cores = p.CPUSeconds / wall
			p.RSSKiB, _ = procRSS(s.PID)
		}
		out = append(out, p)
	}
	return gen, out
}
