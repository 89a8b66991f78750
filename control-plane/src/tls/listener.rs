//! The control plane's TLS listeners: the HTTP side's for axum (TLS with the client's
//! verified identity, or plain for `--insecure` and the metrics address; each accepted
//! connection carries a [`Peer`] that handlers read through `ConnectInfo`), and the gRPC
//! port's incoming stream for tonic. Each handshake uses the configuration current when it
//! starts (see [`ServedTls`]), so rotated credentials need no restart; a refused client
//! certificate is logged with the reason and the peer's address.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

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
        Ok(Self { handshaken: handshakes(tcp, served, Side::Http), local })
    }
}

/// The gRPC port's connections after their handshake, for tonic's
/// `serve_with_incoming_shutdown` (which reads the client certificate from the stream).
pub fn grpc_incoming(
    tcp: TcpListener,
    served: ServedTls,
) -> impl futures::Stream<Item = Result<TlsStream<TcpStream>, std::io::Error>> {
    use futures::StreamExt;
    tokio_stream::wrappers::ReceiverStream::new(handshakes(tcp, served, Side::Grpc)).map(|(stream, _)| Ok(stream))
}

/// Accepts on `tcp` and runs each handshake in its own task, so one slow client delays no
/// other. Ends when the receiver is dropped, which closes the socket.
fn handshakes(tcp: TcpListener, served: ServedTls, side: Side) -> mpsc::Receiver<(TlsStream<TcpStream>, Peer)> {
    let (tx, handshaken) = mpsc::channel(64);
    tokio::spawn(accept_loop(tcp, served, side, tx));
    handshaken
}

async fn accept_loop(tcp: TcpListener, served: ServedTls, side: Side, tx: mpsc::Sender<(TlsStream<TcpStream>, Peer)>) {
    loop {
        let accepted = tokio::select! {
            accepted = tcp.accept() => accepted,
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
        let acceptor = TlsAcceptor::from(served.current().side(side));
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_LIMIT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let identity = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| identity_of(c));
                    let _ = tx.send((tls, Peer { addr, identity })).await;
                }
                Ok(Err(e)) => log_failed_handshake(side, addr, &e),
                Err(_) => tracing::debug!(port = ?side, %addr, "TLS handshake timed out"),
            }
        });
    }
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
