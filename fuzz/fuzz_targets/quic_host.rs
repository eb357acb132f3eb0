//! Arbitrary datagrams into a `quic::Host`, and arbitrary request bytes
//! through a real QUIC connection into one: never a panic, never a hang.
//!
//! Input: the first byte picks the mode, the rest is a sequence of
//! `len: u16 (big-endian) | bytes` chunks.
//! - mode even: every chunk is a datagram from one of four addresses (low
//!   bits of its first byte), fed straight to the host, with virtual time
//!   moving on between them; then the host's timers run for 60 s.
//! - mode odd: two hosts complete a handshake in memory; every chunk is sent
//!   from one to the other as a request stream, and every datagram in
//!   flight whose index is listed in the chunk's first byte is corrupted
//!   with the chunk's bytes; then both run until quiet (bounded).
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use mars_proto::quic::{Host, HostConfig, TimeAnchor};
use mars_proto::wire::NodeAddr;
use mars_proto::{Config, Keypair, Timestamp};

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4000 + u16::from(i)))
}

fn host(i: u8, now: Instant) -> Host {
    Host::new(
        HostConfig::with_node(Config::testing()),
        Keypair::from_secret_bytes(&[i + 1; 32]),
        NodeAddr::quic(addr(i).to_string()),
        TimeAnchor {
            instant: now,
            unix: Timestamp::from_secs(1_700_000_000),
        },
        u64::from(i),
    )
    .expect("host")
}

fn chunks(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() >= 2 && out.len() < 64 {
        let len = usize::from(u16::from_be_bytes([data[0], data[1]]));
        data = &data[2..];
        let take = len.min(data.len());
        out.push(&data[..take]);
        data = &data[take..];
    }
    out
}

/// Drains both hosts' datagrams into the other, corrupting the ones named,
/// and runs timers; at most `rounds` rounds.
fn pump(hosts: &mut [Host; 2], now: &mut Instant, rounds: usize, corrupt: Option<(u8, &[u8])>) {
    let mut buf = Vec::new();
    let mut index = 0u8;
    for _ in 0..rounds {
        let mut any = false;
        for from in 0..2 {
            let mut out = Vec::new();
            while let Some(t) = hosts[from].poll_transmit(&mut buf) {
                out.push(buf[..t.size].to_vec());
            }
            while hosts[from].poll_event().is_some() {}
            for mut d in out {
                any = true;
                if let Some((mask, bytes)) = corrupt {
                    if mask & (1 << (index % 8)) != 0 {
                        for (x, b) in d.iter_mut().zip(bytes.iter().cycle()) {
                            *x ^= b;
                        }
                    }
                }
                index = index.wrapping_add(1);
                hosts[1 - from].handle_datagram(*now, addr(from as u8), &d);
            }
        }
        if !any {
            let next = hosts.iter_mut().filter_map(|h| h.poll_timeout()).min();
            match next {
                Some(t) if t <= *now + Duration::from_secs(120) => {
                    *now = (*now).max(t);
                    for h in hosts.iter_mut() {
                        h.handle_timeout(*now);
                    }
                }
                _ => return,
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let start = Instant::now();
    let mut now = start;
    if mode % 2 == 0 {
        let mut h = host(0, now);
        let mut buf = Vec::new();
        for c in chunks(rest) {
            let from = addr(10 + c.first().copied().unwrap_or(0) % 4);
            h.handle_datagram(now, from, c);
            while h.poll_transmit(&mut buf).is_some() {}
            while h.poll_event().is_some() {}
            now += Duration::from_millis(u64::from(c.len() as u8));
        }
        for _ in 0..64 {
            let Some(t) = h.poll_timeout() else { break };
            if t > start + Duration::from_secs(60) {
                break;
            }
            now = now.max(t);
            h.handle_timeout(now);
            while h.poll_transmit(&mut buf).is_some() {}
            while h.poll_event().is_some() {}
        }
    } else {
        let mut hosts = [host(0, now), host(1, now)];
        let b = hosts[1].identity();
        // A good request first, so the connection exists.
        hosts[0]
            .command(now, |n, ts| n.ping(ts, NodeAddr::quic(addr(1).to_string())))
            .expect("ping");
        pump(&mut hosts, &mut now, 200, None);
        for c in chunks(rest) {
            hosts[0].send_raw(now, addr(1), Some(b), c.to_vec());
            let mask = c.first().copied().unwrap_or(0);
            let corrupt = (mode & 2 != 0).then_some((mask, c));
            pump(&mut hosts, &mut now, 50, corrupt);
        }
        pump(&mut hosts, &mut now, 500, None);
    }
});
