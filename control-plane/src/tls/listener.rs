//! The control plane's TLS listeners: the HTTP side's for axum (TLS with the client's
//! verified identity, or plain for `--insecure` and the metrics address; each accepted
//! connection carries a [`Peer`] that handlers read through `ConnectInfo`), and the gRPC
//! port's incoming stream for tonic. Each handshake uses the configuration current when it
//! starts (see [`ServedTls`]), so rotated credentials need no restart; a refused client
//! certificate is logged with the reason and the peer's address.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use futures::FutureExt;
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::admission::{Admission, AdmissionLimits, Arrival};
use super::identity::{identity_of, PeerIdentity};
use super::served::{ServedTls, Side};

/// A client that has not finished its handshake by then is dropped: a stalled handshake
/// must not hold a slot for good.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The verified client certificate's identity; None without one (or over plain HTTP).
    pub identity: Option<PeerIdentity>,
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}

impl Connected<IncomingStream<'_, PlainListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, PlainListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A TLS listener: handshakes run in their own tasks, so one slow client delays no other.
pub struct TlsListener {
    handshaken: mpsc::Receiver<(TlsStream<TcpStream>, Peer)>,
    local: SocketAddr,
}

impl TlsListener {
    pub async fn bind(addr: SocketAddr, served: ServedTls) -> std::io::Result<Self> {
        let tcp = TcpListener::bind(addr).await?;
        let local = tcp.local_addr()?;
        Ok(Self { handshaken: handshakes(tcp, served, Side::Http, AdmissionLimits::OFF), local })
    }
}

/// The gRPC port's connections after their handshake, for tonic's
/// `serve_with_incoming_shutdown` (which reads the client certificate from the stream).
/// `limits` decide which handshakes start when (tls/admission.rs).
pub fn grpc_incoming(
    tcp: TcpListener,
    served: ServedTls,
    limits: AdmissionLimits,
) -> impl futures::Stream<Item = Result<TlsStream<TcpStream>, std::io::Error>> {
    use futures::StreamExt;
    tokio_stream::wrappers::ReceiverStream::new(handshakes(tcp, served, Side::Grpc, limits)).map(|(stream, _)| Ok(stream))
}

/// Accepts on `tcp` and runs each admitted handshake in its own task, so one slow client
/// delays no other. Ends when the receiver is dropped, which closes the socket.
fn handshakes(tcp: TcpListener, served: ServedTls, side: Side, limits: AdmissionLimits) -> mpsc::Receiver<(TlsStream<TcpStream>, Peer)> {
    let (tx, handshaken) = mpsc::channel(64);
    tokio::spawn(accept_loop(tcp, served, side, limits, tx));
    handshaken
}

type Handshaken = mpsc::Sender<(TlsStream<TcpStream>, Peer)>;

