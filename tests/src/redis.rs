//! A private redis-server for the tests that drive a Redis script directly (no stack),
//! on a free loopback port, killed when dropped.
//!
//! Its log is kept in a file and printed when a test using it fails, with whether the
//! server was still running: a lost connection then says whether the server died, was
//! replaced, or refused the client.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::ports::free_port;

pub struct PrivateRedis {
    // Behind a lock so a shared handle can still ask whether the server runs.
    child: Mutex<Child>,
    pub port: u16,
    log: PathBuf,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("stagedoor-test-redis-{}-{port}.log", std::process::id()));
        let child = spawn(port, &log);
        let redis = PrivateRedis { child: Mutex::new(child), port, log };
        wait_listening(port);
        // What answered must be this server: one that failed to bind and exited would
        // leave the port to whatever else listens there.
        if !redis.running() {
            panic!("redis-server on {port} exited after something answered on its port\n{}", redis.diagnosis());
        }
        redis
    }

    fn running(&self) -> bool {
        matches!(self.child().try_wait(), Ok(None))
    }

    fn child(&self) -> std::sync::MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the server still runs, and the end of its log.
    pub fn diagnosis(&self) -> String {
        let state = match self.child().try_wait() {
            Ok(None) => String::from("still running"),
            Ok(Some(status)) => format!("exited: {status}"),
            Err(e) => format!("unknown: {e}"),
        };
        let log = std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("(no log: {e})"));
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("redis-server on port {} ({}): {state}; its log's end:\n{}", self.port, self.log.display(), tail.join("\n"))
    }

    /// Kills it (the port stays this one's: `restart` takes it again).
    pub fn stop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = child.kill();
        let _ = child.wait();
    }

    /// An empty redis-server on the same port, not waited for (the caller watches its
    /// client come back).
    pub fn restart(&mut self) {
        self.stop();
        self.child = Mutex::new(spawn(self.port, &self.log));
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// One redis-cli command's raw output lines. A command that printed nothing and failed
    /// (no connection, say) panics with redis-cli's error and the server's state.
    pub fn cli(&self, args: &[&str]) -> Vec<String> {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "--raw"])
            .args(args)
            .output()
            .expect("run redis-cli");
        if out.stdout.is_empty() && (!out.status.success() || !out.stderr.is_empty()) {
            panic!(
                "redis-cli {args:?} printed nothing ({}): {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                self.diagnosis()
            );
        }
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
    }
}

fn spawn(port: u16, log: &std::path::Path) -> Child {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("redis-server's log file");
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(file.try_clone().expect("log file handle"))
        .stderr(file)
        .spawn()
        .expect("start redis-server (is it installed? scripts/bootstrap.sh)")
}

fn wait_listening(port: u16) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "redis-server did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.diagnosis());
        }
        self.stop();
        let _ = std::fs::remove_file(&self.log);
    }
}
