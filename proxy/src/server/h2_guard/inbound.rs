//! The client's side of an HTTP/2 connection, frame by frame: the verdict on each octet
//! run (to the server, dropped, or the connection refused from here on).
//!
//! The scanner sees complete frame headers only (the caller holds back a partial one
//! until the rest arrives), so a frame it drops never reaches the server even in part.
//! Payloads are skipped by length, except SETTINGS (each 6-octet entry is checked as it
//! passes) and the header block of a dropped HEADERS (walked, see `hpack_scan`). A
//! connection error found inside a payload stops the stream before that frame's last
//! octet, so the server never acts on it.

use super::hpack_scan::{self, Walk};
use super::streams::{Client, Streams};
use super::wire::{
    flag, kind, setting, Head, Reason, HEADER_LEN, MAX_MAX_FRAME_SIZE, MAX_WINDOW,
    MIN_MAX_FRAME_SIZE, PREFACE, PREFACE_LINE,
};

/// A connection error: its code and the rule broken (GOAWAY debug data and logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The GOAWAY error code.
    pub reason: Reason,
    /// The rule, with its RFC section.
    pub rule: &'static str,
}

const fn refuse(reason: Reason, rule: &'static str) -> Refusal {
    Refusal { reason, rule }
}

const BAD_PREFACE: Refusal = refuse(
    Reason::Protocol,
    "invalid connection preface (RFC 9113 §3.4)",
);
const NO_SETTINGS: Refusal = refuse(
    Reason::Protocol,
    "the preface must be followed by a SETTINGS frame (RFC 9113 §3.4)",
);
const TOO_LARGE: Refusal = refuse(
    Reason::FrameSize,
    "frame larger than SETTINGS_MAX_FRAME_SIZE (RFC 9113 §4.2)",
);
const INTERRUPTED: Refusal = refuse(
    Reason::Protocol,
    "header block interrupted by another frame (RFC 9113 §6.10)",
);
const SETTINGS_ACK_LEN: Refusal = refuse(
    Reason::FrameSize,
    "SETTINGS ACK with a payload (RFC 9113 §6.5)",
);
const SETTINGS_LEN: Refusal = refuse(
    Reason::FrameSize,
    "SETTINGS length not a multiple of 6 (RFC 9113 §6.5)",
);
const PING_LEN: Refusal = refuse(
    Reason::FrameSize,
    "PING length other than 8 (RFC 9113 §6.7)",
);
const WINDOW_UPDATE_LEN: Refusal = refuse(
    Reason::FrameSize,
    "WINDOW_UPDATE length other than 4 (RFC 9113 §6.9)",
);
const RST_STREAM_LEN: Refusal = refuse(
    Reason::FrameSize,
    "RST_STREAM length other than 4 (RFC 9113 §6.4)",
);
// RFC 9113 §6.3 makes this a stream error; §5.4.1 lets an endpoint treat a stream error
// as a connection error, which the guard does: it cannot reset a stream the server
// still serves without the two ends disagreeing about that stream.
const PRIORITY_LEN: Refusal = refuse(
    Reason::FrameSize,
    "PRIORITY length other than 5 (RFC 9113 §6.3)",
);
const GOAWAY_LEN: Refusal = refuse(
    Reason::FrameSize,
    "GOAWAY shorter than 8 octets (RFC 9113 §4.2, §6.8)",
);
const SHORT_PADDED: Refusal = refuse(
    Reason::FrameSize,
    "frame too short for its Pad Length or priority fields (RFC 9113 §4.2)",
);
const ENABLE_PUSH: Refusal = refuse(
    Reason::Protocol,
    "SETTINGS_ENABLE_PUSH other than 0 or 1 (RFC 9113 §6.5.2)",
);
const CONNECT_PROTOCOL: Refusal = refuse(
    Reason::Protocol,
    "SETTINGS_ENABLE_CONNECT_PROTOCOL other than 0 or 1 (RFC 8441 §3)",
);
const WINDOW_TOO_LARGE: Refusal = refuse(
    Reason::FlowControl,
    "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1 (RFC 9113 §6.5.2)",
);
const FRAME_SIZE_RANGE: Refusal = refuse(
    Reason::Protocol,
    "SETTINGS_MAX_FRAME_SIZE outside 2^14..2^24-1 (RFC 9113 §6.5.2)",
);
const TOO_MUCH_PADDING: Refusal = refuse(
    Reason::Protocol,
    "padding longer than the frame payload (RFC 9113 §6.2)",
);
const BAD_BLOCK: Refusal = refuse(
    Reason::Compression,
    "undecodable field block (RFC 9113 §4.3)",
);
// A dropped header block that would have changed the HPACK dynamic table: the stream
// error (STREAM_CLOSED, §5.1) is raised to a connection error (§5.4.1), since dropping
// the block would leave the two ends with different tables.
const AFTER_END_INDEXED: Refusal = refuse(
    Reason::StreamClosed,
    "HEADERS after END_STREAM, with a field block that changes the HPACK table (RFC 9113 §5.1, §4.3)",
);

