//! The operator page in a real headless browser: Debian's chromium, driven
//! through its own WebDriver (chromedriver) over the W3C WebDriver
//! protocol, against the real broker and processor. A held intent appears
//! on the page, is approved there, and its ALLOWED decision follows; a
//! paused domain is resumed from the page.
//!
//! With SENDGATE_SCREENSHOTS=DIR the test also saves the page's screenshots
//! there (docs/images holds the ones in the docs).

use crate::common::*;
use serde_json::{json, Value};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const OPERATOR: &str = "operator-token-0123456789";
const ACME: &str = "acme-token-0123456789abc";
const WAIT: Duration = Duration::from_secs(60);
/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one headless chromium session in it.
struct Browser {
    url: String,
    session: String,
    driver: Child,
}

impl Browser {
    fn start() -> Browser {
        let chromium = env_var("SENDGATE_TEST_CHROMIUM");
        let chromedriver = env_var("SENDGATE_TEST_CHROMEDRIVER");
        assert!(!chromium.is_empty() && !chromedriver.is_empty(), "chromium and chromedriver must be installed (scripts/setup.sh installs the chromium and chromium-driver packages)");
        let port = free_port();
        let driver = std::process::Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{chromedriver}: {e}"));
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ureq::get(&format!("{url}/status")).call().ok().and_then(|r| serde_json::from_str::<Value>(&r.into_string().ok()?).ok()).is_some_and(|v| v["value"]["ready"] == true) {
            assert!(Instant::now() < deadline, "chromedriver did not start on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        // Root in a container: chromium's sandbox cannot start there.
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {"binary": chromium, "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]}}}});
        let mut b = Browser { url, session: String::new(), driver };
        let v = b.send("POST", "/session", Some(caps)).unwrap_or_else(|e| panic!("no browser session: {e}"));
        b.session = v["sessionId"].as_str().expect("a session id").to_string();
        b
    }

    /// One WebDriver command; its `value`, or the error it reports.
    fn send(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let path = if self.session.is_empty() { path.to_string() } else { format!("/session/{}{path}", self.session) };
        let req = ureq::request(method, &format!("{}{path}", self.url)).timeout(Duration::from_secs(60));
        let resp = match body {
            Some(b) => req.set("content-type", "application/json").send_string(&b.to_string()),
            None => req.call(),
        };
        let v: Value = match resp {
            Ok(r) => serde_json::from_str(&r.into_string().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?,
            Err(ureq::Error::Status(_, r)) => return Err(r.into_string().unwrap_or_default()),
            Err(e) => return Err(e.to_string()),
        };
        Ok(v["value"].clone())
    }

    fn goto(&self, url: &str) {
        self.send("POST", "/url", Some(json!({ "url": url }))).unwrap();
    }

    /// The element `css` matches now, if any.
    fn find(&self, css: &str) -> Option<String> {
        self.send("POST", "/element", Some(json!({"using": "css selector", "value": css}))).ok().and_then(|v| v[ELEMENT].as_str().map(str::to_string))
    }

    /// Waits for `css` to match; the element.
    fn wait_for(&self, css: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(e) = self.find(css) {
                return e;
            }
            assert!(Instant::now() < deadline, "{css} never appeared; the page says: {}", self.page_text());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits for `css` to match nothing.
    fn wait_gone(&self, css: &str) {
        let deadline = Instant::now() + WAIT;
        while self.find(css).is_some() {
            assert!(Instant::now() < deadline, "{css} never went; the page says: {}", self.page_text());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn click(&self, element: &str) {
        self.send("POST", &format!("/element/{element}/click"), Some(json!({}))).unwrap();
    }

    fn type_into(&self, element: &str, text: &str) {
        self.send("POST", &format!("/element/{element}/value"), Some(json!({ "text": text }))).unwrap();
    }

    /// Waits for `css` to match and reads its text. The page re-renders
    /// parts of itself (the metrics tiles at every scrape, lists when they
    /// refresh), so the element found may be replaced before it is read: it
    /// is then found again, until the deadline.
    fn text_of(&self, css: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let element = self.wait_for(css);
            match self.send("GET", &format!("/element/{element}/text"), None) {
                Ok(v) => return v.as_str().unwrap_or_default().to_string(),
                Err(e) if e.contains("stale element") && Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => panic!("reading the text of {css}: {e}"),
            }
        }
    }

    fn page_text(&self) -> String {
        // For failure messages: whatever can be read.
        self.find("body").and_then(|b| self.send("GET", &format!("/element/{b}/text"), None).ok()).and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
    }

    /// Saves a PNG of the window when SENDGATE_SCREENSHOTS names a directory.
    fn screenshot(&self, name: &str) {
        self.save_png("/screenshot", name);
    }

    /// The same, of one element (scrolled into view).
    fn element_screenshot(&self, css: &str, name: &str) {
        let e = self.wait_for(css);
        self.save_png(&format!("/element/{e}/screenshot"), name);
    }

    fn save_png(&self, path: &str, name: &str) {
        let Ok(dir) = std::env::var("SENDGATE_SCREENSHOTS") else { return };
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD.decode(self.send("GET", path, None).unwrap().as_str().unwrap()).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(std::path::Path::new(&dir).join(name), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.send("DELETE", "", None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn a_held_intent_is_approved_and_a_paused_domain_resumed_on_the_operator_page() {
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let env = api_env_ready("page", &format!("operator={OPERATOR},tenant:acme={ACME}"), vec![("SENDGATE_METRICS_ADDR".into(), metrics_addr)]);
    let api = format!("http://{}", env.cfg.api_addr);

    // Some traffic (a mailbox each: a new mailbox may send 3 an hour), an
    // intent held for approval, and a paused domain.
    let intents: Vec<String> = (0..5).map(|n| format!(r#"{{"intent_id":"web-ok-{n}","tenant":"acme","sender":"bo{n}@acme.com","recipient":"r{n}@corp.example","class":"OUTBOUND"}}"#)).collect();
    assert_eq!(call(&api, Some(ACME), "POST", "/v1/intents?wait_ms=20000", Some(&format!("[{}]", intents.join(",")))).status, 200);
    let held = r#"{"intent_id":"web-held","tenant":"acme","sender":"ana@acme.com","recipient":"cfo@corp.example","class":"OUTBOUND","requires_approval":true}"#;
    let a = call(&api, Some(ACME), "POST", "/v1/intents?wait_ms=20000", Some(held));
    assert_eq!((a.status, a.json()["status"].as_str()), (200, Some("HELD")), "{}", a.body);
    assert_eq!(call(&api, Some(OPERATOR), "POST", "/v1/senders/sender_domain:paused.example/pause", Some(r#"{"reason":"complaint spike"}"#)).status, 202);

    let b = Browser::start();
    b.goto(&format!("{api}/ui/?refresh_ms=500"));
    // The page asks for a token before anything else.
    let token = b.wait_for("#token");
    b.type_into(&token, OPERATOR);
    b.click(&b.wait_for("#login"));

    // The held intent is listed with its recipient; approved on the page.
    let row = "#held-rows tr[data-intent-id=\"web-held\"]";
    assert!(b.text_of(row).contains("cfo@corp.example"));
    b.wait_for("#paused-rows tr[data-scope=\"sender_domain:paused.example\"]");
    b.wait_for("#decisions-rows tr[data-intent-id=\"web-ok-0\"] td.status-allowed");
    b.screenshot("operator-page.png");
    b.click(&b.wait_for(&format!("{row} button.approve")));
    // Its ALLOWED decision follows, on the page and in the API; it is held no more.
    b.wait_for("#decisions-rows tr[data-intent-id=\"web-held\"] td.status-allowed");
    let d = call(&api, Some(ACME), "GET", "/v1/decisions/web-held", None);
    assert_eq!(d.json()["status"], "ALLOWED", "{}", d.body);
    b.wait_gone(row);

    // The paused domain, resumed on the page: no longer listed, and its
    // intents are allowed again.
    let paused = "#paused-rows tr[data-scope=\"sender_domain:paused.example\"]";
    b.click(&b.wait_for(&format!("{paused} button.resume")));
    b.wait_gone(paused);
    assert!(call(&api, Some(OPERATOR), "GET", "/v1/senders", None).json()["paused"].as_array().unwrap().is_empty());
    let after = call(&api, Some(OPERATOR), "POST", "/v1/intents?wait_ms=20000", Some(r#"{"intent_id":"web-after","tenant":"default","sender":"zed@paused.example","recipient":"x@corp.example","class":"OUTBOUND"}"#));
    assert_eq!(after.json()["status"], "ALLOWED", "{}", after.body);

    // Usage bars of a scope.
    let scope = b.wait_for("#usage-scope");
    b.type_into(&scope, "sender_domain:acme.com");
    b.click(&b.wait_for("#usage-go"));
    let bars = b.text_of("#usage-bars .usage-row");
    assert!(bars.contains("sender_domain:acme.com"), "{bars}");
    b.screenshot("operator-page-usage.png");

    // This instance's metrics, for an operator: charts of decisions per
    // second and latency once two scrapes are in, and the state tiles.
    b.wait_for("#m-decisions svg.chart polyline.series");
    b.wait_for("#m-latency svg.chart");
    assert!(!b.text_of("#m-state [data-stat=\"held\"]").is_empty());
    b.element_screenshot("#metrics", "operator-page-metrics.png");
}
