package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/zcnet/zcnet/cmd/netstackd/iperf3"

	"github.com/zcnet/zcnet/cmd/netstackd/dashboard"

	"github.com/zcnet/zcnet/cmd/netstackd/zcstack"
)

// startDashboardServices runs every service on the in-process pair's
// server stack with the -metrics server on a loopback port, and returns
// that address and the environment.
func startDashboardServices(t *testing.T) (*toolEnv, *services, string) {
	t.Helper()
	env := inprocEnv(t)
	log := slog.New(slog.DiscardHandler)
	svc := newServices(env.stacks[1], log)
	obs := newObserver(env.stacks[1], svc, nil)
	if err := svc.start(allServices, iperf3.Port, obs, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	addr, err := obs.Listen("127.0.0.1:0", obs.mux(), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { obs.Close() })
	return env, svc, addr.String()
}

// TestDashboardJSON fetches the dashboard and its JSON from both servers,
// the -metrics one and the stack's port 80 (over zcnet from the other
// stack), and checks that the figures follow traffic.
func TestDashboardJSON(t *testing.T) {
	env, _, addr := startDashboardServices(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	get := func(c *http.Client, url string) []byte {
		t.Helper()
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
		}
		return b
	}
	zc := &http.Client{Transport: &http.Transport{DialContext: env.stacks[0].API.Net().DialContext}, Timeout: 20 * time.Second}
	defer zc.CloseIdleConnections()
	for _, src := range []struct {
		c    *http.Client
		base string
	}{{http.DefaultClient, "http://" + addr}, {zc, "http://" + zcstack.PairServer.Addr().String()}} {
		page := string(get(src.c, src.base+"/dashboard"))
		if !strings.Contains(page, "<title>zcnet netstackd</title>") || !strings.Contains(page, `fetch("dashboard.json"`) {
			t.Errorf("%s/dashboard is not the dashboard:\n%.300s", src.base, page)
		}
		if strings.Contains(page, "http://") || strings.Contains(page, "https://") {
			t.Errorf("%s/dashboard loads something from elsewhere", src.base)
		}
	}
	snap := func() dashboard.Snapshot {
		var d dashboard.Snapshot
		if err := json.Unmarshal(get(http.DefaultClient, "http://"+addr+"/dashboard.json"), &d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	before := snap()
	c, err := env.stacks[0].API.DialTCP(ctx, netip.AddrPortFrom(zcstack.PairServer.Addr(), 7))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 20; i++ {
		if err := echoOnce(ctx, c, fmt.Sprintf("round %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	after := snap()
	nic := func(d dashboard.Snapshot, name string) dashboard.NIC {
		for _, n := range d.NICs {
			if n.Name == name {
				return n
			}
		}
		t.Fatalf("no NIC %s in %+v", name, d.NICs)
		return dashboard.NIC{}
	}
	b, a := nic(before, "pair-server"), nic(after, "pair-server")
	if a.RxBytes <= b.RxBytes || a.TxBytes <= b.TxBytes || a.RxPackets <= b.RxPackets {
		t.Errorf("NIC counters did not move: %+v -> %+v", b, a)
	}
	if after.Connections.Services["echo/tcp"] != 1 || after.Connections.TCPEstablished < 1 {
		t.Errorf("connections: %+v", after.Connections)
	}
	if after.Copy.TxCopied <= before.Copy.TxCopied || after.Copy.RxHandedOver+after.Copy.RxCopied <= before.Copy.RxHandedOver+before.Copy.RxCopied {
		t.Errorf("copy budget did not move: %+v -> %+v", before.Copy, after.Copy)
	}
	if after.Channels.Capacity == 0 || after.Channels.Reserved < 1 || after.Pool.SlotsTotal == 0 || after.TimeMs < before.TimeMs {
		t.Errorf("channels %+v pool %+v", after.Channels, after.Pool)
	}
}

// chromiumPath returns the browser the dashboard test drives: $CHROMIUM,
// else Debian's chromium or chromium-headless-shell; "" if none.
func chromiumPath() string {
	for _, p := range []string{os.Getenv("CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-headless-shell"} {
		if p != "" {
			if _, err := exec.LookPath(p); err == nil {
				return p
			}
		}
	}
	return ""
}

// TestDashboardInBrowser loads /dashboard in headless Chromium, runs
// traffic through the stack, and waits for the page's figures to move:
// the update count, the NIC's throughput, the connections, the copy
// budget. With ZCNET_DASHBOARD_PNG set it saves a screenshot there.
func TestDashboardInBrowser(t *testing.T) {
	chromium := chromiumPath()
	if chromium == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not installed (apt-get install chromium, or chromium-headless-shell); CI must run this test")
		}
		t.Skip("skipping: chromium is not installed (apt-get install chromium, or chromium-headless-shell; or set CHROMIUM)")
	}
	env, _, addr := startDashboardServices(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	actx, acancel := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 720),
	)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	text := func(id string) string {
		return fmt.Sprintf(`(document.getElementById(%q) || {}).textContent`, id)
	}
	if _, err := chromedp.Run(bctx, chromedp.Navigate("http://"+addr+"/dashboard")); err != nil {
		t.Fatalf("loading the dashboard: %v", err)
	}
	if _, err := chromedp.Run(bctx, chromedp.Poll[chromedp.Void](text("updates")+` >= 2`, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatalf("the dashboard did not update twice: %v", err)
	}
	figures := `({updates: ` + text("updates") + `, conns: ` + text("conns") + `, handed: ` + text("copy-rx-handed") + `, tx: ` + text("copy-tx-copied") +
		`, in: ` + text("nic-pair-server-in") + `, error: ` + text("error") + `})`
	before, err := chromedp.Run(bctx, chromedp.Evaluate[map[string]string](figures))
	if err != nil {
		t.Fatalf("reading the dashboard: %v", err)
	}

	// Traffic: one held echo connection, and a stream to discard: two
	// connections.
	c, err := env.stacks[0].API.DialTCP(ctx, netip.AddrPortFrom(zcstack.PairServer.Addr(), 7))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := echoOnce(ctx, c, "hello dashboard"); err != nil {
		t.Fatal(err)
	}
	streamCtx, stopStream := context.WithCancel(ctx)
	streamDone := make(chan error, 1)
	go func() {
		d, err := env.stacks[0].API.DialTCP(streamCtx, netip.AddrPortFrom(zcstack.PairServer.Addr(), 9))
		if err != nil {
			streamDone <- err
			return
		}
		defer d.Close()
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
			if _, err := d.SendFunc(streamCtx, 64<<10, func(p []byte) int { return len(p) }); err != nil {
				if streamCtx.Err() != nil {
					err = nil
				}
				streamDone <- err
				return
			}
		}
		streamDone <- nil
	}()
	moved := fmt.Sprintf(`%s > %s && %s === "2" && %s !== %q && %s !== %q && /[1-9]/.test(%s) && / [kMG]?bit\/s$/.test(%s)`,
		text("updates"), before["updates"], text("conns"), text("copy-rx-handed"), before["handed"], text("copy-tx-copied"), before["tx"],
		text("nic-pair-server-in"), text("nic-pair-server-in"))
	_, err = chromedp.Run(bctx, chromedp.Poll[chromedp.Void](moved, chromedp.WithPollingTimeout(30*time.Second)))
	png := os.Getenv("ZCNET_DASHBOARD_PNG")
	if err == nil && png != "" {
		// For the README's picture: a sparkline with some history.
		_, err = chromedp.Run(bctx, chromedp.Poll[chromedp.Void](text("updates")+` >= 20`, chromedp.WithPollingTimeout(60*time.Second)))
	}
	var shot []byte
	if err == nil {
		shot, err = chromedp.Run(bctx, chromedp.CaptureScreenshot())
	}
	stopStream()
	if serr := <-streamDone; serr != nil {
		t.Errorf("stream to discard: %v", serr)
	}
	if err != nil {
		now, _ := chromedp.Run(bctx, chromedp.Evaluate[map[string]string](figures))
		t.Fatalf("the dashboard's figures did not move: %v\nbefore %v\nnow %v", err, before, now)
	}
	if png != "" {
		if err := os.WriteFile(png, shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", png)
	}
}
