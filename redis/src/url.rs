//! The Redis URL forms Stagedoor takes, parsed once into a [`RedisUrl`]:
//!
//! - `redis://[user:pass@]host[:port][/db]`, `rediss://…` (TLS): one Redis, as the redis
//!   crate reads them;
//! - `redis+sentinel://[user:pass@]host1[:port1][,host2[:port2]…]/<master-name>[?db=N]`:
//!   Sentinels (port 26379 when left out) that name the current primary of `<master-name>`.
//!   The credentials and `db` are the primary's (the data nodes'); Sentinels that need
//!   their own take `sentinel_username` / `sentinel_password`. The form is the one
//!   redis-py's and Celery's `redis+sentinel`/`sentinel` helpers and Lettuce's
//!   `redis-sentinel://h1,h2/#master` use, with the master in the path, not the fragment;
//! - `redis+cluster://…` is refused: see [`UrlError::ClusterUnsupported`].
//!
//! Every form also takes `wait_replicas=N`: how many replicas a write someone relies on
//! (a registry version, a revocation, a refresh rotation) must reach before it is
//! acknowledged (`WAIT`). Default 1 with Sentinel (it has replicas by definition), 0 for
//! one Redis.

use std::time::Duration;

use percent_encoding::percent_decode_str;
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

/// The Sentinel port when a host names none.
pub const SENTINEL_PORT: u16 = 26379;

/// How long a write waits for its replicas before it is reported as not replicated.
pub const WAIT_TIMEOUT: Duration = Duration::from_millis(1_000);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("redis URL {url}: the scheme must be redis://, rediss:// or redis+sentinel://, not {scheme:?}")]
    Scheme { url: String, scheme: String },
    #[error(
        "redis URL {url}: Redis Cluster is not supported: the instance follower and the revocation sync \
         SCAN one node and subscribe to keyspace events one node raises, and the refresh rotation's two keys \
         are in different slots (see README, \"Redis beyond one machine\"); use redis+sentinel:// for failover"
    )]
    ClusterUnsupported { url: String },
    #[error("redis URL {url}: {detail}")]
    Direct { url: String, detail: String },
    #[error("redis URL {url}: the sentinel host list is empty")]
    NoSentinel { url: String },
    #[error("redis URL {url}: sentinel {host:?}: {detail}")]
    SentinelHost { url: String, host: String, detail: String },
    #[error("redis URL {url}: the master name (the path, as in redis+sentinel://host:26379/mymaster) is missing")]
    NoMasterName { url: String },
    #[error("redis URL {url}: the master name {name:?} must be one path segment")]
    MasterName { url: String, name: String },
    #[error("redis URL {url}: parameter {name}={value:?}: {detail}")]
    Parameter { url: String, name: String, value: String, detail: String },
    #[error("redis URL {url}: unknown parameter {name:?} (known: {known})")]
    UnknownParameter { url: String, name: String, known: &'static str },
}

/// Where Redis is, parsed and checked.
#[derive(Debug, Clone)]
pub struct RedisUrl {
    pub(crate) target: Target,
    /// How many replicas acknowledged writes wait for (`wait_replicas`).
    pub wait_replicas: u32,
    redacted: String,
}

#[derive(Debug, Clone)]
pub(crate) enum Target {
    Direct(ConnectionInfo),
    Sentinel(Sentinels),
}

#[derive(Debug, Clone)]
pub(crate) struct Sentinels {
    pub hosts: Vec<ConnectionInfo>,
    pub master: String,
    /// The primary's db and credentials.
    pub primary: RedisConnectionInfo,
}

impl RedisUrl {
    pub fn parse(url: &str) -> Result<RedisUrl, UrlError> {
        let redacted = redact(url);
        let scheme = url.split_once("://").map_or(url, |(scheme, _)| scheme);
        let (without_query, query) = url.split_once('?').unwrap_or((url, ""));
        let params = Params::parse(&redacted, query)?;
        match scheme {
            "redis" | "rediss" => {
                // The redis crate reads only `protocol` from a TCP URL's query (the db is the
                // path, the credentials the userinfo) and would ignore anything else.
                params.only(&redacted, &["protocol", "wait_replicas"], "protocol, wait_replicas; the db is the path, as in redis://host:6379/2")?;
                let direct = params.without(&["wait_replicas"]);
                let rebuilt = if direct.is_empty() { without_query.to_owned() } else { format!("{without_query}?{direct}") };
                let info = rebuilt
                    .as_str()
                    .into_connection_info()
                    .map_err(|e| UrlError::Direct { url: redacted.clone(), detail: e.to_string() })?;
                let wait_replicas = params.number(&redacted, "wait_replicas")?.unwrap_or(0);
                Ok(RedisUrl { target: Target::Direct(info), wait_replicas, redacted })
            }
            "redis+sentinel" => {
                params.only(&redacted, &["db", "wait_replicas", "sentinel_username", "sentinel_password"], "db, wait_replicas, sentinel_username, sentinel_password")?;
                let sentinels = parse_sentinels(&redacted, &without_query["redis+sentinel://".len()..], &params)?;
                let wait_replicas = params.number(&redacted, "wait_replicas")?.unwrap_or(1);
                Ok(RedisUrl { target: Target::Sentinel(sentinels), wait_replicas, redacted })
            }
            "redis+cluster" | "rediss+cluster" => Err(UrlError::ClusterUnsupported { url: redacted }),
            other => Err(UrlError::Scheme { url: redacted.clone(), scheme: other.to_owned() }),
        }
    }

