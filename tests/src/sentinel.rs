//! A Redis primary, two replicas and three Sentinels on loopback, each on a free port in a
//! private directory, killed when dropped (only these processes).
//!
//! Two replicas, not one: with `min-replicas-to-write 1` (which a deployment that promises
//! "no acknowledged write lost" sets, so a primary cut off from its replicas stops
//! accepting writes) the promoted primary still has a replica after the old one is gone,
//! so writes go on after the failover. Sentinel times are short (down after 2 s, failover
//! timeout 5 s) so a failover takes a few seconds here; not 1 s: on a loaded 2-core
//! machine a primary just promoted was seen missing 1 s of pings and failed over again.
//! (A Sentinel starved of CPU for 2 s also enters TILT mode for 30 s, which the waits
//! below allow for.)

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ports::free_port;
use crate::stack::{log_tail, wait_for};

pub const MASTER: &str = "stagedoor";

pub struct SentinelSet {
    pub dir: PathBuf,
    /// The data nodes: (port, process); the first is the primary at start.
    pub nodes: Vec<(u16, Option<Child>)>,
    pub sentinels: Vec<(u16, Child)>,
}

impl SentinelSet {
    pub fn start(name: &str) -> SentinelSet {
        let dir = std::env::temp_dir().join(format!("stagedoor-sentinel-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the sentinel test dir");
        let mut set = SentinelSet { dir, nodes: Vec::new(), sentinels: Vec::new() };
        let primary = free_port();
        set.nodes.push((primary, Some(set.spawn_node(primary, None))));
        for _ in 0..2 {
            let port = free_port();
            set.nodes.push((port, Some(set.spawn_node(port, Some(primary)))));
        }
        // Connected is not enough: a replica counts toward min-replicas-to-write once its
        // full sync is over (state=online).
        let replicated = wait_for(Duration::from_secs(20), || {
            let info = set.info(primary, "replication");
            info.contains("connected_slaves:2") && info.matches("state=online").count() == 2
        });
        assert!(replicated, "both replicas must sync with the primary:\n{}", set.info(primary, "replication"));
        for _ in 0..3 {
            let port = free_port();
            let child = set.spawn_sentinel(port, primary);
            set.sentinels.push((port, child));
        }
        // Each sentinel must know the other two (they find each other through the primary
        // every 2 s) and both replicas before a failover can be agreed.
        let ready = wait_for(Duration::from_secs(30), || {
            set.sentinels.iter().all(|(port, _)| {
                let master = cli(*port, &["SENTINEL", "MASTER", MASTER]);
                field(&master, "num-other-sentinels") == Some("2") && field(&master, "num-slaves") == Some("2")
            })
        });
        assert!(ready, "the sentinels never formed a quorum:\n{}", cli(set.sentinels[0].0, &["SENTINEL", "MASTER", MASTER]).join("\n"));
        set
    }

    /// `redis+sentinel://127.0.0.1:s1,127.0.0.1:s2,127.0.0.1:s3/stagedoor`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(|(port, _)| format!("127.0.0.1:{port}")).collect();
        format!("redis+sentinel://{}/{MASTER}", hosts.join(","))
    }

    /// The primary's port as the first sentinel names it now.
    pub fn primary_port(&self) -> Option<u16> {
        let reply = cli(self.sentinels[0].0, &["SENTINEL", "get-master-addr-by-name", MASTER]);
        reply.get(1).and_then(|p| p.parse().ok())
    }

