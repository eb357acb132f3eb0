//! The trace hash: BLAKE3 over every delivered event, in delivery order.
//!
//! Each delivered request, response and timer is written as a small
//! fixed-layout record (time, kind, endpoints, length) followed by the frame
//! bytes themselves. Two runs with the same seed and build must produce the
//! same hash; a single reordered or altered message changes it. Records are
//! buffered and hashed in 64 KiB slices, where BLAKE3 hashes several chunks
//! at once with SIMD, so the hash costs a small fraction of a run.

/// What a trace record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// A request arrived at its target.
    Request = 1,
    /// A response (or transport error) arrived back at the requester.
    Response = 2,
    /// A node's timer fired.
    Timer = 3,
    /// A scenario action ran (join, crash, lookup, …).
    Action = 4,
    /// A datagram arrived (the full-stack engine: its length is the detail,
    /// and its bytes are left out, since TLS makes them differ run to run).
    Datagram = 5,
}

const FLUSH_AT: usize = 64 * 1024;

/// Accumulates the trace hash of a run.
#[derive(Debug)]
pub struct Trace {
    hasher: blake3::Hasher,
    buf: Vec<u8>,
    records: u64,
}

impl Default for Trace {
    fn default() -> Self {
        Self::new()
    }
}

impl Trace {
    /// An empty trace.
    pub fn new() -> Self {
        Trace {
            hasher: blake3::Hasher::new(),
            buf: Vec::with_capacity(FLUSH_AT + 4096),
            records: 0,
        }
    }

    /// Appends one record: `at` in microseconds, `kind`, the two node
    /// indices involved (the same twice for a timer), a 64-bit detail
    /// (request id, action code) and the bytes carried.
    pub fn record(&mut self, at: u64, kind: RecordKind, a: u32, b: u32, detail: u64, bytes: &[u8]) {
        self.records += 1;
        self.buf.extend_from_slice(&at.to_le_bytes());
        self.buf.push(kind as u8);
        self.buf.extend_from_slice(&a.to_le_bytes());
        self.buf.extend_from_slice(&b.to_le_bytes());
        self.buf.extend_from_slice(&detail.to_le_bytes());
        self.buf
            .extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= FLUSH_AT {
            self.hasher.update(&self.buf);
            self.buf.clear();
        }
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The hash of everything recorded so far (the trace can go on).
    pub fn hash(&self) -> blake3::Hash {
        let mut h = self.hasher.clone();
        h.update(&self.buf);
        h.update(&self.records.to_le_bytes());
        h.finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_traces_equal_hashes_and_order_matters() {
        let mut a = Trace::new();
        let mut b = Trace::new();
        let mut c = Trace::new();
        for i in 0..10_000u32 {
            a.record(u64::from(i), RecordKind::Request, i, i + 1, 7, b"frame");
            b.record(u64::from(i), RecordKind::Request, i, i + 1, 7, b"frame");
        }
        for i in 0..10_000u32 {
            let j = if i == 5000 {
                5001
            } else if i == 5001 {
                5000
            } else {
                i
            };
            c.record(u64::from(j), RecordKind::Request, j, j + 1, 7, b"frame");
        }
        assert_eq!(a.hash(), b.hash());
        assert_ne!(a.hash(), c.hash());
        assert_eq!(a.records(), 10_000);
    }
}