    /// The URL without its passwords, for logs and status.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    pub fn is_sentinel(&self) -> bool {
        matches!(self.target, Target::Sentinel(_))
    }
}

fn parse_sentinels(url: &str, rest: &str, params: &Params) -> Result<Sentinels, UrlError> {
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, authority),
    };
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    let (username, password) = match userinfo {
        None => (None, None),
        Some(info) => match info.split_once(':') {
            Some((user, pass)) => ((!user.is_empty()).then(|| decode(user)), Some(decode(pass))),
            None => ((!info.is_empty()).then(|| decode(info)), None),
        },
    };
    let sentinel_auth = RedisConnectionInfo {
        username: params.get("sentinel_username").map(|s| s.to_owned()),
        password: params.get("sentinel_password").map(|s| s.to_owned()),
        ..Default::default()
    };
    let hosts = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|host| {
            let (name, port) = host_port(host).map_err(|detail| UrlError::SentinelHost { url: url.to_owned(), host: host.to_owned(), detail })?;
            Ok(ConnectionInfo { addr: ConnectionAddr::Tcp(name, port), redis: sentinel_auth.clone() })
        })
        .collect::<Result<Vec<_>, UrlError>>()?;
    if hosts.is_empty() {
        return Err(UrlError::NoSentinel { url: url.to_owned() });
    }
    let master = decode(path.trim_end_matches('/'));
    if master.is_empty() {
        return Err(UrlError::NoMasterName { url: url.to_owned() });
    }
    if master.contains('/') {
        return Err(UrlError::MasterName { url: url.to_owned(), name: master });
    }
    let db = params.number(url, "db")?.map_or(0, i64::from);
    Ok(Sentinels { hosts, master, primary: RedisConnectionInfo { db, username, password, ..Default::default() } })
}

/// `host`, `host:port` or `[v6]:port`.
fn host_port(host: &str) -> Result<(String, u16), String> {
    let (name, port) = if let Some(v6) = host.strip_prefix('[') {
        let (address, after) = v6.split_once(']').ok_or("an IPv6 address needs its closing ]")?;
        match after {
            "" => (address, None),
            _ => (address, Some(after.strip_prefix(':').ok_or("after ] comes :port")?)),
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    if name.is_empty() {
        return Err(String::from("the host name is empty"));
    }
    let port = match port {
        None => SENTINEL_PORT,
        Some(port) => port.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| format!("the port {port:?} is not a number in 1..=65535"))?,
    };
    Ok((name.to_owned(), port))
}

/// The query's `name=value` pairs, decoded, in order.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(url: &str, query: &str) -> Result<Params, UrlError> {
        let mut pairs = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
            let (name, value) = (decode(name), decode(value));
            if pairs.iter().any(|(seen, _): &(String, String)| *seen == name) {
                return Err(UrlError::Parameter { url: url.to_owned(), name, value, detail: String::from("given twice") });
            }
            pairs.push((name, value));
        }
        Ok(Params(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Refuses any parameter not in `known` (`listed` names them for the message).
    fn only(&self, url: &str, known: &[&str], listed: &'static str) -> Result<(), UrlError> {
        match self.0.iter().find(|(name, _)| !known.contains(&name.as_str())) {
            Some((name, _)) => Err(UrlError::UnknownParameter { url: url.to_owned(), name: name.clone(), known: listed }),
            None => Ok(()),
        }
    }

    /// The pairs other than `names`, encoded again.
    fn without(&self, names: &[&str]) -> String {
        use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
        self.0
            .iter()
            .filter(|(name, _)| !names.contains(&name.as_str()))
            .map(|(name, value)| format!("{}={}", utf8_percent_encode(name, NON_ALPHANUMERIC), utf8_percent_encode(value, NON_ALPHANUMERIC)))
            .collect::<Vec<_>>()
            .join("&")
    }

    fn number(&self, url: &str, name: &str) -> Result<Option<u32>, UrlError> {
        self.get(name)
            .map(|value| {
                value.parse::<u32>().map_err(|_| UrlError::Parameter {
                    url: url.to_owned(),
                    name: name.to_owned(),
                    value: value.to_owned(),
                    detail: String::from("must be a whole number"),
                })
            })
            .transpose()
    }
}

/// A Redis URL without its passwords (the userinfo's and any `*password`/`pass` parameter).
pub fn redact(url: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let base = match (base.find("://"), base.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &base[..scheme], &base[at + 1..]),
        _ => base.to_owned(),
    };
    match query {
        None => base,
        Some(query) => {
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if name == "pass" || name.ends_with("password") => format!("{name}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{base}?{}", pairs.join("&"))
        }
    }
}
