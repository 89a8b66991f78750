//! A headless Chromium (Debian's `chromium`, installed by scripts/bootstrap.sh) driven over
//! the DevTools protocol, for tests of what a person sees in a browser.
//!
//! The protocol runs over a pipe (`--remote-debugging-pipe`: messages are JSON, each ended
//! by a NUL byte, read from fd 3 and written to fd 4), not a debugging port: nothing
//! listens on loopback that another test or process could reach or collide with, and no
//! websocket client is needed. Chromium gets its own profile under a temporary directory
//! and its own process group, and only that group is killed.
//!
//! Chromium cannot be given request headers on its command line, so a test that needs an
//! `authorization` header sets it with `Network.setExtraHTTPHeaders`. A server certificate
//! signed by a test CA is trusted by pinning its public key
//! (`--ignore-certificate-errors-spki-list`), not by ignoring every certificate error.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

/// The browser binary: `CHROMIUM_BIN`, else `chromium` on PATH.
pub fn chromium_bin() -> PathBuf {
    std::env::var_os("CHROMIUM_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("chromium"))
}

/// How long one protocol command may take before the test gives up on the browser.
const COMMAND_LIMIT: Duration = Duration::from_secs(30);

/// The base64 SHA-256 of a PEM certificate's SubjectPublicKeyInfo, as
/// `--ignore-certificate-errors-spki-list` takes it.
pub fn spki_sha256_base64(cert_pem: &str) -> String {
    use sha2::Digest;
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).expect("a PEM certificate");
    let cert = pem.parse_x509().expect("an X.509 certificate");
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(cert.public_key().raw))
}

/// The browser binary, after checking that it runs: a test calls this first, so a machine
/// without Chromium fails at once, saying what to do.
pub fn require_chromium() -> PathBuf {
    let bin = chromium_bin();
    let version = Command::new(&bin).arg("--version").stderr(Stdio::null()).output();
    match version {
        Ok(out) if out.status.success() => bin,
        _ => panic!(
            "{} is not installed or does not run: it is part of the toolchain, run scripts/bootstrap.sh (or set CHROMIUM_BIN)",
            bin.display()
        ),
    }
}

pub struct Browser {
    child: Child,
    to_browser: ChildStdin,
    from_browser: mpsc::Receiver<Value>,
    /// The page target's session: page commands carry it.
    session: String,
    next_id: u64,
    profile: PathBuf,
}

