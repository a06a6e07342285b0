package procstat

import (
	"os"
	"testing"
)

func TestParseVmRSS(t *testing.T) {
	status := "Name:\tbench\nVmPeak:\t  999 kB\nVmHWM:\t   800 kB\nVmRSS:\t    1536 kB\nRssAnon:\t 100 kB\n"
	if v, err := ParseVmRSS([]byte(status)); err != nil || v != 1536<<10 {
		t.Errorf("ParseVmRSS = %d, %v; want %d", v, err, 1536<<10)
	}
	for _, bad := range []string{
		"Name:\tkworker\nState:\tI (idle)\n", // kernel threads have no VmRSS
		"VmRSS:\t12 MB\n",
		"VmRSS:\tx kB\n",
		"VmRSS:\t-5 kB\n",
		"VmRSS:\t\n",
		"VmRSS:\t99999999999999999999 kB\n",
	} {
		if v, err := ParseVmRSS([]byte(bad)); err == nil {
			t.Errorf("ParseVmRSS(%q) = %d, no error", bad, v)
		}
	}
}

func TestRSSOfThisProcess(t *testing.T) {
	v, err := RSS(os.Getpid())
	if err != nil || v <= 0 {
		t.Fatalf("RSS(self) = %d, %v", v, err)
	}
	if _, err := RSS(-1); err == nil {
		t.Error("RSS(-1): no error")
	}
}