    /// SIGKILLs the data node on `port` (a process this set started).
    pub fn kill(&mut self, port: u16) {
        if let Some((_, slot)) = self.nodes.iter_mut().find(|(p, _)| *p == port) {
            if let Some(mut child) = slot.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Every sentinel names a primary other than `old` and that node answers ROLE master.
    pub fn wait_failover(&self, old: u16, limit: Duration) -> Option<u16> {
        let started = Instant::now();
        while started.elapsed() < limit {
            let named: Vec<Option<u16>> = self
                .sentinels
                .iter()
                .map(|(port, _)| cli(*port, &["SENTINEL", "get-master-addr-by-name", MASTER]).get(1).and_then(|p| p.parse().ok()))
                .collect();
            if let Some(Some(new)) = named.first().copied() {
                if new != old && named.iter().all(|n| *n == Some(new)) && cli(new, &["ROLE"]).first().map(String::as_str) == Some("master") {
                    return Some(new);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// `redis-cli` against the data node on `port`.
    pub fn cli(&self, port: u16, args: &[&str]) -> Vec<String> {
        cli(port, args)
    }

    pub fn info(&self, port: u16, section: &str) -> String {
        cli(port, &["INFO", section]).join("\n")
    }

    /// The last lines of each sentinel's log, for a failure message.
    pub fn sentinel_logs(&self) -> String {
        self.sentinels.iter().map(|(port, _)| format!("sentinel {port}:\n{}", log_tail(&self.dir.join(format!("sentinel-{port}.log"))))).collect()
    }

    fn spawn_node(&self, port: u16, replica_of: Option<u16>) -> Child {
        let log = self.dir.join(format!("redis-{port}.log"));
        let node_dir = self.dir.join(format!("node-{port}"));
        std::fs::create_dir_all(&node_dir).expect("node dir");
        let mut args: Vec<String> = ["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(["--dir".into(), node_dir.display().to_string(), "--logfile".into(), log.display().to_string()]);
        args.extend(["--min-replicas-to-write".into(), "1".into(), "--min-replicas-max-lag".into(), "10".into()]);
        // Redis waits 5 s by default before a diskless full sync (for more replicas to join);
        // until it ends a replica is not "good" and the primary refuses writes (NOREPLICAS).
        args.extend(["--repl-diskless-sync-delay".into(), "0".into()]);
        if let Some(primary) = replica_of {
            args.extend(["--replicaof".into(), "127.0.0.1".into(), primary.to_string()]);
        }
        let mut child = Command::new("redis-server")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (is it installed? scripts/bootstrap.sh)");
        wait_listening(port, &mut child, &log);
        child
    }

    fn spawn_sentinel(&self, port: u16, primary: u16) -> Child {
        let config = self.dir.join(format!("sentinel-{port}.conf"));
        let log = self.dir.join(format!("sentinel-{port}.log"));
        let text = format!(
            "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile {log}\n\
             sentinel monitor {MASTER} 127.0.0.1 {primary} 2\n\
             sentinel down-after-milliseconds {MASTER} 2000\n\
             sentinel failover-timeout {MASTER} 5000\n\
             sentinel parallel-syncs {MASTER} 1\n",
            dir = self.dir.display(),
            log = log.display(),
        );
        std::fs::write(&config, text).expect("write the sentinel config");
        let mut child = Command::new("redis-sentinel")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-sentinel (Debian's redis-sentinel; scripts/bootstrap.sh installs it)");
        wait_listening(port, &mut child, &log);
        child
    }
}

impl Drop for SentinelSet {
    fn drop(&mut self) {
        for (_, child) in &mut self.sentinels {
            let _ = child.kill();
            let _ = child.wait();
        }
        for (_, slot) in &mut self.nodes {
            if let Some(child) = slot.as_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn cli(port: u16, args: &[&str]) -> Vec<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--raw"])
        .args(args)
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

/// A field of a `SENTINEL MASTER` reply (name and value on alternate lines).
fn field<'a>(reply: &'a [String], name: &str) -> Option<&'a str> {
    reply.chunks(2).find(|pair| pair[0] == name).and_then(|pair| pair.get(1)).map(String::as_str)
}

fn wait_listening(port: u16, child: &mut Child, log: &Path) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("redis on {port} exited ({status}):\n{}", log_tail(log));
        }
        assert!(started.elapsed() < Duration::from_secs(10), "redis on {port} did not listen:\n{}", log_tail(log));
        std::thread::sleep(Duration::from_millis(20));
    }
}