impl Browser {
    /// Starts Chromium, headless, trusting server certificates with these SPKI hashes, and
    /// attaches to its page. Fails with what to do when Chromium is not installed.
    pub fn start(trusted_spki: &[String]) -> Browser {
        let bin = require_chromium();
        let profile = std::env::temp_dir().join(format!("stagedoor-chromium-{}-{}", std::process::id(), unique()));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).expect("browser profile dir");
        let log = std::fs::File::create(profile.join("chromium.log")).expect("browser log");
        let mut args = vec![
            String::from("--headless"),
            // Tests run as root in CI; the sandbox refuses root.
            String::from("--no-sandbox"),
            String::from("--disable-gpu"),
            // Containers often give /dev/shm 64 MB, less than a renderer wants.
            String::from("--disable-dev-shm-usage"),
            String::from("--no-first-run"),
            String::from("--no-default-browser-check"),
            String::from("--disable-extensions"),
            String::from("--disable-background-networking"),
            String::from("--disable-component-update"),
            String::from("--disable-sync"),
            String::from("--hide-scrollbars"),
            String::from("--window-size=1400,900"),
            String::from("--remote-debugging-pipe"),
            format!("--user-data-dir={}", profile.display()),
        ];
        if !trusted_spki.is_empty() {
            args.push(format!("--ignore-certificate-errors-spki-list={}", trusted_spki.join(",")));
        }
        args.push(String::from("about:blank"));
        // The pipe is fds 3 (to the browser) and 4 (from it): the shell moves the child's
        // stdin and stdout there, then `exec`s, so the browser is the process we started.
        let child = Command::new("sh")
            .arg("-c")
            .arg("exec \"$0\" \"$@\" 3<&0 4>&1 0</dev/null 1>&2")
            .arg(&bin)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .process_group(0)
            .spawn();
        let mut child = child.unwrap_or_else(|e| panic!("start {} (run scripts/bootstrap.sh): {e}", bin.display()));
        let to_browser = child.stdin.take().expect("browser stdin");
        let from = child.stdout.take().expect("browser stdout");
        let (tx, from_browser) = mpsc::channel();
        // Reads until the browser closes the pipe; a reader thread, so every wait here is bounded.
        std::thread::spawn(move || {
            let mut reader = BufReader::new(from);
            loop {
                let mut message = Vec::new();
                match reader.read_until(0, &mut message) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                message.pop();
                let Ok(value) = serde_json::from_slice::<Value>(&message) else { continue };
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        let mut browser = Browser { child, to_browser, from_browser, session: String::new(), next_id: 0, profile };
        let targets = browser.browser_command("Target.getTargets", json!({}));
        let page = targets["targetInfos"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["targetId"].as_str())
            .map(str::to_owned);
        let page = match page {
            Some(page) => page,
            None => browser.browser_command("Target.createTarget", json!({"url": "about:blank"}))["targetId"]
                .as_str()
                .expect("a new page target")
                .to_owned(),
        };
        let attached = browser.browser_command("Target.attachToTarget", json!({"targetId": page, "flatten": true}));
        browser.session = attached["sessionId"].as_str().expect("a page session").to_owned();
        browser.command("Page.enable", json!({}));
        browser.command("Network.enable", json!({}));
        browser
    }

    fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = Value::String(session.to_owned());
        }
        let mut bytes = serde_json::to_vec(&message).expect("JSON");
        bytes.push(0);
        self.to_browser.write_all(&bytes).and_then(|()| self.to_browser.flush()).unwrap_or_else(|e| panic!("{method}: the browser's pipe: {e}; {}", self.log()));
        let deadline = Instant::now() + COMMAND_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let reply = self.from_browser.recv_timeout(left).unwrap_or_else(|e| panic!("{method}: no answer from the browser ({e}); {}", self.log()));
            if reply["id"].as_u64() != Some(id) {
                continue; // an event, or the answer to a command given up on
            }
            if let Some(error) = reply.get("error") {
                panic!("{method}: the browser refused: {error}");
            }
            return reply["result"].clone();
        }
    }

    fn browser_command(&mut self, method: &str, params: Value) -> Value {
        self.send(None, method, params)
    }

    /// A command to the page.
    pub fn command(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(Some(&session), method, params)
    }

    /// Every request of the page from now on carries these headers (none: `&[]`).
    pub fn set_headers(&mut self, headers: &[(&str, &str)]) {
        let headers: serde_json::Map<String, Value> = headers.iter().map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect();
        self.command("Network.setExtraHTTPHeaders", json!({"headers": headers}));
    }

    /// Loads `url` and waits (bounded) until the document is complete. Returns the HTTP
    /// status of the page's response.
    pub fn navigate(&mut self, url: &str) -> u16 {
        let navigated = self.command("Page.navigate", json!({"url": url}));
        if let Some(error) = navigated.get("errorText").and_then(Value::as_str) {
            panic!("navigate to {url}: {error}; {}", self.log());
        }
        let loader = navigated["loaderId"].as_str().unwrap_or_default().to_owned();
        let deadline = Instant::now() + COMMAND_LIMIT;
        loop {
            let state = self.evaluate("[document.readyState, performance.getEntriesByType('navigation').map(n => n.responseStatus)[0] || 0]");
            if state[0] == "complete" {
                let status = state[1].as_u64().and_then(|s| u16::try_from(s).ok()).unwrap_or(0);
                return status;
            }
            assert!(Instant::now() < deadline, "{url} (loader {loader}) did not finish loading within {COMMAND_LIMIT:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A JavaScript expression's value in the page (JSON values only).
    pub fn evaluate(&mut self, expression: &str) -> Value {
        let result = self.command("Runtime.evaluate", json!({"expression": expression, "returnByValue": true}));
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression}: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// `expression`'s value once the document is complete, retried (bounded) while it is not:
    /// a page that refreshes itself (`<meta http-equiv="refresh">`) may be reloading.
    pub fn evaluate_loaded(&mut self, expression: &str) -> Value {
        let guarded = format!("document.readyState === 'complete' ? {{ value: ({expression}) }} : null");
        let deadline = Instant::now() + COMMAND_LIMIT;
        loop {
            let result = self.evaluate(&guarded);
            if !result.is_null() {
                return result["value"].clone();
            }
            assert!(Instant::now() < deadline, "the page did not finish loading within {COMMAND_LIMIT:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A PNG of the whole page (not only the window), written to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        let metrics = self.command("Page.getLayoutMetrics", json!({}));
        let size = &metrics["cssContentSize"];
        let clip = json!({"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1});
        let shot = self.command("Page.captureScreenshot", json!({"format": "png", "captureBeyondViewport": true, "clip": clip}));
        let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap_or_default()).expect("base64 PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }

    fn log(&self) -> String {
        format!("browser log: {}", crate::stack::log_tail(&self.profile.join("chromium.log")))
    }
}

impl Drop for Browser {
    /// Asks the browser to close, then kills its process group (the renderer and GPU
    /// helpers it started too), and only that.
    fn drop(&mut self) {
        let mut message = serde_json::to_vec(&json!({"id": 0, "method": "Browser.close"})).unwrap_or_default();
        message.push(0);
        let _ = self.to_browser.write_all(&message).and_then(|()| self.to_browser.flush());
        // Not reaped while waiting (try_wait would reap it): until it is, its pid, and so
        // the group id, cannot be handed to another process.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !exited(self.child.id()) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Whether the process has exited (a zombie not yet reaped), from /proc.
fn exited(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // `pid (comm) state ...`: comm may hold spaces, so read after its closing parenthesis.
    stat.rsplit_once(')').is_none_or(|(_, rest)| rest.trim_start().starts_with('Z'))
}

fn unique() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
