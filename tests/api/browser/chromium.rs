//! Headless Chromium driving the agent gadget: one browser with its own fresh profile per test, pages signed in
//! as an agent through the page's own form, the page read with JavaScript expressions (never held element
//! handles, which go stale when the page re-renders) and polled for conditions with a deadline, and a screenshot
//! of every page in `target/browser-failures/` when a test fails.

use std::{
    net::SocketAddr,
    panic::{AssertUnwindSafe, resume_unwind},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chromiumoxide::{
    Browser, BrowserConfig, Page,
    cdp::browser_protocol::{
        input::InsertTextParams,
        page::{
            CaptureScreenshotFormat, EventJavascriptDialogOpening, HandleJavaScriptDialogParams,
        },
        target::CreateTargetParams,
    },
    handler::viewport::Viewport,
    page::ScreenshotParams,
};
use futures::{FutureExt, StreamExt};
use serde::de::DeserializeOwned;
use tempfile::TempDir;
use tokio::task::JoinHandle;

/// Where CI and Debian install Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// `require`: a missing Chromium fails the browser tests instead of skipping them.
pub const BROWSER_ENV: &str = "CUSTOMER_CONTEXT_TEST_BROWSER";

/// A directory: the tests write the README's screenshots of the gadget there.
pub const SCREENSHOTS_ENV: &str = "CUSTOMER_CONTEXT_SCREENSHOTS";

/// The viewport of every page, so screenshots are comparable from run to run.
pub const VIEWPORT: (u32, u32) = (1280, 800);

/// Generous bound for what depends on the machine's load rather than on the product: starting Chromium, loading
/// the page, the first render of data.
pub const LOAD: Duration = Duration::from_secs(30);

/// The longest a whole browser test may run.
const TEST_LIMIT: Duration = Duration::from_secs(240);

/// How often a condition is checked while waiting for it.
const POLL: Duration = Duration::from_millis(25);

/// Switches of every browser (chromiumoxide adds the leading `--`): headless without GPU, and nothing that reaches
/// out to the network by itself (on a closed network those requests hang and stall the browser). With
/// `new_headless_mode()` and `no_sandbox()`, the browser runs as `--headless=new --no-sandbox`.
const SWITCHES: &[&str] = &[
    "disable-gpu",
    "disable-quic",
    "no-first-run",
    "disable-background-networking",
    "disable-component-update",
    "disable-sync",
    "disable-renderer-backgrounding",
    "disable-background-timer-throttling",
];

/// `[data-testid="…"]`, the selector of a test id.
pub fn testid(id: &str) -> String {
    format!("[data-testid=\"{id}\"]")
}

/// `value` as a JavaScript literal.
pub fn js(value: &str) -> String {
    serde_json::to_string(value).expect("a string serializes")
}

/// The directory the README's screenshots go to, when asked for.
pub fn screenshots_dir() -> Option<PathBuf> {
    std::env::var_os(SCREENSHOTS_ENV)
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
}

/// One headless Chromium for one test.
pub struct Chromium {
    test: String,
    browser: Browser,
    events: JoinHandle<()>,
    pages: Mutex<Vec<AgentPage>>,
    // Removed after the browser has exited.
    profile: TempDir,
}

impl Chromium {
    /// A fresh browser for the test `test` (the name of its failure screenshots), or None when Chromium is not
    /// installed and [`BROWSER_ENV`] does not require it (the test is then skipped, with a notice).
    pub async fn launch(test: &str) -> Option<Chromium> {
        if !Path::new(CHROMIUM).exists() {
            let required = std::env::var(BROWSER_ENV).is_ok_and(|value| value == "require");
            assert!(
                !required,
                "{BROWSER_ENV}=require but {CHROMIUM} is missing: apt-get install chromium"
            );
            eprintln!(
                "skipped {test}: {CHROMIUM} is missing (apt-get install chromium; {BROWSER_ENV}=require makes \
                 this a failure)"
            );
            return None;
        }
        let profile = tempfile::tempdir().expect("profile directory");
        let (width, height) = VIEWPORT;
        let config = BrowserConfig::builder()
            .chrome_executable(CHROMIUM)
            .new_headless_mode()
            .no_sandbox()
            .user_data_dir(profile.path())
            .window_size(width, height)
            .viewport(Viewport {
                width,
                height,
                device_scale_factor: Some(1.0),
                ..Viewport::default()
            })
            .args(SWITCHES.iter().copied())
            .launch_timeout(LOAD)
            .request_timeout(LOAD)
            .build()
            .expect("browser configuration");
        let (browser, mut handler) = Browser::launch(config)
            .await
            .unwrap_or_else(|e| panic!("{CHROMIUM} does not start: {e}"));
        let events = tokio::spawn(async move { while handler.next().await.is_some() {} });
        Some(Chromium {
            test: test.to_owned(),
            browser,
            events,
            pages: Mutex::new(Vec::new()),
            profile,
        })
    }

    /// Runs the test's `body` with this browser, at most [`TEST_LIMIT`]. When it fails, every page is saved as
    /// `target/browser-failures/<test>-<agent>.png` before the failure goes on; either way the browser is closed.
    pub async fn run(self, body: impl AsyncFnOnce(&Chromium)) {
        let outcome = AssertUnwindSafe(async {
            tokio::time::timeout(TEST_LIMIT, body(&self))
                .await
                .unwrap_or_else(|_| panic!("{} did not finish within {TEST_LIMIT:?}", self.test));
        })
        .catch_unwind()
        .await;
        if let Err(failure) = outcome {
            self.save_failure_screenshots().await;
            self.close().await;
            resume_unwind(failure);
        }
        self.close().await;
    }

    async fn save_failure_screenshots(&self) {
        let dir = failures_dir();
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("cannot create {}: {e}", dir.display());
            return;
        }
        let pages = self.pages.lock().expect("pages").clone();
        for page in pages {
            let path = dir.join(format!("{}-{}.png", self.test, page.agent));
            let saved =
                tokio::time::timeout(Duration::from_secs(10), page.save_screenshot(&path)).await;
            match saved {
                Ok(Ok(())) => eprintln!("screenshot of the failed test: {}", path.display()),
                Ok(Err(e)) => eprintln!("no screenshot {}: {e}", path.display()),
                Err(_) => eprintln!("no screenshot {}: timed out", path.display()),
            }
        }
    }

    async fn close(mut self) {
        self.pages.lock().expect("pages").clear();
        let closed = tokio::time::timeout(Duration::from_secs(10), self.browser.close()).await;
        if !matches!(closed, Ok(Ok(_))) {
            let _ = self.browser.kill().await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.browser.wait()).await;
        self.events.abort();
        drop(self.profile);
    }

    /// A new window on the gadget of the server at `addr`, signed in as `agent` through the sign-in form, once its
    /// live status says `Live`.
    pub async fn open_gadget(&self, addr: SocketAddr, agent: &str) -> AgentPage {
        let target = CreateTargetParams {
            new_window: Some(true),
            ..CreateTargetParams::new("about:blank")
        };
        let page = self.browser.new_page(target).await.expect("new page");
        let page = AgentPage::new(agent, page).await;
        self.pages.lock().expect("pages").push(page.clone());
        page.page
            .goto(format!("http://{addr}/gadget/"))
            .await
            .expect("the gadget loads");
        page.wait_for(
            "the sign-in form",
            "!document.getElementById('sign-in').hidden",
            LOAD,
        )
        .await;
        page.type_into(&testid("sign-in-agent"), agent).await;
        page.click(&testid("sign-in-submit")).await;
        page.wait_for(
            "the agent's name in the top bar",
            &format!(
                "document.getElementById('agent-name').textContent === {}",
                js(agent)
            ),
            LOAD,
        )
        .await;
        page.wait_live(LOAD).await;
        page
    }
}

