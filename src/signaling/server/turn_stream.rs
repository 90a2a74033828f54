//! The relay's TCP and TLS listeners, as the datagram connection the `turn` server
//! reads: each accepted stream is one client address; messages are framed on the
//! stream (`turn_frame`) and handed over whole, and answers go back on the stream they
//! belong to. Clients behind a firewall that lets only TCP 443 out reach the relay so.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use webrtc_util::Conn;

use crate::signaling::turn_frame::carry_stream;
use crate::sync::LockExt;

/// Messages queued for one client stream before it counts as stuck (dropped beyond).
const STREAM_QUEUE: usize = 512;

pub(super) struct StreamConn {
    local: SocketAddr,
    incoming: tokio::sync::Mutex<mpsc::Receiver<(Vec<u8>, SocketAddr)>>,
    writers: Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl StreamConn {
    /// Accepts on `listener` (through `tls` when given) until dropped.
    pub(super) fn new(listener: TcpListener, tls: Option<TlsAcceptor>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, incoming) = mpsc::channel(STREAM_QUEUE);
        let writers = Arc::new(Mutex::new(HashMap::new()));
        let accept = tokio::spawn(accept(listener, tls, tx, Arc::clone(&writers)));
        Ok(StreamConn {
            local,
            incoming: tokio::sync::Mutex::new(incoming),
            writers,
            accept,
        })
    }
}

impl Drop for StreamConn {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    incoming: mpsc::Sender<(Vec<u8>, SocketAddr)>,
    writers: Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>>,
) {
    loop {
        let Ok((tcp, from)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (incoming, writers, tls) = (incoming.clone(), Arc::clone(&writers), tls.clone());
        tokio::spawn(async move {
            let (tx, rx) = mpsc::channel(STREAM_QUEUE);
            writers.locked().insert(from, tx);
            let ended = match tls {
                None => serve(tcp, from, &incoming, rx).await,
                Some(acceptor) => match acceptor.accept(tcp).await {
                    Ok(stream) => serve(stream, from, &incoming, rx).await,
                    Err(e) => Err(e),
                },
            };
            writers.locked().remove(&from);
            if let Err(e) = ended {
                tracing::debug!("TURN stream from {from} ended: {e}");
            }
        });
    }
}

/// One client's stream: its messages in, `rx` out, until either side ends.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    from: SocketAddr,
    incoming: &mpsc::Sender<(Vec<u8>, SocketAddr)>,
    rx: mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<()> {
    // The server stopped reading: the stream is done.
    carry_stream(stream, rx, |msg| {
        let incoming = incoming.clone();
        async move { Ok(incoming.send((msg, from)).await.is_ok()) }
    })
    .await
}

type UtilResult<T> = Result<T, webrtc_util::Error>;

#[async_trait]
impl Conn for StreamConn {
    async fn connect(&self, _addr: SocketAddr) -> UtilResult<()> {
        Err(webrtc_util::Error::Other(
            "a listener does not connect".into(),
        ))
    }

    async fn recv(&self, buf: &mut [u8]) -> UtilResult<usize> {
        Ok(self.recv_from(buf).await?.0)
    }

    async fn recv_from(&self, buf: &mut [u8]) -> UtilResult<(usize, SocketAddr)> {
        let (msg, from) = self
            .incoming
            .lock()
            .await
            .recv()
            .await
            .ok_or(webrtc_util::Error::ErrClosedListener)?;
        let n = msg.len().min(buf.len());
        buf[..n].copy_from_slice(&msg[..n]);
        Ok((n, from))
    }

    async fn send(&self, _buf: &[u8]) -> UtilResult<usize> {
        Err(webrtc_util::Error::Other("send needs an address".into()))
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> UtilResult<usize> {
        // A stream that stopped reading, or has closed (its allocation lingers until it
        // expires), loses messages, as a datagram to a vanished host would.
        if let Some(tx) = self.writers.locked().get(&target) {
            let _ = tx.try_send(buf.to_vec());
        }
        Ok(buf.len())
    }

    fn local_addr(&self) -> UtilResult<SocketAddr> {
        Ok(self.local)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }

    async fn close(&self) -> UtilResult<()> {
        self.accept.abort();
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}
