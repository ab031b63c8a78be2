//! Frame boundaries of what the server writes, so the guard's own frames go between two
//! of its frames and never inside one, nor inside a header block (RFC 9113 §6.10: a
//! HEADERS without END_HEADERS is followed by its CONTINUATION frames only).
//!
//! The server's bytes are frames from the first octet (a server's preface is its
//! SETTINGS frame, §3.4). Only the 9-octet headers are read; payloads are skipped by
//! length. The END_STREAM and RST_STREAM frames seen here tell the stream table when the
//! server finished a stream.

use super::streams::Streams;
use super::wire::{flag, kind, Head, HEADER_LEN};

/// Where the server's output stands.
#[derive(Debug, Default)]
pub struct Outbound {
    head: [u8; HEADER_LEN],
    /// Header octets seen of the current frame.
    got: u8,
    /// Payload octets left of the current frame.
    left: u32,
    /// Inside a header block (HEADERS or PUSH_PROMISE without END_HEADERS).
    in_block: bool,
}

impl Outbound {
    /// Whether a frame of ours may be written now.
    pub fn at_boundary(&self) -> bool {
        self.got == 0 && self.left == 0 && !self.in_block
    }

    /// How many of the server's next octets to let through before looking again for a
    /// boundary: the rest of the current frame, or the next frame header inside a header
    /// block (0 at a boundary).
    pub fn to_boundary(&self) -> usize {
        if self.left > 0 {
            self.left as usize
        } else if self.got > 0 {
            HEADER_LEN - usize::from(self.got)
        } else if self.in_block {
            HEADER_LEN
        } else {
            0
        }
    }

    /// Follows `bytes` the server wrote; calls `reset_due` for each stream whose
    /// RST_STREAM is due now that the server ended it.
    pub fn advance(&mut self, mut bytes: &[u8], streams: &mut Streams, reset_due: &mut Vec<u32>) {
        while !bytes.is_empty() {
            if self.left > 0 {
                let take = (self.left as usize).min(bytes.len());
                self.left -= take as u32;
                bytes = &bytes[take..];
                continue;
            }
            let got = usize::from(self.got);
            let take = (HEADER_LEN - got).min(bytes.len());
            self.head[got..got + take].copy_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            self.got += take as u8;
            if usize::from(self.got) < HEADER_LEN {
                return;
            }
            self.got = 0;
            let h = Head::parse(&self.head);
            self.left = h.len;
            self.frame(h, streams, reset_due);
        }
    }

    fn frame(&mut self, h: Head, streams: &mut Streams, reset_due: &mut Vec<u32>) {
        match h.kind {
            kind::HEADERS | kind::PUSH_PROMISE => {
                self.in_block = !h.has(flag::END_HEADERS);
                if h.kind == kind::HEADERS
                    && h.has(flag::END_STREAM)
                    && streams.server_end(h.stream)
                {
                    reset_due.push(h.stream);
                }
            }
            kind::CONTINUATION => self.in_block = !h.has(flag::END_HEADERS),
            kind::DATA if h.has(flag::END_STREAM) && streams.server_end(h.stream) => {
                reset_due.push(h.stream);
            }
            kind::RST_STREAM => streams.reset(h.stream),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, len: usize) -> Vec<u8> {
        let mut v = (len as u32).to_be_bytes()[1..].to_vec();
        v.extend([kind, flags]);
        v.extend(stream.to_be_bytes());
        v.resize(v.len() + len, 0xaa);
        v
    }

    #[test]
    fn boundaries_across_split_writes() {
        let mut o = Outbound::default();
        let mut s = Streams::new(4);
        let mut due = Vec::new();
        let bytes = frame(kind::DATA, 0, 1, 20);
        o.advance(&bytes[..4], &mut s, &mut due);
        assert!(!o.at_boundary());
        assert_eq!(o.to_boundary(), 5);
        o.advance(&bytes[4..15], &mut s, &mut due);
        assert_eq!(o.to_boundary(), 14);
        o.advance(&bytes[15..], &mut s, &mut due);
        assert!(o.at_boundary());
    }

    #[test]
    fn no_boundary_inside_a_header_block() {
        let mut o = Outbound::default();
        let mut s = Streams::new(4);
        let mut due = Vec::new();
        o.advance(&frame(kind::HEADERS, 0, 1, 3), &mut s, &mut due);
        assert!(!o.at_boundary());
        assert_eq!(o.to_boundary(), HEADER_LEN);
        o.advance(
            &frame(kind::CONTINUATION, flag::END_HEADERS, 1, 3),
            &mut s,
            &mut due,
        );
        assert!(o.at_boundary());
    }

    #[test]
    fn server_end_stream_releases_a_due_reset() {
        let mut o = Outbound::default();
        let mut s = Streams::new(4);
        let mut due = Vec::new();
        s.client_headers(1, true);
        s.client_data(1, false);
        let mut out = frame(kind::HEADERS, flag::END_HEADERS, 1, 5);
        out.extend(frame(kind::DATA, flag::END_STREAM, 1, 7));
        o.advance(&out, &mut s, &mut due);
        assert_eq!(due, vec![1]);
        assert!(o.at_boundary());
    }

    #[test]
    fn server_reset_forgets_the_stream() {
        let mut o = Outbound::default();
        let mut s = Streams::new(4);
        let mut due = Vec::new();
        s.client_headers(1, true);
        s.client_data(1, false);
        o.advance(&frame(kind::RST_STREAM, 0, 1, 4), &mut s, &mut due);
        assert!(due.is_empty());
        assert_eq!(s.len(), 0);
    }
}