/// The verdict on the next octets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The next `n` octets go to the server.
    Pass(usize),
    /// The next `n` octets are dropped.
    Drop(usize),
    /// The last `n` octets (all that is left) are an incomplete frame header: hold them
    /// back and offer them again with the octets that follow.
    Hold(usize),
    /// A connection error: nothing from here on goes to the server.
    Fail(Refusal),
}

/// What the scan asks of the connection besides the verdicts.
#[derive(Debug, Default)]
pub struct Effects {
    /// Octets of dropped DATA frames, owed back to the client's connection window
    /// (RFC 9113 §6.9: flow control counts every DATA frame, processed or not).
    pub credit: u64,
    /// Streams newly refused with STREAM_CLOSED.
    pub stream_refusals: u32,
}

/// How the connection's first octets are taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// ALPN chose `h2`: the client must send the preface.
    Http2,
    /// Cleartext: HTTP/2 only if the client starts with the preface (prior knowledge,
    /// RFC 9113 §3.3); anything else is HTTP/1 and passes untouched.
    Sniff,
}

/// A dropped HEADERS or CONTINUATION payload being walked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Block {
    stream: u32,
    /// The Pad Length octet is next (PADDED).
    pad_len_next: bool,
    /// Priority octets still to skip (PRIORITY flag).
    skip: u8,
    /// Padding octets at the payload's end.
    pad: u32,
    walk: Walk,
    end_headers: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Payload {
    Pass,
    Drop,
    /// A SETTINGS entry being read: its octets so far.
    Settings([u8; 6], u8),
    Block(Block),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Preface octets matched so far.
    Preface(u8),
    /// At a frame header.
    Frames,
    Payload {
        left: u32,
        what: Payload,
    },
    /// Not HTTP/2 (cleartext HTTP/1).
    Passthrough,
    /// Refused once the octets before the offending one are handed over.
    Failing(Refusal),
}

/// A header block awaiting CONTINUATION frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Continuation {
    stream: u32,
    /// The block is being dropped: the walk so far.
    dropped: Option<Walk>,
}

/// The client-side scanner of one connection.
#[derive(Debug)]
pub struct Inbound {
    state: State,
    mode: Mode,
    /// The next frame is the first after the preface.
    first: bool,
    max_frame: u32,
    continuation: Option<Continuation>,
}

impl Inbound {
    /// A scanner for a connection in `mode`, whose server advertises `max_frame` as its
    /// SETTINGS_MAX_FRAME_SIZE.
    pub fn new(mode: Mode, max_frame: u32) -> Inbound {
        Inbound {
            state: State::Preface(0),
            mode,
            first: true,
            max_frame,
            continuation: None,
        }
    }

    /// Whether the connection turned out not to be HTTP/2 (nothing more to check).
    pub fn is_passthrough(&self) -> bool {
        self.state == State::Passthrough
    }

    /// A connection error was found; the next step reports it (even with no octets).
    pub fn is_failing(&self) -> bool {
        matches!(self.state, State::Failing(_))
    }

