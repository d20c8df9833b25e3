package loadtest

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// ProcSample is what /proc says about a process at one moment.
type ProcSample struct {
	// CPU is user plus system time since the process started.
	CPU time.Duration
	// RSS is the resident set size (VmRSS).
	RSS int64
	// Threads is the number of OS threads.
	Threads int
	// Writes and Reads count the write-family (write, writev, sendmsg...)
	// and read-family system calls, from /proc/PID/io: writes per
	// delivered message show how much the server coalesces.
	Writes, Reads uint64
}

// clockTick is the unit of the CPU times in /proc/PID/stat. Linux reports
// them in USER_HZ, which is 100 on every architecture it exports to user
// space, so it is a constant rather than a sysconf call. The 10 ms
// resolution is why the scenarios run for seconds.
const clockTick = 10 * time.Millisecond

// ReadProc samples process pid from /proc/PID/stat and /proc/PID/status.
func ReadProc(pid int) (ProcSample, error) {
	var s ProcSample
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return s, fmt.Errorf("read process stats: %w", err)
	}
	if s.CPU, s.Threads, err = parseStat(stat); err != nil {
		return s, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return s, fmt.Errorf("read process status: %w", err)
	}
	if s.RSS, err = parseStatusKB(status, "VmRSS:"); err != nil {
		return s, fmt.Errorf("/proc/%d/status: %w", pid, err)
	}
	if io, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/io"); err == nil {
		s.Writes, s.Reads = parseIOCount(io, "syscw:"), parseIOCount(io, "syscr:")
	}
	return s, nil
}

// parseIOCount reads a "key: N" line of /proc/PID/io (0 if absent: the
// file needs the same user as the process, and is optional here).
func parseIOCount(b []byte, key string) uint64 {
	for line := range bytes.Lines(b) {
		if rest, ok := bytes.CutPrefix(line, []byte(key)); ok {
			n, _ := strconv.ParseUint(string(bytes.TrimSpace(rest)), 10, 64)
			return n
		}
	}
	return 0
}

// parseStat reads utime+stime (fields 14 and 15) and num_threads (20) of
// /proc/PID/stat. The command name (field 2) may contain spaces and
// parentheses, so fields are counted from the last ')'.
func parseStat(b []byte) (time.Duration, int, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("no command name in %q", b)
	}
	f := bytes.Fields(b[i+1:]) // f[0] is field 3 (state)
	if len(f) < 18 {
		return 0, 0, fmt.Errorf("only %d fields after the command name", len(f))
	}
	utime, err1 := strconv.ParseUint(string(f[11]), 10, 64)
	stime, err2 := strconv.ParseUint(string(f[12]), 10, 64)
	threads, err3 := strconv.Atoi(string(f[17]))
	if err1 != nil || err2 != nil || err3 != nil {
		return 0, 0, fmt.Errorf("bad utime/stime/num_threads %q %q %q", f[11], f[12], f[17])
	}
	return time.Duration(utime+stime) * clockTick, threads, nil
}

// parseStatusKB reads a "Key:   123 kB" line of /proc/PID/status in bytes.
func parseStatusKB(b []byte, key string) (int64, error) {
	for line := range bytes.Lines(b) {
		rest, ok := bytes.CutPrefix(line, []byte(key))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("bad %s line %q", key, line)
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bad %s line %q: %w", key, line, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("no %s line", key)
}

// SystemCPU is the machine's busy and total CPU time from /proc/stat, all
// CPUs together.
type SystemCPU struct{ Busy, Total time.Duration }

// ReadSystemCPU samples the first line of /proc/stat.
func ReadSystemCPU() (SystemCPU, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return SystemCPU{}, fmt.Errorf("read /proc/stat: %w", err)
	}
	return parseSystemCPU(b)
}

// parseSystemCPU reads "cpu user nice system idle iowait irq softirq
// steal ...": idle and iowait are not busy; guest time is already in user.
func parseSystemCPU(b []byte) (SystemCPU, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 5 || string(f[0]) != "cpu" {
		return SystemCPU{}, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var s SystemCPU
	for i, v := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			return SystemCPU{}, fmt.Errorf("/proc/stat: bad field %q", v)
		}
		d := time.Duration(n) * clockTick
		s.Total += d
		if i != 3 && i != 4 { // idle, iowait
			s.Busy += d
		}
	}
	return s, nil
}

// loadMeter measures, over a phase, the CPU of a set of processes (the
// clients) and the share of the machine used by everything outside the
// server and the clients.
type loadMeter struct {
	server  int
	clients []int
	sys     SystemCPU
	ours    time.Duration
	client  time.Duration
}

func startLoadMeter(server int, clients []int) *loadMeter {
	seen := map[int]bool{server: true}
	m := &loadMeter{server: server}
	for _, p := range clients {
		if !seen[p] {
			seen[p] = true
			m.clients = append(m.clients, p)
		}
	}
	m.sys, _ = ReadSystemCPU()
	m.ours, m.client = m.cpu()
	return m
}

// cpu returns the CPU of server and clients together, and of the clients.
func (m *loadMeter) cpu() (ours, clients time.Duration) {
	for _, p := range m.clients {
		if s, err := ReadProc(p); err == nil {
			clients += s.CPU
		}
	}
	ours = clients
	if m.server != 0 {
		if s, err := ReadProc(m.server); err == nil {
			ours += s.CPU
		}
	}
	return ours, clients
}

// stop returns the clients' CPU during the phase and the fraction (0..1)
// of the machine's CPU used by other processes.
func (m *loadMeter) stop() (clientCPU time.Duration, other float64) {
	ours, clients := m.cpu()
	sys, err := ReadSystemCPU()
	total := sys.Total - m.sys.Total
	if err != nil || total <= 0 {
		return clients - m.client, 0
	}
	busy := sys.Busy - m.sys.Busy - (ours - m.ours)
	return clients - m.client, max(0, float64(busy)/float64(total))
}
