package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/hapctl/hapctl/internal/api"
	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/testbed"
)

// TestStatusPageInBrowser loads the status page in Debian's headless
// Chromium against a real daemon: the rendered slot rows must be the API's
// bound slots, and the drain button, with a pasted token, must drain the
// slot in HAProxy. A screenshot is kept in the test's temp dir.
func TestStatusPageInBrowser(t *testing.T) {
	const token = "page-token"
	b := newBed(t, bedOptions{minSlots: 4, token: token})
	b.startHapctl()
	one, two := startBackend(t, "web-1"), startBackend(t, "web-2")
	b.register("web-1", one, 0)
	b.register("web-2", two, 3)
	b.waitSlot(one.endpoint(), runtime.StateReady, -1)
	b.waitSlot(two.endpoint(), runtime.StateReady, 3)

	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(testbed.ChromiumBin(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox, // tests run as root here
		chromedp.WindowSize(1200, 700),
	)
	actx, stopBrowser := chromedp.NewExecAllocator(context.Background(), opts...)
	defer stopBrowser() // ends the Chromium this test started
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	defer cancelTimeout()
	// The page's own errors and console output go to the test log.
	listen := func(ev any) {
		switch ev := ev.(type) {
		case *cdpruntime.EventExceptionThrown:
			desc := ev.ExceptionDetails.Text
			if ev.ExceptionDetails.Exception != nil {
				desc += " " + ev.ExceptionDetails.Exception.Description
			}
			t.Errorf("page exception: %s", desc)
		case *cdpruntime.EventConsoleAPICalled:
			for _, a := range ev.Args {
				t.Logf("page console %s: %s", ev.Type, a.Value)
			}
		}
	}
	if err := chromedp.Listen(ctx, listen); err != nil {
		t.Fatal(err)
	}

	err := chromedp.Do(ctx,
		chromedp.Navigate("http://"+b.apiAddr+"/"),
		chromedp.WaitVisible(`body[data-loaded="true"] section[data-backend="be_web"] tr.slot`),
	)
	if err != nil {
		t.Fatalf("loading the status page: %v", err)
	}
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[[][]string](
		`[...document.querySelectorAll('section[data-backend="be_web"] tr.slot')].map(r => [...r.cells].map(c => c.textContent))`))
	if err != nil {
		t.Fatalf("reading the slot rows: %v", err)
	}
	want := pageRows(t, b.apiAddr)
	var got []string
	for _, r := range rows {
		got = append(got, strings.Join(r[:6], " ")) // server, address, weight, admin, health, instance
	}
	if !slices.Equal(got, want) {
		t.Fatalf("the page shows slots\n%v\nthe API says\n%v", got, want)
	}

	slotName := rows[0][0]
	// A long reason, as operators write them: the row must still show its
	// buttons inside the window.
	reason := "from the page: " + strings.Repeat("rolling deploy of the payment service, ticket OPS-1234; ", 4)
	err = chromedp.Do(ctx,
		chromedp.SendKeys(`#token`, token),
		chromedp.SendKeys(`#reason`, reason),
		chromedp.Click(fmt.Sprintf(`button[data-action="drain"][data-server=%q]`, slotName)),
	)
	if err == nil {
		_, err = chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById("msg").textContent.includes(" is drain")`,
			chromedp.WithPollingTimeout(20*time.Second)))
	}
	msg, _ := chromedp.Run(ctx, chromedp.Text(`#msg`))
	if err != nil {
		t.Fatalf("pressing drain on %s: %v (the page says %q)", slotName, err, msg)
	}
	endpoint := map[string]string{"web-1": one.endpoint(), "web-2": two.endpoint()}[rows[0][5]]
	b.waitSlot(endpoint, runtime.StateDrain, -1)
	// The page refreshes itself: the row shows the drain with its reason.
	_, err = chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf(
		`[...document.querySelectorAll('section[data-backend="be_web"] tr.slot')].some(r => r.cells[0].textContent === %q && r.cells[3].textContent === "drain" && r.cells[7].textContent.includes("from the page"))`, slotName),
		chromedp.WithPollingTimeout(20*time.Second)))
	if err != nil {
		t.Fatalf("the page did not show the drain of %s: %v", slotName, err)
	}
	inView, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(
		`(() => { const b = document.querySelector('button[data-action="undrain"][data-server=%q]'); return !!b && b.getBoundingClientRect().right <= window.innerWidth; })()`, slotName)))
	if err != nil || !inView {
		t.Fatalf("the undrain button of %s is not inside the window with a long reason (%v)", slotName, err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(90))
	if err != nil || len(shot) == 0 {
		t.Fatalf("screenshot: %v (%d bytes)", err, len(shot))
	}
	path := filepath.Join(t.TempDir(), "status-page.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("drained %s from the page (%s); screenshot %s (%d bytes)", slotName, msg, path, len(shot))
}

// pageRows renders the API's bound slots of be_web as the page's first six
// columns.
func pageRows(t *testing.T, apiAddr string) []string {
	t.Helper()
	resp, err := http.Get("http://" + apiAddr + "/v1/backends/be_web")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var be api.Backend
	if err := json.NewDecoder(resp.Body).Decode(&be); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range be.Slots {
		if s.Free {
			continue
		}
		out = append(out, fmt.Sprintf("%s %s:%d %d %s %s %s", s.Name, s.Address, s.Port, s.Weight, s.AdminState, s.OperState, s.ServiceID))
	}
	if len(out) != 2 {
		t.Fatalf("the API has %d bound slots, want 2: %v", len(out), out)
	}
	return out
}