    /// The verdict on the first octets of `bytes` (not empty unless failing).
    pub fn step(&mut self, bytes: &[u8], streams: &mut Streams, fx: &mut Effects) -> Step {
        match self.state {
            State::Passthrough => Step::Pass(bytes.len()),
            State::Failing(r) => Step::Fail(r),
            State::Preface(n) => self.preface(bytes, n),
            State::Frames => match bytes.first_chunk::<HEADER_LEN>() {
                None => Step::Hold(bytes.len()),
                Some(head) => self.frame(Head::parse(head), bytes.len(), streams, fx),
            },
            State::Payload { left, what } => self.payload(bytes, left, what),
        }
    }

    fn fail(&mut self, r: Refusal) -> Step {
        self.state = State::Failing(r);
        Step::Fail(r)
    }

    fn preface(&mut self, bytes: &[u8], n: u8) -> Step {
        let n = usize::from(n);
        let want = &PREFACE[n..];
        let same = bytes.iter().zip(want).take_while(|(a, b)| a == b).count();
        if same == want.len() {
            self.state = State::Frames;
            return Step::Pass(same);
        }
        if same == bytes.len() {
            self.state = State::Preface((n + same) as u8);
            return Step::Pass(same);
        }
        if self.mode == Mode::Sniff && n + same < PREFACE_LINE {
            // Not the HTTP/2 preface: an HTTP/1 request (the HTTP/1 guard's business).
            self.state = State::Passthrough;
            return Step::Pass(bytes.len());
        }
        if same > 0 {
            self.state = State::Failing(BAD_PREFACE);
            return Step::Pass(same);
        }
        self.fail(BAD_PREFACE)
    }

    /// The octets of a frame whose header passes (`avail` octets are at hand).
    fn pass(&mut self, len: u32, avail: usize) -> Step {
        let take = (len as usize).min(avail - HEADER_LEN);
        let left = len - take as u32;
        self.state = if left == 0 {
            State::Frames
        } else {
            State::Payload {
                left,
                what: Payload::Pass,
            }
        };
        Step::Pass(HEADER_LEN + take)
    }

    fn frame(&mut self, h: Head, avail: usize, streams: &mut Streams, fx: &mut Effects) -> Step {
        if std::mem::take(&mut self.first) && (h.kind != kind::SETTINGS || h.has(flag::ACK)) {
            return self.fail(NO_SETTINGS);
        }
        if h.len > self.max_frame {
            return self.fail(TOO_LARGE);
        }
        if let Some(c) = self.continuation {
            return self.continuation(h, c, avail);
        }
        let refusal = match h.kind {
            kind::SETTINGS if h.stream == 0 => return self.settings(h, avail),
            kind::PING if h.len != 8 => PING_LEN,
            kind::WINDOW_UPDATE if h.len != 4 => WINDOW_UPDATE_LEN,
            kind::RST_STREAM if h.len != 4 => RST_STREAM_LEN,
            kind::RST_STREAM => {
                streams.reset(h.stream);
                return self.pass(h.len, avail);
            }
            kind::PRIORITY if h.len != 5 && h.stream != 0 => PRIORITY_LEN,
            kind::GOAWAY if h.len < 8 => GOAWAY_LEN,
            kind::DATA if h.has(flag::PADDED) && h.len == 0 => SHORT_PADDED,
            kind::HEADERS if h.len < prefix_len(h) => SHORT_PADDED,
            kind::HEADERS if h.stream != 0 => return self.headers(h, avail, streams, fx),
            kind::DATA if h.stream != 0 => return self.data(h, avail, streams, fx),
            kind::PUSH_PROMISE if !h.has(flag::END_HEADERS) => {
                // Refused by the server's stack; followed only to keep the frame
                // sequence straight.
                self.continuation = Some(Continuation {
                    stream: h.stream,
                    dropped: None,
                });
                return self.pass(h.len, avail);
            }
            _ => return self.pass(h.len, avail),
        };
        self.fail(refusal)
    }

