//! Everything tokio-specific: the UDP socket, the timer, the command
//! channel and the clock. A driver for another runtime replaces this file.

use std::io::{ErrorKind, IoSliceMut};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use quinn_udp::{RecvMeta, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, error, info};

use mars_proto::Timestamp;
use mars_proto::quic::{Host, TimeAnchor};
use mars_proto::store::BoxedStore;
use mars_proto::wire::NodeAddr;

use crate::driver::{Command, Driver};
use crate::{Error, NodeConfig, NodeHandle};

/// The one place the clocks are read.
#[allow(clippy::disallowed_methods)]
mod clock {
    use super::*;

    pub(super) fn now() -> Instant {
        Instant::now()
    }

    pub(crate) fn unix_now() -> Timestamp {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp::from_micros(u64::try_from(since.as_micros()).unwrap_or(u64::MAX))
    }
}

/// Wall-clock time now (microseconds since the Unix epoch).
pub fn unix_now() -> Timestamp {
    clock::unix_now()
}

/// Bytes of one receive buffer per datagram a GRO batch may hold (our
/// datagrams are at most 1,200-1,500 bytes; peers' at most the Ethernet MTU).
const RECV_PER_SEGMENT: usize = 1500;
/// Most datagrams per send call. Measured on loopback (FIND_VALUE, one
/// connection, 64 in flight): 1 → 4.5k req/s, 4 → 8.7k, 10 → 11.7k,
/// 64 (the kernel's limit) → 2.3k: bigger bursts overflow the receiver and
/// cost loss recoveries.
const MAX_GSO_SEGMENTS: usize = 10;
/// Socket buffer size asked for.
const SOCKET_BUFFER: usize = 8 << 20;
/// Receive calls (or commands) taken in one go before sending what they caused.
const RECV_BATCH: usize = 64;

pub(crate) async fn spawn(
    mut config: NodeConfig,
    store: Option<BoxedStore>,
) -> Result<NodeHandle, Error> {
    let socket = UdpSocket::bind(config.listen).await?;
    let local_addr = socket.local_addr()?;
    // quinn-udp: segmentation offload and ECN where the system has them.
    let state = UdpSocketState::new((&socket).into())?;
    // Bursts of many responses overflow the default buffers (~200 KB) and
    // cost a loss recovery each; ask for more (the system caps it).
    for size in [SOCKET_BUFFER, SOCKET_BUFFER / 4] {
        if state.set_recv_buffer_size((&socket).into(), size).is_ok() {
            break;
        }
    }
    for size in [SOCKET_BUFFER, SOCKET_BUFFER / 4] {
        if state.set_send_buffer_size((&socket).into(), size).is_ok() {
            break;
        }
    }
    config.host.max_segments = state.max_gso_segments().min(MAX_GSO_SEGMENTS);
    let advertised = config
        .advertise
        .unwrap_or_else(|| NodeAddr::quic(local_addr.to_string()));
    let anchor = TimeAnchor {
        instant: clock::now(),
        unix: clock::unix_now(),
    };
    let seed = config.seed.unwrap_or(anchor.unix.as_micros());
    let host = match store {
        Some(store) => {
            Host::with_store(config.host, config.keypair, advertised, anchor, seed, store)?
        }
        None => Host::new(config.host, config.keypair, advertised, anchor, seed)?,
    };
    let identity = host.identity();
    let (tx, rx) = mpsc::channel(1024);
    info!(%local_addr, did = %identity.did(), "node started");
    let driver = Driver::new(host, anchor.instant);
    let latency = driver.latency();
    tokio::spawn(run(driver, socket, state, rx));
    Ok(NodeHandle {
        tx,
        local_addr,
        identity,
        latency,
    })
}

async fn run(
    mut driver: Driver,
    socket: UdpSocket,
    state: UdpSocketState,
    mut rx: mpsc::Receiver<Command>,
) {
    // A GRO batch larger than the buffer would be cut short: size it for
    // the most segments the socket may coalesce (and one maximal datagram).
    let mut inbuf = vec![0u8; (state.gro_segments() * RECV_PER_SEGMENT).max(u16::MAX as usize)];
    let mut outbuf = Vec::with_capacity(state.max_gso_segments() * RECV_PER_SEGMENT);
    let mut commands_open = true;
    loop {
        while let Some(t) = driver.host.poll_transmit(&mut outbuf) {
            let transmit = quinn_udp::Transmit {
                destination: t.destination,
                ecn: None,
                contents: &outbuf[..t.size],
                segment_size: t.segment_size,
                src_ip: None,
            };
            send(&socket, &state, &transmit).await;
        }
        let now = clock::now();
        driver.drain_events(now);
        if driver.finished(now) {
            break;
        }
        let timeout = driver.poll_timeout();
        let sleep = async {
            match timeout {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = socket.readable() => {
                if let Err(e) = r {
                    debug!("readable: {e}");
                }
                // Read what is waiting (bounded) before answering.
                for _ in 0..RECV_BATCH {
                    let mut meta = [RecvMeta::default()];
                    let r = socket.try_io(Interest::READABLE, || {
                        state.recv((&socket).into(), &mut [IoSliceMut::new(&mut inbuf)], &mut meta)
                    });
                    match r {
                        Ok(_) => {
                            let now = clock::now();
                            let m = &meta[0];
                            let data = inbuf.get(..m.len).unwrap_or_default();
                            // With GRO the buffer holds datagrams of `stride` bytes.
                            for d in data.chunks(m.stride.max(1)) {
                                driver.host.handle_datagram(now, m.addr, d);
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        // ICMP errors surface here on some systems: QUIC's
                        // timers handle lost peers.
                        Err(e) => {
                            debug!("recv: {e}");
                            break;
                        }
                    }
                }
            }
            cmd = rx.recv(), if commands_open => match cmd {
                Some(cmd) => {
                    let now = clock::now();
                    driver.command(now, cmd);
                    // Take what else is queued, so it leaves in full packets.
                    for _ in 0..RECV_BATCH {
                        match rx.try_recv() {
                            Ok(cmd) => driver.command(now, cmd),
                            Err(_) => break,
                        }
                    }
                }
                // Every handle is gone: stop.
                None => {
                    commands_open = false;
                    driver.stop(clock::now(), Duration::ZERO);
                }
            },
            () = sleep => driver.host.handle_timeout(clock::now()),
        }
    }
    // Whatever the store committed last becomes durable before anyone is
    // told the node has stopped.
    if let Err(e) = driver.host.flush_storage() {
        error!("cannot flush the store at shutdown: {e}");
    }
    let waiting = driver.take_stop_replies();
    // Dropping the host closes the store (an LMDB environment can be open
    // once per process): only then is the node stopped.
    drop(driver);
    info!("node stopped");
    for r in waiting {
        let _ = r.send(());
    }
}

async fn send(socket: &UdpSocket, state: &UdpSocketState, t: &quinn_udp::Transmit<'_>) {
    loop {
        match socket.try_io(Interest::WRITABLE, || state.send(socket.into(), t)) {
            Ok(()) => return,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if let Err(e) = socket.writable().await {
                    debug!("writable: {e}");
                    return;
                }
            }
            // UDP may drop: QUIC retransmits.
            Err(e) => {
                debug!(to = %t.destination, "send: {e}");
                return;
            }
        }
    }
}
