use super::url::{Target, SENTINEL_PORT};
use super::*;
use redis::ConnectionAddr;

fn sentinel(url: &str) -> (Vec<(String, u16)>, super::url::Sentinels) {
    let parsed = RedisUrl::parse(url).unwrap();
    let Target::Sentinel(s) = parsed.target else { panic!("{url} is not a sentinel URL") };
    let hosts = s
        .hosts
        .iter()
        .map(|h| match &h.addr {
            ConnectionAddr::Tcp(host, port) => (host.clone(), *port),
            other => panic!("{other:?}"),
        })
        .collect();
    (hosts, s)
}

#[test]
fn a_sentinel_url_names_every_sentinel_the_master_the_db_and_the_primarys_credentials() {
    let (hosts, s) = sentinel("redis+sentinel://app:s%40cret@10.0.0.1:26380,sentinel-b,[::1]:26381/mymaster?db=3");
    assert_eq!(hosts, [("10.0.0.1".into(), 26380), ("sentinel-b".into(), SENTINEL_PORT), ("::1".into(), 26381)]);
    assert_eq!(s.master, "mymaster");
    assert_eq!((s.primary.db, s.primary.username.as_deref(), s.primary.password.as_deref()), (3, Some("app"), Some("s@cret")));
    assert!(s.hosts.iter().all(|h| h.redis.password.is_none()), "the primary's password is not the sentinels'");
    let (_, s) = sentinel("redis+sentinel://:pw@h/m?sentinel_password=spw&sentinel_username=su");
    assert_eq!((s.primary.username.as_deref(), s.primary.password.as_deref()), (None, Some("pw")));
    assert_eq!((s.hosts[0].redis.username.as_deref(), s.hosts[0].redis.password.as_deref()), (Some("su"), Some("spw")));
}

#[test]
fn sentinel_writes_wait_for_one_replica_by_default_and_one_redis_for_none() {
    assert_eq!(RedisUrl::parse("redis+sentinel://h/m").unwrap().wait_replicas, 1);
    assert_eq!(RedisUrl::parse("redis+sentinel://h/m?wait_replicas=0").unwrap().wait_replicas, 0);
    assert_eq!(RedisUrl::parse("redis://127.0.0.1:6379").unwrap().wait_replicas, 0);
    let direct = RedisUrl::parse("redis://127.0.0.1:6379/2?wait_replicas=2").unwrap();
    assert_eq!(direct.wait_replicas, 2);
    let Target::Direct(info) = direct.target else { panic!("direct") };
    assert_eq!((info.addr, info.redis.db), (ConnectionAddr::Tcp("127.0.0.1".into(), 6379), 2), "wait_replicas is not passed on");
}

#[test]
fn tls_and_plain_urls_are_the_redis_crates_forms() {
    let Target::Direct(info) = RedisUrl::parse("rediss://:pw@cache.internal:6380/1").unwrap().target else { panic!("direct") };
    assert!(matches!(info.addr, ConnectionAddr::TcpTls { ref host, port: 6380, insecure: false, .. } if host == "cache.internal"));
    assert_eq!((info.redis.db, info.redis.password.as_deref()), (1, Some("pw")));
    let Target::Direct(info) = RedisUrl::parse("redis://u:x@h/4?protocol=resp3").unwrap().target else { panic!("direct") };
    assert_eq!((info.redis.db, info.redis.username.as_deref(), info.redis.password.as_deref()), (4, Some("u"), Some("x")));
    assert_eq!(info.redis.protocol, redis::ProtocolVersion::RESP3);
}

#[test]
fn a_bad_url_is_refused_naming_the_part_at_fault() {
    let cases = [
        ("http://h:6379", "the scheme must be redis://, rediss:// or redis+sentinel://, not \"http\""),
        ("redis+cluster://h1:7000,h2:7001", "Redis Cluster is not supported"),
        ("redis+sentinel:///mymaster", "the sentinel host list is empty"),
        ("redis+sentinel://h1:26379,h2:port/m", "sentinel \"h2:port\": the port \"port\" is not a number"),
        ("redis+sentinel://h1:0/m", "the port \"0\" is not a number in 1..=65535"),
        ("redis+sentinel://[::1/m", "an IPv6 address needs its closing ]"),
        ("redis+sentinel://h1:26379", "the master name (the path"),
        ("redis+sentinel://h1/a/b", "the master name \"a/b\" must be one path segment"),
        ("redis+sentinel://h1/m?db=x", "parameter db=\"x\": must be a whole number"),
        ("redis+sentinel://h1/m?master=m", "unknown parameter \"master\""),
        ("redis://h/?wait_replica=1", "unknown parameter \"wait_replica\""),
        ("redis://h?protocol=resp2&protocol=resp3", "parameter protocol=\"resp3\": given twice"),
        ("redis://h?db=2", "unknown parameter \"db\" (known: protocol, wait_replicas; the db is the path"),
        ("redis://:secret@h:notaport", "redis URL redis://***@h:notaport:"),
    ];
    for (url, expected) in cases {
        let message = RedisUrl::parse(url).unwrap_err().to_string();
        assert!(message.contains(expected), "{url}: {message}");
    }
}

#[test]
fn passwords_never_reach_a_message() {
    let message = RedisUrl::parse("redis+sentinel://u:hunter2@h1:1,h2:x/m?sentinel_password=hunter3").unwrap_err().to_string();
    assert!(!message.contains("hunter"), "{message}");
    assert_eq!(redact("redis://u:pw@h:1/0?pass=pw2&protocol=resp3"), "redis://***@h:1/0?pass=***&protocol=resp3");
    assert_eq!(redact("redis+sentinel://h1,h2/m?sentinel_password=x"), "redis+sentinel://h1,h2/m?sentinel_password=***");
    assert_eq!(RedisUrl::parse("redis+sentinel://u:pw@h/m").unwrap().redacted(), "redis+sentinel://***@h/m");
}

#[test]
fn a_write_is_replicated_when_enough_replicas_acknowledge_it() {
    assert!(Replicated { acked: 1, wanted: 1 }.is_enough());
    assert!(Replicated { acked: 0, wanted: 0 }.is_enough());
    assert!(!Replicated { acked: 0, wanted: 1 }.is_enough());
    assert!(Replicated { acked: 0, wanted: 1 }.to_string().contains("0 of the 1 replicas wanted"));
}
