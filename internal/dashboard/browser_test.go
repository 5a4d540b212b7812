package dashboard_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/auth/authtest"
	"github.com/quickmatch/quickmatch/internal/testenv"
	"github.com/quickmatch/quickmatch/services"
)

// chromium is Debian's browser, which scripts/test.sh installs.
const chromium = "/usr/bin/chromium"

// TestDashboardInBrowser drives the page in headless Chromium against a
// real embedded matchmaker with auth on: the page asks for a token, takes
// a service token from its field, shows the duel queue with the waiting
// ticket, and looks the ticket up to show why it waits. The screenshot is
// left in the test's temporary directory (and in $MM_SCREENSHOT_DIR, if
// set, to look at).
func TestDashboardInBrowser(t *testing.T) {
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing: scripts/test.sh installs it (apt-get install chromium)", chromium)
		}
		t.Skipf("%s is missing: run scripts/test.sh, which installs it (apt-get install chromium)", chromium)
	}
	secret := "the secret of the dashboard's browser test, 32 bytes or more"
	t.Setenv("MM_HTTP_ADDR", "127.0.0.1:0")
	t.Setenv("MM_AMQP_URL", "")
	t.Setenv("MM_REDIS_ADDR", "")
	t.Setenv("MM_AUTH_HS256_SECRET", secret)
	t.Setenv("MM_REGIONS", "eu-west")
	cfg, err := services.LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	app, err := services.New(ctx, cfg, services.All, slog.New(slog.DiscardHandler))
	if err != nil {
		cancel()
		t.Fatalf("starting an embedded matchmaker: %v", err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- app.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-runDone; err != nil {
			t.Errorf("embedded matchmaker: %v", err)
		}
	})
	base := "http://" + app.Addr()
	testenv.WaitReady(t, base)

	token, err := authtest.SignHS256([]byte(secret), jwt.MapClaims{"sub": "studio-backend", "role": "service", "exp": time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	// One player waits alone: too few in the window, and no server.
	tk := createTicket(t, base, token, `{"queue":"duel","players":[{"id":"p-1","skill":1500}],"latencies":{"eu-west":30}}`)

	allocCtx, stopAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.WindowSize(1280, 1400),
	)
	defer stopAlloc()
	browser, stopBrowser := chromedp.NewContext(allocCtx)
	defer stopBrowser()
	browser, stopTimeout := context.WithTimeout(browser, 20*time.Second)
	defer stopTimeout()

	step := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(browser, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// waitFor polls a JavaScript condition in the page.
	waitFor := func(what, cond string) {
		t.Helper()
		if _, err := chromedp.Run(browser, chromedp.Poll[bool](cond, chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
			text, _ := chromedp.Run(browser, chromedp.Evaluate[string](`document.body.innerText`))
			t.Fatalf("waiting until %s: %v\npage:\n%s", what, err, text)
		}
	}

	step("opening the page", chromedp.Navigate(base+"/dashboard"))
	waitFor("the page asks for a token", `document.getElementById('status').textContent.includes('token')`)

	step("giving the token",
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS(`#token-form button[type=submit]`)))
	waitFor("the queue shows the waiting ticket",
		`document.querySelector('.queue[data-queue="duel"] [data-figure="searching"] dd')?.textContent === '1'`)
	waitFor("its skill band", `document.querySelector('.queue[data-queue="duel"] tr[data-band="1500"]') !== null`)
	kept, err := chromedp.Run(browser, chromedp.Evaluate[bool](
		fmt.Sprintf(`sessionStorage.getItem('quickmatch.dashboard.token') === %q && !location.href.includes(%q)`, token, token)))
	if err != nil || !kept {
		t.Errorf("the token is not in sessionStorage only (%v)", err)
	}

	step("looking the ticket up",
		chromedp.SendKeys(chromedp.CSS("#lookup-id"), tk.ID),
		chromedp.Click(chromedp.CSS("#lookup-go")))
	waitFor("the explanation", `document.querySelector('#blockers li[data-code="too_few_in_window"]') !== null`)
	explained, err := chromedp.Run(browser, chromedp.Text(chromedp.CSS("#explanation")))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{tk.ID, "searching", "too_few_in_window", "no_server_capacity", "1 of the 2 players"} {
		if !strings.Contains(explained, want) {
			t.Errorf("the explanation does not say %q:\n%s", want, explained)
		}
	}

	shot, err := chromedp.Run(browser, chromedp.FullScreenshot(100)) // quality 100 is a PNG
	if err != nil {
		t.Fatal(err)
	}
	dirs := []string{t.TempDir()}
	if d := os.Getenv("MM_SCREENSHOT_DIR"); d != "" {
		dirs = append(dirs, d)
	}
	for _, dir := range dirs {
		if err := os.WriteFile(filepath.Join(dir, "dashboard.png"), shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("screenshot: %d bytes in %s", len(shot), dirs[0])
}

func createTicket(t *testing.T, base, token, body string) contracts.Ticket {
	t.Helper()
	req, err := http.NewRequest("POST", base+"/v1/tickets", bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, raw)
	}
	var tk contracts.Ticket
	if err := json.Unmarshal(raw, &tk); err != nil {
		t.Fatal(err)
	}
	return tk
}
