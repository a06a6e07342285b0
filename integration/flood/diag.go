//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// counters is a snapshot of a -diag run's counters: the daemon's metrics
// (name with labels -> value) and the TAP's kernel-side statistics.
type counters map[string]float64

// diagMetric selects the metrics -diag prints.
var diagMetric = regexp.MustCompile(`^zcnet_(link_rx|link_tx_frames|stack_tcp_|nic_(rx|tx)_packets|nic_tx_drops)`)

// snapshot reads the daemon's /metrics and `ip -s link` of dev in ns.
func snapshot(self, ns, dev string) counters {
	c := counters{}
	out, err := exec.Command("ip", "netns", "exec", ns, self, "http-get", "http://"+metricsAddr+"/metrics", "-").Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "flood: diag: metrics:", err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 || !diagMetric.MatchString(line) {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			c[line[:i]] = v
		}
	}
	// The kernel side of the TAP: its TX is what it sends to zcnet, and
	// its TX drops are frames the kernel dropped with the device's queue
	// full, before zcnet read them.
	out, err = exec.Command("ip", "-n", ns, "-s", "-j", "link", "show", "dev", dev).Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "flood: diag: ip link:", err)
		return c
	}
	var links []struct {
		Stats64 map[string]map[string]float64 `json:"stats64"`
	}
	if json.Unmarshal(out, &links) == nil && len(links) == 1 {
		for dir, m := range links[0].Stats64 {
			for k, v := range m {
				c["tap_kernel_side_"+dir+"_"+k] = v
			}
		}
	}
	return c
}

// printDiff prints the counters that moved since before.
func (c counters) printDiff(w io.Writer, before counters) {
	var names []string
	for k, v := range c {
		if v != before[k] {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	fmt.Fprintln(w, "flood: diag: counters that moved during the flood:")
	for _, k := range names {
		fmt.Fprintf(w, "  %-90s %12.0f\n", k, c[k]-before[k])
	}
}

// profile saves a CPU profile of the daemon over the middle of the flood
// (file) and a heap profile at its end (file with .heap for .pprof).
func profile(self, ns, file string, d time.Duration) {
	secs := max(1, int(d.Seconds())/2)
	time.Sleep(d / 4)
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", metricsAddr, secs)
	if out, err := exec.Command("ip", "netns", "exec", ns, self, "http-get", url, file).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "flood: diag: profile: %v %s\n", err, out)
	}
	time.Sleep(d/4 - time.Second)
	url = fmt.Sprintf("http://%s/debug/pprof/heap", metricsAddr)
	if out, err := exec.Command("ip", "netns", "exec", ns, self, "http-get", url, strings.TrimSuffix(file, ".pprof")+".heap").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "flood: diag: heap profile: %v %s\n", err, out)
	}
}

// httpGet writes what url serves to file ("-": standard output).
func httpGet(url, file string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	w := io.Writer(os.Stdout)
	if file != "-" {
		f, err := os.Create(file)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	_, err = io.Copy(w, resp.Body)
	return err
}

// memAfter prints (labelled when: idle, or 10 s after the flood) where the daemon's resident
// memory is: /proc's split of it (anonymous, file, shared) and the Go
// runtime's (the MemStats of a heap profile's text form), and saves that
// heap profile (file) for pprof.
func memAfter(when, self, ns string, pid int, file string) {
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "Rss") || strings.HasPrefix(line, "VmRSS") || strings.HasPrefix(line, "Threads") {
				fmt.Fprintln(os.Stderr, "flood: diag: "+when+":", strings.Join(strings.Fields(line), " "))
			}
		}
	}
	topMappings(when, pid)
	url := fmt.Sprintf("http://%s/debug/pprof/heap", metricsAddr)
	if strings.HasSuffix(file, "?gc=1") {
		// A collection first: the profile and MemStats show the live heap.
		file = strings.TrimSuffix(file, "?gc=1")
		url += "?gc=1&"
	} else {
		url += "?"
	}
	if out, err := exec.Command("ip", "netns", "exec", ns, self, "http-get", url, file).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "flood: diag: heap profile: %v %s\n", err, out)
	}
	out, err := exec.Command("ip", "netns", "exec", ns, self, "http-get", url+"debug=1", "-").Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "flood: diag: heap profile:", err)
		return
	}
	_, stats, _ := strings.Cut(string(out), "# runtime.MemStats")
	for _, line := range strings.Split(stats, "\n") {
		for _, k := range []string{"Sys", "HeapAlloc", "HeapSys", "HeapIdle", "HeapInuse", "HeapReleased", "HeapObjects", "Stack", "MSpan", "MCache", "BuckHashSys", "GCSys", "OtherSys", "NumGC"} {
			if strings.HasPrefix(line, "# "+k+" ") {
				fmt.Fprintln(os.Stderr, "flood: diag: "+when+":", strings.TrimPrefix(line, "# "))
			}
		}
	}
}

// topMappings prints the process's largest mappings by resident size
// (/proc/PID/smaps): the Go heap's arenas, the buffer pool's regions, the
// binary's pages.
func topMappings(when string, pid int) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps")
	if err != nil {
		return
	}
	type mapping struct {
		name string
		rss  int
	}
	var maps []mapping
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			maps = append(maps, mapping{name: strings.Join(append([]string{f[0]}, f[5:]...), " ")})
		case len(f) == 3 && f[0] == "Rss:" && len(maps) > 0:
			maps[len(maps)-1].rss, _ = strconv.Atoi(f[1])
		}
	}
	sort.Slice(maps, func(i, j int) bool { return maps[i].rss > maps[j].rss })
	for _, m := range maps[:min(8, len(maps))] {
		fmt.Fprintf(os.Stderr, "flood: diag: %s: mapping %8d kB %s\n", when, m.rss, m.name)
	}
}