fn failures_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("browser-failures")
}

/// One window of the gadget, signed in as one agent. Confirmation dialogs are accepted, as an agent who clicks
/// OK would, and remembered.
#[derive(Clone)]
pub struct AgentPage {
    pub agent: String,
    page: Page,
    dialogs: Arc<Mutex<Vec<String>>>,
}

impl AgentPage {
    async fn new(agent: &str, page: Page) -> AgentPage {
        let dialogs = Arc::new(Mutex::new(Vec::new()));
        let mut opening = page
            .event_listener::<EventJavascriptDialogOpening>()
            .await
            .expect("dialog events");
        let (answering, seen) = (page.clone(), dialogs.clone());
        tokio::spawn(async move {
            while let Some(dialog) = opening.next().await {
                seen.lock().expect("dialogs").push(dialog.message.clone());
                let _ = answering
                    .execute(HandleJavaScriptDialogParams::new(true))
                    .await;
            }
        });
        AgentPage {
            agent: agent.to_owned(),
            page,
            dialogs,
        }
    }

    /// The messages of the dialogs the page opened so far.
    pub fn dialogs(&self) -> Vec<String> {
        self.dialogs.lock().expect("dialogs").clone()
    }

    /// The value of the JavaScript expression `expression` (JSON-serializable) in the page.
    pub async fn eval<T: DeserializeOwned>(&self, expression: &str) -> T {
        let result = self
            .page
            .evaluate_expression(expression)
            .await
            .unwrap_or_else(|e| panic!("{}'s page cannot evaluate {expression}: {e}", self.agent));
        result
            .into_value()
            .unwrap_or_else(|e| panic!("{expression} in {}'s page: {e}", self.agent))
    }

