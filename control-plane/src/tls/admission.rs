//! Admission to the TLS handshake on the gRPC port, decided at accept: a bounded number of
//! handshakes in flight and a rate of new ones; a connection over either waits in a bounded
//! queue, and when the queue is full its oldest connection is closed before any TLS byte is
//! read (the client retries with its backoff).
//!
//! Why before the handshake: the mutual-TLS handshake is the dearest part of a new stream
//! for the control plane (key exchange, a signature, the client chain verified), and a
//! stream refused after it (`--max-new-xds-streams-per-second`) has paid it and pays it again
//! on every retry. Here a connection over the rate costs an accepted socket, or nothing.
//!
//! Why newest first: before the handshake nothing tells an operator's CLI call from an
//! Envoy (the client certificate comes inside it), so there is no lane to reserve. First
//! come, first served made the CLI wait behind the whole storm (15 s behind 1,000
//! connections at 50/s, bench/results-reconnect.md). Served newest first, a call that
//! arrives in a storm gets the next slot unless a newer connection came after it, and the
//! connections left waiting longest are the ones whose clients have most likely given up
//! (Envoy's xDS connect timeout, 1 s in envoy/bootstrap.yaml, covers the handshake): those
//! are dropped unhandshaken when seen gone, or closed first when the queue is full, and
//! come back as newcomers. It is the adaptive-LIFO policy of servers under overload; with
//! no backlog the order does not matter.
//!
//! Pure: time and "is the client still there" are passed in; tls/listener.rs does the I/O.

use std::collections::VecDeque;

use crate::token_bucket::TokenBucket;

/// More queued sockets than this would be file descriptors held for clients that will time
/// out long before their turn.
pub const QUEUE_LIMIT: usize = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// New handshakes a second (bursts up to the same number); 0: no rate.
    pub per_second: u32,
    /// Handshakes under way at once; 0: no bound.
    pub in_flight: usize,
    /// Connections waiting for their turn; over it a new one is closed.
    pub queue: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error("--xds-accept-queue {0}: at most {QUEUE_LIMIT} (each queued connection holds a socket)")]
    QueueTooLong(usize),
}

impl AdmissionLimits {
    pub const OFF: AdmissionLimits = AdmissionLimits { per_second: 0, in_flight: 0, queue: 0 };

    pub fn new(per_second: u32, in_flight: usize, queue: usize) -> Result<Self, AdmissionError> {
        if queue > QUEUE_LIMIT {
            return Err(AdmissionError::QueueTooLong(queue));
        }
        Ok(Self { per_second, in_flight, queue })
    }

    pub fn is_off(&self) -> bool {
        self.per_second == 0 && self.in_flight == 0
    }
}

/// What became of a connection just accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival<T> {
    /// Its handshake may start now (it holds a slot: call [`Admission::finished`] after).
    Start(T),
    /// It waits; [`Admission::next`] hands it out in its turn.
    Queued,
    /// It waits, and the queue was full: this, the oldest waiting, is to be closed.
    QueuedClosingOldest(T),
    /// No queue (`--xds-accept-queue 0`): close it.
    Closed(T),
}

/// The admission state of one listener, over connections of type `T`.
#[derive(Debug)]
pub struct Admission<T> {
    limits: AdmissionLimits,
    rate: TokenBucket,
    in_flight: usize,
    waiting: VecDeque<T>,
}

impl<T> Admission<T> {
    pub fn new(limits: AdmissionLimits) -> Self {
        Self { limits, rate: TokenBucket::new(limits.per_second), in_flight: 0, waiting: VecDeque::new() }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// A connection accepted at `now_ms`: it starts at once if a slot and a token are free.
    pub fn arrive(&mut self, connection: T, now_ms: u64) -> Arrival<T> {
        if self.has_slot() && self.rate.admit(now_ms) {
            self.in_flight += 1;
            return Arrival::Start(connection);
        }
        if self.limits.queue == 0 {
            return Arrival::Closed(connection);
        }
        let oldest = (self.waiting.len() >= self.limits.queue).then(|| self.waiting.pop_front()).flatten();
        self.waiting.push_back(connection);
        match oldest {
            Some(oldest) => Arrival::QueuedClosingOldest(oldest),
            None => Arrival::Queued,
        }
    }

    pub fn is_full(&self) -> bool {
        self.waiting.len() >= self.limits.queue
    }

    /// Drops the waiting connections `alive` says are gone (their client closed): before
    /// closing a live one for a full queue. Returns how many.
    pub fn drop_gone(&mut self, mut alive: impl FnMut(&T) -> bool) -> usize {
        let before = self.waiting.len();
        self.waiting.retain(|c| alive(c));
        before - self.waiting.len()
    }

    /// The next waiting connection whose turn it is at `now_ms`, newest first (it holds a
    /// slot), skipping those `alive` says are gone (they take no slot and no token); the
    /// gone ones are counted into `gone`.
    pub fn next(&mut self, now_ms: u64, mut alive: impl FnMut(&T) -> bool, gone: &mut usize) -> Option<T> {
        while let Some(newest) = self.waiting.back() {
            if !alive(newest) {
                self.waiting.pop_back();
                *gone += 1;
                continue;
            }
            if !self.has_slot() || !self.rate.admit(now_ms) {
                return None;
            }
            self.in_flight += 1;
            return self.waiting.pop_back();
        }
        None
    }

    /// A handshake that [`arrive`](Self::arrive) or [`next`](Self::next) started has ended.
    pub fn finished(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// When to look at the queue again if no handshake ends first: milliseconds from
    /// `now_ms` until the rate allows the next; None when nothing waits or a slot must free
    /// first (a [`finished`](Self::finished) call is the wake-up then).
    pub fn wake_in_ms(&mut self, now_ms: u64) -> Option<u64> {
        if self.waiting.is_empty() || !self.has_slot() {
            return None;
        }
        Some(self.rate.ms_until_token(now_ms))
    }

    fn has_slot(&self) -> bool {
        self.limits.in_flight == 0 || self.in_flight < self.limits.in_flight
    }
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;