    fn continuation(&mut self, h: Head, c: Continuation, avail: usize) -> Step {
        // RFC 9113 §6.10: only CONTINUATION frames of the same stream until END_HEADERS.
        if h.kind != kind::CONTINUATION || h.stream != c.stream {
            return self.fail(INTERRUPTED);
        }
        let end_headers = h.has(flag::END_HEADERS);
        if end_headers {
            self.continuation = None;
        }
        match c.dropped {
            None => self.pass(h.len, avail),
            Some(walk) => {
                self.continuation = None;
                self.drop_block(
                    h.len,
                    Block {
                        stream: h.stream,
                        pad_len_next: false,
                        skip: 0,
                        pad: 0,
                        walk,
                        end_headers,
                    },
                )
            }
        }
    }

    fn settings(&mut self, h: Head, avail: usize) -> Step {
        if h.has(flag::ACK) {
            if h.len != 0 {
                return self.fail(SETTINGS_ACK_LEN);
            }
            return self.pass(0, avail);
        }
        if !h.len.is_multiple_of(6) {
            return self.fail(SETTINGS_LEN);
        }
        if h.len > 0 {
            self.state = State::Payload {
                left: h.len,
                what: Payload::Settings([0; 6], 0),
            };
        } else {
            self.state = State::Frames;
        }
        Step::Pass(HEADER_LEN)
    }

    fn headers(&mut self, h: Head, avail: usize, streams: &mut Streams, fx: &mut Effects) -> Step {
        let verdict = streams.client_headers(h.stream, h.has(flag::END_STREAM));
        let end_headers = h.has(flag::END_HEADERS);
        match verdict {
            Client::Pass => {
                if !end_headers {
                    self.continuation = Some(Continuation {
                        stream: h.stream,
                        dropped: None,
                    });
                }
                self.pass(h.len, avail)
            }
            Client::AfterEnd { first } => {
                fx.stream_refusals += u32::from(first);
                self.drop_block(
                    h.len,
                    Block {
                        stream: h.stream,
                        pad_len_next: h.has(flag::PADDED),
                        skip: if h.has(flag::PRIORITY) { 5 } else { 0 },
                        pad: 0,
                        walk: hpack_scan::Walk::new(),
                        end_headers,
                    },
                )
            }
        }
    }

    fn data(&mut self, h: Head, avail: usize, streams: &mut Streams, fx: &mut Effects) -> Step {
        match streams.client_data(h.stream, h.has(flag::END_STREAM)) {
            Client::Pass => self.pass(h.len, avail),
            Client::AfterEnd { first } => {
                fx.stream_refusals += u32::from(first);
                // The whole payload, padding included, counts (RFC 9113 §6.9.1).
                fx.credit += u64::from(h.len);
                self.state = if h.len == 0 {
                    State::Frames
                } else {
                    State::Payload {
                        left: h.len,
                        what: Payload::Drop,
                    }
                };
                Step::Drop(HEADER_LEN)
            }
        }
    }

    fn drop_block(&mut self, len: u32, block: Block) -> Step {
        self.state = State::Payload {
            left: len,
            what: Payload::Block(block),
        };
        if len == 0 {
            // An empty fragment: the block ends (or continues) here.
            return match self.block_end(block) {
                Ok(()) => Step::Drop(HEADER_LEN),
                Err(r) => self.fail(r),
            };
        }
        Step::Drop(HEADER_LEN)
    }

    /// A dropped fragment's last octet was walked.
    fn block_end(&mut self, b: Block) -> Result<(), Refusal> {
        self.state = State::Frames;
        if !b.end_headers {
            self.continuation = Some(Continuation {
                stream: b.stream,
                dropped: Some(b.walk),
            });
            return Ok(());
        }
        if b.walk.at_end() {
            Ok(())
        } else {
            Err(BAD_BLOCK)
        }
    }