    /// Whether `condition` holds now (false while the page cannot answer, e.g. during a navigation).
    async fn holds(&self, condition: &str) -> bool {
        let expression = format!("!!({condition})");
        match self.page.evaluate_expression(expression).await {
            Ok(result) => result.into_value().unwrap_or(false),
            Err(_) => false,
        }
    }

    /// Waits until `condition` (a JavaScript expression) holds, at most `timeout`; returns how long it took.
    pub async fn wait_for(&self, what: &str, condition: &str, timeout: Duration) -> Duration {
        self.wait_until(what, condition, Instant::now(), timeout)
            .await
    }

    /// Waits until `condition` holds, failing the test unless it does within `limit` of `since` (a moment before
    /// the call, e.g. the click that should cause it); returns the time from `since` until it held.
    pub async fn wait_until(
        &self,
        what: &str,
        condition: &str,
        since: Instant,
        limit: Duration,
    ) -> Duration {
        loop {
            if self.holds(condition).await {
                return since.elapsed();
            }
            if since.elapsed() > limit {
                let state = self.state().await;
                panic!(
                    "{}'s page: no {what} within {limit:?} ({condition}); the page shows {state}",
                    self.agent
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// What an agent would see at a glance, for failure messages.
    pub async fn state(&self) -> String {
        const STATE: &str = r#"JSON.stringify({
            live: document.getElementById('live-status')?.dataset.state,
            liveDetail: document.getElementById('live-status')?.title,
            message: document.getElementById('message')?.hidden ? null : document.getElementById('message')?.textContent,
            banner: document.getElementById('banner')?.hidden ? null : document.getElementById('banner-text')?.textContent,
            customer: document.getElementById('customer')?.dataset.customerId ?? null,
            errors: [...document.querySelectorAll('[data-error-for]:not([hidden])')].map(e => e.dataset.errorFor + ': ' + e.textContent),
        })"#;
        match self.page.evaluate_expression(STATE).await {
            Ok(result) => result.into_value::<String>().unwrap_or_default(),
            Err(e) => format!("nothing readable ({e})"),
        }
    }

    /// Waits until the live status says `Live`.
    pub async fn wait_live(&self, timeout: Duration) -> Duration {
        self.wait_for(
            "live status Live",
            "document.getElementById('live-status').dataset.state === 'live'",
            timeout,
        )
        .await
    }

    /// Waits until the element `selector` is on the page and visible.
    pub async fn wait_visible(&self, selector: &str) {
        let visible = format!(
            "document.querySelector({})?.checkVisibility()",
            js(selector)
        );
        self.wait_for(&format!("visible {selector}"), &visible, LOAD)
            .await;
    }

    /// The element `selector`, which must be on the page.
    async fn element(&self, selector: &str) -> chromiumoxide::Element {
        self.page
            .find_element(selector)
            .await
            .unwrap_or_else(|e| panic!("{}'s page has no {selector}: {e}", self.agent))
    }

    /// Clicks the element `selector` with the mouse, after scrolling it into view.
    pub async fn click(&self, selector: &str) {
        self.wait_visible(selector).await;
        let element = self.element(selector).await;
        element
            .click()
            .await
            .unwrap_or_else(|e| panic!("{}'s page: cannot click {selector}: {e}", self.agent));
    }

    /// Focuses the field `selector`, selects what it holds and types `text` over it (as the keyboard inserts
    /// text: the field's `input` event fires).
    pub async fn type_into(&self, selector: &str, text: &str) {
        self.wait_visible(selector).await;
        let focus = format!(
            "(() => {{ const field = document.querySelector({}); field.focus(); field.select(); \
             return document.activeElement === field; }})()",
            js(selector)
        );
        assert!(
            self.eval::<bool>(&focus).await,
            "{}'s page: {selector} takes no focus",
            self.agent
        );
        self.page
            .execute(InsertTextParams::new(text))
            .await
            .unwrap_or_else(|e| panic!("{}'s page: cannot type into {selector}: {e}", self.agent));
    }

    /// Presses `key` (`Enter`, `Escape`, …) in the element `selector`.
    pub async fn press(&self, selector: &str, key: &str) {
        let element = self.element(selector).await;
        element
            .focus()
            .await
            .unwrap_or_else(|e| panic!("{}'s page: cannot focus {selector}: {e}", self.agent))
            .press_key(key)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{}'s page: cannot press {key} in {selector}: {e}",
                    self.agent
                )
            });
    }

    /// The text of the first element `selector` ("" when there is none).
    pub async fn text(&self, selector: &str) -> String {
        self.eval(&format!(
            "document.querySelector({})?.textContent ?? ''",
            js(selector)
        ))
        .await
    }

    /// The value of the input `selector`.
    pub async fn value(&self, selector: &str) -> String {
        self.eval(&format!("document.querySelector({}).value", js(selector)))
            .await
    }

    /// Whether the element `selector` is on screen.
    pub async fn visible(&self, selector: &str) -> bool {
        self.eval(&format!(
            "!!document.querySelector({})?.checkVisibility()",
            js(selector)
        ))
        .await
    }

    /// Saves what the page shows as a PNG.
    pub async fn save_screenshot(&self, path: &Path) -> chromiumoxide::error::Result<()> {
        self.page.bring_to_front().await?;
        let params = ScreenshotParams::builder()
            .format(CaptureScreenshotFormat::Png)
            .build();
        self.page.save_screenshot(params, path).await.map(drop)
    }

    /// Saves what the page shows as `name` in the README's screenshot directory, when [`SCREENSHOTS_ENV`] asks
    /// for them and `wanted` (one run of a test takes them).
    pub async fn screenshot_for_docs_if(&self, wanted: bool, name: &str) {
        let Some(dir) = screenshots_dir().filter(|_| wanted) else {
            return;
        };
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        // No caret blinking in a focused field and no hover effects from the last click.
        self.eval::<bool>("(document.activeElement?.blur(), true)")
            .await;
        let path = dir.join(name);
        self.save_screenshot(&path)
            .await
            .unwrap_or_else(|e| panic!("cannot save {}: {e}", path.display()));
    }
}
