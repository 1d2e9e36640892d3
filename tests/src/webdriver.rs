//! Just enough of the W3C WebDriver protocol (JSON over HTTP) to drive headless Chromium
//! through `chromedriver` with the HTTP client the tests already have: a browser test needs a
//! handful of commands, not a WebDriver crate and its async runtime.
//!
//! [`ChromeDriver::start`] runs `chromedriver` on a free port and kills it on drop;
//! [`Browser::open`] starts a headless session in it, deleted on drop.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use testkit::{eventually, free_port, HttpClient};

/// The key under which WebDriver names an element (W3C "web element identifier").
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The Tab key, as WebDriver codes it.
pub const TAB: char = '\u{E004}';
/// The Enter key, as WebDriver codes it.
pub const ENTER: char = '\u{E007}';

/// A running `chromedriver`, killed on drop.
pub struct ChromeDriver {
    child: Child,
    base: String,
    client: HttpClient,
}

/// The first of `names` found on `PATH` (or as an absolute path).
fn find_binary(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    names.iter().find_map(|name| {
        if Path::new(name).is_absolute() {
            return Path::new(name).is_file().then(|| PathBuf::from(name));
        }
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

impl ChromeDriver {
    /// Starts `chromedriver` (`CHROMEDRIVER` or the first on `PATH`) on a free loopback port
    /// and waits until it is ready; panics naming what is missing.
    pub fn start() -> ChromeDriver {
        let binary = std::env::var_os("CHROMEDRIVER")
            .map(PathBuf::from)
            .or_else(|| find_binary(&["chromedriver", "/usr/lib/chromium/chromedriver"]))
            .expect("chromedriver not found (apt-get install chromium chromium-driver)");
        let port = free_port();
        let child = Command::new(&binary)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
        let driver = ChromeDriver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: HttpClient::default(),
        };
        let ready = eventually(Duration::from_secs(20), || {
            let status = driver.client.send("GET", &driver.url("/status"), &[], &[]);
            let body = status.ok()?.json();
            (body["value"]["ready"] == true).then_some(())
        });
        assert!(ready.is_some(), "chromedriver never became ready");
        driver
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends one command; its `value`, or a panic with WebDriver's error.
    fn command(&self, method: &str, path: &str, body: &Value) -> Result<Value, Value> {
        let bytes = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let headers = [("content-type", "application/json; charset=utf-8")];
        let response = self
            .client
            .send(method, &self.url(path), &headers, &bytes)
            .unwrap_or_else(|e| panic!("chromedriver: {e}"));
        let value = response.json()["value"].take();
        if response.status == 200 {
            Ok(value)
        } else {
            Err(value)
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One headless Chromium session of a [`ChromeDriver`].
pub struct Browser<'a> {
    driver: &'a ChromeDriver,
    session: String,
}

/// Whether this process runs as root, where Chromium's sandbox refuses to start.
fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

impl<'a> Browser<'a> {
    /// A new headless session with a `width` x `height` window, keeping the browser's console
    /// log (`goog:loggingPrefs`) so that tests can fail on page errors.
    pub fn open(driver: &'a ChromeDriver, width: u32, height: u32) -> Browser<'a> {
        let mut args = vec![
            "--headless=new".to_string(),
            "--disable-gpu".to_string(),
            "--disable-dev-shm-usage".to_string(),
            "--no-first-run".to_string(),
            format!("--window-size={width},{height}"),
        ];
        if is_root() {
            args.push("--no-sandbox".to_string());
        }
        let mut options = json!({"args": args});
        let chrome = std::env::var_os("CHROME_BIN")
            .map(PathBuf::from)
            .or_else(|| find_binary(&["chromium", "chromium-browser", "google-chrome"]));
        if let Some(chrome) = chrome {
            options["binary"] = json!(chrome.display().to_string());
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": options,
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let session = driver
            .command("POST", "/session", &capabilities)
            .unwrap_or_else(|e| panic!("cannot start a Chromium session: {e}"));
        let session = session["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        let browser = Browser { driver, session };
        browser.set_size(width, height);
        browser
    }

    fn call(&self, method: &str, path: &str, body: &Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.driver
            .command(method, &path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    /// Loads `url` and waits for the page's load event.
    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", &json!({"url": url}));
    }

    /// Resizes the window (the page's viewport follows).
    pub fn set_size(&self, width: u32, height: u32) {
        self.call(
            "POST",
            "/window/rect",
            &json!({"width": width, "height": height}),
        );
    }

    /// The first element matching `css`, if any.
    pub fn find(&self, css: &str) -> Option<String> {
        let path = format!("/session/{}/element", self.session);
        let body = json!({"using": "css selector", "value": css});
        match self.driver.command("POST", &path, &body) {
            Ok(element) => element[ELEMENT].as_str().map(str::to_string),
            Err(e) if e["error"] == "no such element" => None,
            Err(e) => panic!("find {css}: {e}"),
        }
    }

    /// Waits (bounded) for an element matching `css`.
    pub fn wait_for(&self, css: &str, timeout: Duration) -> String {
        eventually(timeout, || self.find(css))
            .unwrap_or_else(|| panic!("no {css} within {timeout:?}: {}", self.page_text()))
    }

    /// Clicks `element` as a user would (scrolled into view, not covered).
    pub fn click(&self, element: &str) {
        self.call("POST", &format!("/element/{element}/click"), &json!({}));
    }

    /// Types `text` into `element` after clearing it.
    pub fn fill(&self, element: &str, text: &str) {
        self.call("POST", &format!("/element/{element}/clear"), &json!({}));
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            &json!({"text": text}),
        );
    }

    /// Presses and releases one key on the focused element (a WebDriver key code such as
    /// [`TAB`] or [`ENTER`], or a character).
    pub fn press(&self, key: char) {
        let actions = json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
            {"type": "keyDown", "value": key.to_string()},
            {"type": "keyUp", "value": key.to_string()},
        ]}]});
        self.call("POST", "/actions", &actions);
    }

    /// The rendered text of `element`.
    pub fn text(&self, element: &str) -> String {
        self.call("GET", &format!("/element/{element}/text"), &Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page and returns what
    /// it returns.
    pub fn execute(&self, script: &str, args: &[Value]) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            &json!({"script": script, "args": args}),
        )
    }

    /// The visible text of the whole page, for failure messages.
    pub fn page_text(&self) -> String {
        self.execute("return document.body ? document.body.innerText : ''", &[])
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// A PNG screenshot of the viewport, written to `path`.
    pub fn screenshot(&self, path: &Path) {
        let encoded = self.call("GET", "/screenshot", &Value::Null);
        let png = base64_decode(encoded.as_str().expect("base64 PNG"));
        assert!(png.starts_with(b"\x89PNG"), "a screenshot is a PNG");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// The browser console's entries since the last call (chromedriver's log endpoint:
    /// `level`, `message`, `source`, `timestamp`).
    pub fn console_log(&self) -> Vec<Value> {
        self.call("POST", "/se/log", &json!({"type": "browser"}))
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        let path = format!("/session/{}", self.session);
        let _ = self.driver.command("DELETE", &path, &Value::Null);
    }
}

/// Standard base64 (with padding, whitespace ignored), as WebDriver sends screenshots.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter_map(value) {
        acc = (acc << 6) | c;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64_decode;

    #[test]
    fn base64_round_trips_known_values() {
        assert_eq!(base64_decode("TWFu"), b"Man");
        assert_eq!(base64_decode("TWE="), b"Ma");
        assert_eq!(base64_decode("TQ=="), b"M");
        assert_eq!(base64_decode("iVBORw0KGgo="), b"\x89PNG\r\n\x1a\n");
    }
}