    fn payload(&mut self, bytes: &[u8], left: u32, what: Payload) -> Step {
        match what {
            Payload::Pass | Payload::Drop => {
                let take = (left as usize).min(bytes.len());
                let left = left - take as u32;
                self.state = if left == 0 {
                    State::Frames
                } else {
                    State::Payload { left, what }
                };
                if what == Payload::Pass {
                    Step::Pass(take)
                } else {
                    Step::Drop(take)
                }
            }
            Payload::Settings(entry, got) => self.settings_payload(bytes, left, entry, got),
            Payload::Block(b) => self.block_payload(bytes, left, b),
        }
    }

    fn settings_payload(
        &mut self,
        bytes: &[u8],
        mut left: u32,
        mut entry: [u8; 6],
        mut got: u8,
    ) -> Step {
        let take = (left as usize).min(bytes.len());
        for (i, &b) in bytes[..take].iter().enumerate() {
            entry[usize::from(got)] = b;
            got += 1;
            left -= 1;
            if got < 6 {
                continue;
            }
            got = 0;
            if let Err(r) = check_setting(&entry) {
                // The entry's last octet is withheld: the server never gets the frame.
                self.state = State::Failing(r);
                return if i == 0 { Step::Fail(r) } else { Step::Pass(i) };
            }
        }
        self.state = if left == 0 {
            State::Frames
        } else {
            State::Payload {
                left,
                what: Payload::Settings(entry, got),
            }
        };
        Step::Pass(take)
    }

    fn block_payload(&mut self, bytes: &[u8], left: u32, mut b: Block) -> Step {
        let avail = (left as usize).min(bytes.len());
        let (take, result) = if b.pad_len_next {
            b.pad_len_next = false;
            b.pad = u32::from(bytes[0]);
            // §6.2: the padding may not exceed what is left after the priority fields.
            let room = left - 1 - u32::from(b.skip);
            (
                1,
                if b.pad > room {
                    Err(TOO_MUCH_PADDING)
                } else {
                    Ok(())
                },
            )
        } else if b.skip > 0 {
            let take = usize::from(b.skip).min(avail);
            b.skip -= take as u8;
            (take, Ok(()))
        } else if left > b.pad {
            let take = ((left - b.pad) as usize).min(avail);
            let r = b.walk.scan(&bytes[..take]).map_err(|e| match e {
                hpack_scan::Stop::ChangesTable => AFTER_END_INDEXED,
                hpack_scan::Stop::Malformed => BAD_BLOCK,
            });
            (take, r)
        } else {
            (avail, Ok(()))
        };
        if let Err(r) = result {
            self.state = State::Failing(r);
            return Step::Drop(take);
        }
        let left = left - take as u32;
        if left > 0 {
            self.state = State::Payload {
                left,
                what: Payload::Block(b),
            };
            return Step::Drop(take);
        }
        if let Err(r) = self.block_end(b) {
            self.state = State::Failing(r);
        }
        Step::Drop(take)
    }
}

/// Octets a HEADERS payload needs before its field block (§6.2).
fn prefix_len(h: Head) -> u32 {
    u32::from(h.has(flag::PADDED)) + if h.has(flag::PRIORITY) { 5 } else { 0 }
}

/// RFC 9113 §6.5.2 (and RFC 8441 §3) value rules; unknown settings are ignored.
fn check_setting(entry: &[u8; 6]) -> Result<(), Refusal> {
    let id = u16::from_be_bytes([entry[0], entry[1]]);
    let value = u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]);
    match id {
        setting::ENABLE_PUSH if value > 1 => Err(ENABLE_PUSH),
        setting::ENABLE_CONNECT_PROTOCOL if value > 1 => Err(CONNECT_PROTOCOL),
        setting::INITIAL_WINDOW_SIZE if value > MAX_WINDOW => Err(WINDOW_TOO_LARGE),
        setting::MAX_FRAME_SIZE if !(MIN_MAX_FRAME_SIZE..=MAX_MAX_FRAME_SIZE).contains(&value) => {
            Err(FRAME_SIZE_RANGE)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
#[path = "inbound_tests.rs"]
mod tests;
