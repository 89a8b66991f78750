#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The refresh rotation script (`control-plane/src/token_endpoint/rotate.lua`) against a
//! real redis-server: it rotates only the family's current jti, replays the successor to
//! the immediate predecessor within the grace and no later, revokes the family on any other
//! jti (writing the revocation list's own key and announcing it), and begins a family only
//! from its first token.


use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stagedoor_e2e::redis::PrivateRedis;

const SCRIPT: &str = include_str!("../../control-plane/src/token_endpoint/rotate.lua");

/// The script's runs on a private redis-server.
struct Redis(PrivateRedis);

impl Redis {
    fn start() -> Redis {
        Redis(PrivateRedis::start())
    }

    fn cli(&self, args: &[&str]) -> Vec<String> {
        self.0.cli(args)
    }

    /// One run of the script: (outcome, jti, at).
    fn rotate(&self, fid: &str, jti: &str, successor: &str, now_ms: i64, grace_ms: i64) -> (String, String, String) {
        let family_exp = now_ms / 1000 + 3600;
        let reply = self.cli(&[
            "EVAL", SCRIPT, "2", &format!("stagedoor:refresh:{fid}"), &format!("stagedoor:revoked:family:{fid}"),
            jti, successor, &now_ms.to_string(), &grace_ms.to_string(), fid, &family_exp.to_string(), "3600",
        ]);
        match reply.as_slice() {
            [outcome, jti, at] => (outcome.clone(), jti.clone(), at.clone()),
            other => panic!("unexpected reply {other:?}"),
        }
    }
}

fn outcome(o: &str, jti: &str, at: i64) -> (String, String, String) {
    (o.to_owned(), jti.to_owned(), at.to_string())
}

#[test]
fn only_the_current_jti_rotates_and_the_predecessor_replays_within_the_grace_only() {
    let redis = Redis::start();
    let t = 1_800_000_000_000_i64;
    assert_eq!(redis.rotate("f1", "f1", "j1", t, 10_000), outcome("rotated", "j1", t), "a family begins with its first token");
    assert_eq!(redis.rotate("f1", "f1", "jX", t + 5, 10_000), outcome("grace", "j1", t), "the same successor, not jX");
    assert_eq!(redis.rotate("f1", "f1", "jY", t + 10_000, 10_000), outcome("grace", "j1", t), "the grace's last millisecond");
    assert_eq!(redis.rotate("f1", "j1", "j2", t + 20, 10_000), outcome("rotated", "j2", t + 20));
    assert_eq!(redis.cli(&["HGET", "stagedoor:refresh:f1", "cur"]), ["j2"]);
    let ttl: i64 = redis.cli(&["TTL", "stagedoor:refresh:f1"])[0].parse().unwrap();
    assert!((3590..=3600).contains(&ttl), "the record lives until the family's absolute expiry: {ttl}");
    assert!(redis.cli(&["EXISTS", "stagedoor:revoked:family:f1"]) == ["0"]);

    // The predecessor after the grace: the family is revoked, announced, and stays revoked.
    assert_eq!(redis.rotate("f2", "f2", "k1", t, 1_000), outcome("rotated", "k1", t));
    assert_eq!(redis.rotate("f2", "f2", "kX", t + 1_001, 1_000).0, "reused");
    assert_eq!(redis.cli(&["GET", "stagedoor:revoked:family:f2"]), [((t + 1_001) / 1000 + 3600).to_string()]);
    assert_eq!(redis.rotate("f2", "k1", "k2", t + 1_002, 1_000).0, "revoked", "the current token is dead too");
}

#[test]
fn any_older_jti_or_an_unknown_family_revokes_and_announces() {
    let redis = Redis::start();
    let mut subscriber = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &redis.0.port.to_string(), "--raw", "SUBSCRIBE", "stagedoor:revocations"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let subscribed = Instant::now();
    while redis.cli(&["PUBSUB", "NUMSUB", "stagedoor:revocations"]).get(1).map(String::as_str) != Some("1") {
        assert!(subscribed.elapsed() < Duration::from_secs(5), "the subscriber never subscribed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = 1_800_000_000_000_i64;
    redis.rotate("g1", "g1", "a1", t, 10_000);
    redis.rotate("g1", "a1", "a2", t + 1, 10_000);
    assert_eq!(redis.rotate("g1", "g1", "zz", t + 2, 10_000).0, "reused", "two back, inside the grace, is still reuse");
    assert_eq!(redis.rotate("g1", "a2", "a3", t + 3, 10_000).0, "revoked");
    assert_eq!(redis.rotate("g2", "not-the-first", "b1", t, 10_000).0, "reused", "a family Redis does not know begins only with its first token");
    assert_eq!(redis.cli(&["EXISTS", "stagedoor:revoked:family:g2"]), ["1"]);
    assert_eq!(redis.rotate("g2", "g2", "b1", t, 10_000).0, "revoked", "and that first token cannot start it over");
    let _ = subscriber.kill();
    let out = subscriber.wait_with_output().unwrap();
    let announced = String::from_utf8_lossy(&out.stdout);
    assert!(announced.contains("family:g1") && announced.contains("family:g2"), "{announced}");
}
