//! One composite request in flight: what each source answered, and the reply once it is
//! decided. Pure: the wasm adapter feeds it answers and the time, and sends what it returns.

use serde_json::{json, Map, Value};

use super::compile::Composite;
use crate::reply::Denial;

/// What the host reported for one source's call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A response (Envoy's own 503/504 for a refused or timed-out call included).
    Response { status: u16, body: Vec<u8> },
    /// A response whose body is over what the source may still use ([`Fanout::body_limit`]):
    /// not read.
    TooLarge { status: u16, size: usize },
    /// No response headers at all (the call was reset), or the call could not be sent.
    Nothing,
}

/// What became of one source, as `_metadata.sources[]` reports it.
#[derive(Debug, Clone, PartialEq)]
struct Settled {
    status: Option<u16>,
    ms: u64,
    value: Result<Value, Failure>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Status,
    Timeout,
    TooLarge,
    NotJson,
    NoAnswer,
}

impl Failure {
    fn reason(self) -> &'static str {
        match self {
            Failure::Status => "status",
            Failure::Timeout => "timeout",
            Failure::TooLarge => "too_large",
            Failure::NotJson => "not_json",
            Failure::NoAnswer => "no_answer",
        }
    }
}

/// The reply to send: status, headers (content-type included) and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, &'static str)>,
    pub body: String,
}

pub const COMPLETED_HEADER: &str = "x-stagedoor-completed";

/// The sources of one request, as they answer.
#[derive(Debug, Clone)]
pub struct Fanout {
    started_ms: u64,
    settled: Vec<Option<Settled>>,
    total_bytes: usize,
    request_id: String,
}

impl Fanout {
    pub fn new(composite: &Composite, started_ms: u64, request_id: &str) -> Self {
        Self { started_ms, settled: vec![None; composite.sources.len()], total_bytes: 0, request_id: request_id.to_owned() }
    }

    /// How many body bytes source `index` may still have: its own bound, and what is left
    /// of the route's total.
    pub fn body_limit(&self, composite: &Composite) -> usize {
        composite.max_source_bytes.min(composite.max_total_bytes.saturating_sub(self.total_bytes))
    }

    /// Records source `index`'s answer at `now_ms`; returns the reply once it is decided: at
    /// the first required source that fails (the others are not waited for), or when every
    /// source has settled. An index already settled or out of range changes nothing.
    pub fn record(&mut self, composite: &Composite, index: usize, answer: Answer, now_ms: u64) -> Option<Reply> {
        let (Some(source), Some(None)) = (composite.sources.get(index), self.settled.get(index)) else { return None };
        let ms = now_ms.saturating_sub(self.started_ms);
        // Envoy answers a call past its timeout itself (504, or no headers when reset): a
        // failure at the timeout is the timeout.
        let at_timeout = ms + TIMER_SLACK_MS >= source.timeout_ms;
        let settled = match answer {
            Answer::Response { status, body } if (200..300).contains(&status) => {
                match serde_json::from_slice::<Value>(&body) {
                    Ok(value) => {
                        self.total_bytes += body.len();
                        Settled { status: Some(status), ms, value: Ok(value) }
                    }
                    Err(_) => Settled { status: Some(status), ms, value: Err(Failure::NotJson) },
                }
            }
            Answer::Response { status, .. } if at_timeout && status == 504 => {
                Settled { status: None, ms, value: Err(Failure::Timeout) }
            }
            Answer::Response { status, .. } => Settled { status: Some(status), ms, value: Err(Failure::Status) },
            Answer::TooLarge { status, .. } => Settled { status: Some(status), ms, value: Err(Failure::TooLarge) },
            Answer::Nothing if at_timeout => Settled { status: None, ms, value: Err(Failure::Timeout) },
            Answer::Nothing => Settled { status: None, ms, value: Err(Failure::NoAnswer) },
        };
        let failed_required = source.required && settled.value.is_err();
        let failure = settled.value.as_ref().err().copied();
        let status = settled.status;
        self.settled[index] = Some(settled);
        if failed_required {
            return Some(self.required_failed(&source.name, failure, status, now_ms));
        }
        self.settled.iter().all(Option::is_some).then(|| self.composed(composite))
    }

    fn required_failed(&self, name: &str, failure: Option<Failure>, status: Option<u16>, now_ms: u64) -> Reply {
        let denial = match failure {
            Some(Failure::Timeout) => Denial {
                status: 504,
                code: "SOURCE_TIMEOUT",
                message: format!("Required source {name} did not answer in time"),
            },
            _ => Denial {
                status: 502,
                code: "SOURCE_FAILED",
                message: match status {
                    Some(status) => format!("Required source {name} failed (status {status}, {})", failure.map_or("", Failure::reason)),
                    None => format!("Required source {name} failed (no answer)"),
                },
            },
        };
        let body = denial.body(&self.request_id, now_ms as i64);
        Reply { status: denial.status, headers: reply_headers("false"), body }
    }

    fn composed(&self, composite: &Composite) -> Reply {
        let mut object = Map::new();
        let mut sources = Vec::with_capacity(composite.sources.len());
        let mut completed = true;
        for (source, settled) in composite.sources.iter().zip(&self.settled) {
            let Some(settled) = settled else { continue };
            let (value, ok) = match &settled.value {
                Ok(value) => (value.clone(), true),
                Err(_) => (source.fallback.clone(), false),
            };
            completed &= ok;
            object.insert(source.key.clone(), value);
            let mut entry = json!({
                "name": source.name,
                "required": source.required,
                "ok": ok,
                "status": settled.status,
                "ms": settled.ms,
                "fallback": !ok,
            });
            if let (Err(failure), Some(map)) = (&settled.value, entry.as_object_mut()) {
                map.insert(String::from("error"), Value::from(failure.reason()));
            }
            sources.push(entry);
        }
        object.insert(String::from("_metadata"), json!({ "completed": completed, "sources": sources }));
        let body = Value::Object(object).to_string();
        Reply { status: 200, headers: reply_headers(if completed { "true" } else { "false" }), body }
    }
}

/// Envoy's timer and the host clock read a few ms apart.
const TIMER_SLACK_MS: u64 = 5;

fn reply_headers(completed: &'static str) -> Vec<(&'static str, &'static str)> {
    // Composed per caller from identity-bearing calls: never stored by a shared cache.
    vec![("content-type", "application/json"), ("cache-control", "no-store"), (COMPLETED_HEADER, completed)]
}
