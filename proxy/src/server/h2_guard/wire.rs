//! The HTTP/2 wire format as far as the guard needs it: the connection preface, the
//! 9-octet frame header (RFC 9113 §4.1), frame types and flags (§6), error codes (§7),
//! and the three frames the guard writes itself (RST_STREAM, WINDOW_UPDATE, GOAWAY).

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The preface's request line: a client that sent all of it speaks HTTP/2 (no HTTP/1
/// request has version `HTTP/2.0`), so a mismatch after it is an invalid preface rather
/// than an HTTP/1 request.
pub const PREFACE_LINE: usize = 16;

/// Octets in a frame header (RFC 9113 §4.1).
pub const HEADER_LEN: usize = 9;

/// The smallest SETTINGS_MAX_FRAME_SIZE, and the initial value (RFC 9113 §6.5.2).
pub const MIN_MAX_FRAME_SIZE: u32 = 1 << 14;
/// The largest SETTINGS_MAX_FRAME_SIZE (RFC 9113 §6.5.2).
pub const MAX_MAX_FRAME_SIZE: u32 = (1 << 24) - 1;
/// The largest flow-control window (RFC 9113 §6.9.1).
pub const MAX_WINDOW: u32 = (1 << 31) - 1;

/// Frame types (RFC 9113 §6).
pub mod kind {
    /// DATA (§6.1).
    pub const DATA: u8 = 0x0;
    /// HEADERS (§6.2).
    pub const HEADERS: u8 = 0x1;
    /// PRIORITY (§6.3).
    pub const PRIORITY: u8 = 0x2;
    /// RST_STREAM (§6.4).
    pub const RST_STREAM: u8 = 0x3;
    /// SETTINGS (§6.5).
    pub const SETTINGS: u8 = 0x4;
    /// PUSH_PROMISE (§6.6).
    pub const PUSH_PROMISE: u8 = 0x5;
    /// PING (§6.7).
    pub const PING: u8 = 0x6;
    /// GOAWAY (§6.8).
    pub const GOAWAY: u8 = 0x7;
    /// WINDOW_UPDATE (§6.9).
    pub const WINDOW_UPDATE: u8 = 0x8;
    /// CONTINUATION (§6.10).
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags (RFC 9113 §6).
pub mod flag {
    /// END_STREAM on DATA and HEADERS.
    pub const END_STREAM: u8 = 0x1;
    /// ACK on SETTINGS and PING.
    pub const ACK: u8 = 0x1;
    /// END_HEADERS on HEADERS, PUSH_PROMISE and CONTINUATION.
    pub const END_HEADERS: u8 = 0x4;
    /// PADDED on DATA, HEADERS and PUSH_PROMISE.
    pub const PADDED: u8 = 0x8;
    /// PRIORITY on HEADERS.
    pub const PRIORITY: u8 = 0x20;
}

/// SETTINGS parameters the guard checks (RFC 9113 §6.5.2, RFC 8441 §3).
pub mod setting {
    /// SETTINGS_ENABLE_PUSH: 0 or 1.
    pub const ENABLE_PUSH: u16 = 0x2;
    /// SETTINGS_INITIAL_WINDOW_SIZE: at most 2^31-1.
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    /// SETTINGS_MAX_FRAME_SIZE: 2^14 ..= 2^24-1.
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    /// SETTINGS_ENABLE_CONNECT_PROTOCOL: 0 or 1.
    pub const ENABLE_CONNECT_PROTOCOL: u16 = 0x8;
}

/// The error codes the guard sends (RFC 9113 §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// PROTOCOL_ERROR (0x1).
    Protocol,
    /// FLOW_CONTROL_ERROR (0x3).
    FlowControl,
    /// STREAM_CLOSED (0x5).
    StreamClosed,
    /// FRAME_SIZE_ERROR (0x6).
    FrameSize,
    /// COMPRESSION_ERROR (0x9).
    Compression,
}

impl Reason {
    /// The code on the wire.
    pub fn code(self) -> u32 {
        match self {
            Reason::Protocol => 0x1,
            Reason::FlowControl => 0x3,
            Reason::StreamClosed => 0x5,
            Reason::FrameSize => 0x6,
            Reason::Compression => 0x9,
        }
    }

    /// The code's name, for logs.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Protocol => "PROTOCOL_ERROR",
            Reason::FlowControl => "FLOW_CONTROL_ERROR",
            Reason::StreamClosed => "STREAM_CLOSED",
            Reason::FrameSize => "FRAME_SIZE_ERROR",
            Reason::Compression => "COMPRESSION_ERROR",
        }
    }
}

/// The fields of a frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Payload length (24 bits).
    pub len: u32,
    /// Frame type.
    pub kind: u8,
    /// Flags.
    pub flags: u8,
    /// Stream identifier (the reserved bit cleared, §4.1).
    pub stream: u32,
}

impl Head {
    /// Parses a complete frame header.
    pub fn parse(b: &[u8; HEADER_LEN]) -> Head {
        Head {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    /// Whether `f` is set.
    pub fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
}

fn push_head(out: &mut Vec<u8>, len: u32, kind: u8, stream: u32) {
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(0);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
}

/// Appends RST_STREAM(`stream`, `reason`) (RFC 9113 §6.4).
pub fn push_rst(out: &mut Vec<u8>, stream: u32, reason: Reason) {
    push_head(out, 4, kind::RST_STREAM, stream);
    out.extend_from_slice(&reason.code().to_be_bytes());
}

/// Appends WINDOW_UPDATE(`stream`, `increment`) (RFC 9113 §6.9); `increment` must be
/// 1 ..= 2^31-1.
pub fn push_window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    push_head(out, 4, kind::WINDOW_UPDATE, stream);
    out.extend_from_slice(&(increment & MAX_WINDOW).to_be_bytes());
}

/// Appends GOAWAY(`last_stream`, `reason`) with the rule broken as debug data
/// (RFC 9113 §6.8: "opaque data for diagnostic purposes").
pub fn push_goaway(out: &mut Vec<u8>, last_stream: u32, reason: Reason, debug: &str) {
    let debug = debug.as_bytes();
    push_head(out, 8 + debug.len() as u32, kind::GOAWAY, 0);
    out.extend_from_slice(&(last_stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(&reason.code().to_be_bytes());
    out.extend_from_slice(debug);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let mut out = Vec::new();
        push_rst(&mut out, 7, Reason::StreamClosed);
        let head: [u8; HEADER_LEN] = out[..HEADER_LEN].try_into().unwrap();
        let h = Head::parse(&head);
        assert_eq!(
            (h.len, h.kind, h.flags, h.stream),
            (4, kind::RST_STREAM, 0, 7)
        );
        assert_eq!(&out[HEADER_LEN..], &5u32.to_be_bytes());
    }

    #[test]
    fn goaway_carries_last_stream_code_and_debug() {
        let mut out = Vec::new();
        push_goaway(&mut out, 5, Reason::FrameSize, "x");
        assert_eq!(out.len(), HEADER_LEN + 9);
        assert_eq!(&out[HEADER_LEN..HEADER_LEN + 8], &[0, 0, 0, 5, 0, 0, 0, 6]);
        assert_eq!(out[HEADER_LEN + 8], b'x');
    }

    #[test]
    fn reserved_bit_is_ignored() {
        let h = Head::parse(&[0, 0, 8, 6, 1, 0x80, 0, 0, 3]);
        assert_eq!((h.len, h.kind, h.stream), (8, kind::PING, 3));
        assert!(h.has(flag::ACK));
    }
}