async fn accept_loop(tcp: TcpListener, served: ServedTls, side: Side, limits: AdmissionLimits, tx: Handshaken) {
    let mut admission = Admission::new(limits);
    let mut running = JoinSet::new();
    let epoch = Instant::now();
    let now_ms = || u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
    loop {
        let mut gone = 0;
        while let Some((stream, addr)) = admission.next(now_ms(), |(stream, _)| !client_left(stream), &mut gone) {
            running.spawn(handshake(stream, addr, served.clone(), side, tx.clone()));
        }
        count(&crate::metrics::XDS_CONNECTIONS_ABANDONED, gone);
        let wake = admission.wake_in_ms(now_ms()).map(Duration::from_millis);
        let accepted = tokio::select! {
            accepted = tcp.accept() => accepted,
            Some(_) = running.join_next(), if !running.is_empty() => {
                admission.finished();
                continue;
            }
            () = tokio::time::sleep(wake.unwrap_or_default()), if wake.is_some() => continue,
            _ = tx.closed() => return,
        };
        let (stream, addr) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(port = ?side, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // gRPC streams are long-lived and small-message: no Nagle delay (as tonic's own
        // listener does).
        let _ = stream.set_nodelay(true);
        if admission.is_full() {
            // Clients that left free their places before a live one is closed.
            count(&crate::metrics::XDS_CONNECTIONS_ABANDONED, admission.drop_gone(|(stream, _)| !client_left(stream)));
        }
        match admission.arrive((stream, addr), now_ms()) {
            Arrival::Start((stream, addr)) => {
                running.spawn(handshake(stream, addr, served.clone(), side, tx.clone()));
            }
            Arrival::Queued => crate::metrics::bump(&crate::metrics::XDS_CONNECTIONS_QUEUED),
            Arrival::QueuedClosingOldest((_, closed)) | Arrival::Closed((_, closed)) => {
                // Closed before any TLS byte is read; the client retries with its backoff.
                crate::metrics::bump(&crate::metrics::XDS_CONNECTIONS_QUEUED);
                crate::metrics::bump(&crate::metrics::XDS_CONNECTIONS_CLOSED_QUEUE_FULL);
                tracing::debug!(port = ?side, addr = %closed, queued = admission.waiting(), "connection closed unhandshaken: the admission queue is full");
            }
        }
    }
}

/// Whether the client of a connection still waiting has closed it (the kernel saw its FIN:
/// Envoy's connect timeout passed, say). Asked without waiting, and without reading the
/// ClientHello that may sit before the FIN.
fn client_left(stream: &TcpStream) -> bool {
    match stream.ready(Interest::READABLE).now_or_never() {
        Some(Ok(ready)) => ready.is_read_closed(),
        Some(Err(_)) => true,
        None => false,
    }
}

fn count(counter: &std::sync::atomic::AtomicU64, n: usize) {
    counter.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
}

async fn handshake(stream: TcpStream, addr: SocketAddr, served: ServedTls, side: Side, tx: Handshaken) {
    let acceptor = TlsAcceptor::from(served.current().side(side));
    let handshaken = match tokio::time::timeout(HANDSHAKE_LIMIT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            log_failed_handshake(side, addr, &e);
            return;
        }
        Err(_) => {
            tracing::debug!(port = ?side, %addr, "TLS handshake timed out");
            return;
        }
    };
    let identity = handshaken.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| identity_of(c));
    // Handed over in its own task: the handshake's slot is free once it is done, whether
    // tonic has taken the connection yet or not.
    tokio::spawn(async move {
        let _ = tx.send((handshaken, Peer { addr, identity })).await;
    });
}

/// A client certificate the CA did not sign (or expired, or not for client use) is worth
/// an operator's attention: an Envoy that cannot connect. Other failures (port scanners,
/// a client that does not trust us) are debug noise.
fn log_failed_handshake(side: Side, addr: SocketAddr, error: &std::io::Error) {
    match refused_certificate(error) {
        Some(reason) => {
            crate::metrics::bump(&crate::metrics::CLIENT_CERTIFICATES_REFUSED);
            tracing::warn!(port = ?side, peer = %addr, %reason, "client certificate refused in the TLS handshake");
        }
        None => tracing::debug!(port = ?side, peer = %addr, %error, "TLS handshake failed"),
    }
}

/// Why rustls refused the peer's certificate, when that is why the handshake failed.
fn refused_certificate(error: &std::io::Error) -> Option<String> {
    match error.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::InvalidCertificate(reason) => Some(format!("{reason:?}")),
        _ => None,
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(accepted) => accepted,
            // The accept loop ended: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer { addr: self.local, identity: None })
    }
}

/// Plain TCP, every peer without an identity.
pub struct PlainListener(pub TcpListener);

impl Listener for PlainListener {
    type Io = TcpStream;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = Listener::accept(&mut self.0).await;
        (io, Peer { addr, identity: None })
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer { addr: self.0.local_addr()?, identity: None })
    }
}

#[cfg(test)]
mod tests {
    use super::refused_certificate;

    #[test]
    fn only_a_refused_peer_certificate_is_named_as_one() {
        // What tokio-rustls hands back when rustls refuses the client's certificate.
        let refused = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(refused_certificate(&refused).as_deref(), Some("UnknownIssuer"));
        let other = std::io::Error::new(std::io::ErrorKind::InvalidData, rustls::Error::DecryptError);
        assert_eq!(refused_certificate(&other), None);
        assert_eq!(refused_certificate(&std::io::Error::from(std::io::ErrorKind::UnexpectedEof)), None);
    }
}
