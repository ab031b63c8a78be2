//! The client streams the guard follows: which ones the client half-closed (its
//! END_STREAM, RFC 9113 §5.1 "half-closed (remote)" on our side), which ones the server
//! finished, and which ones owe the client a RST_STREAM.
//!
//! A stream is followed from the HEADERS that opens it until both sides ended it or
//! either reset it; then it is forgotten (the server's HTTP/2 stack answers frames on
//! closed streams itself). Client stream ids only grow (§5.1.1), so the table is a
//! vector sorted by id: appends at the end, lookups by binary search, no hashing. It is
//! capped: past `cap` streams in flight, new ones are not followed (the stream rules then
//! do not apply to them; the server's own stream limit refuses them long before).

/// One followed stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    id: u32,
    /// The client sent END_STREAM.
    remote_closed: bool,
    /// The server sent END_STREAM.
    local_closed: bool,
    /// The client broke the stream's state (a frame after its END_STREAM): RST_STREAM
    /// STREAM_CLOSED is due once the server finished its response.
    reset_due: bool,
}

/// What a client frame on a stream is, for the stream rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    /// Nothing the guard objects to.
    Pass,
    /// A HEADERS or DATA on a stream the client half-closed: dropped, and the stream
    /// reset with STREAM_CLOSED (RFC 9113 §5.1). `first`: the first such frame on it.
    AfterEnd { first: bool },
}

/// The followed streams of one connection.
#[derive(Debug, Default)]
pub struct Streams {
    list: Vec<Entry>,
    /// The highest client stream id opened (and passed to the server).
    highest: u32,
    cap: usize,
}

impl Streams {
    /// A table following at most `cap` streams at once.
    pub fn new(cap: usize) -> Streams {
        Streams {
            list: Vec::new(),
            highest: 0,
            cap,
        }
    }

    /// The highest client stream id the server was given (a GOAWAY's last-stream-id).
    pub fn highest(&self) -> u32 {
        self.highest
    }

    fn find(&mut self, id: u32) -> Option<usize> {
        self.list.binary_search_by_key(&id, |e| e.id).ok()
    }

    /// A client HEADERS on `id` (END_STREAM: `end`).
    pub fn client_headers(&mut self, id: u32, end: bool) -> Client {
        if id > self.highest && id % 2 == 1 {
            // A new stream (§5.1.1: client streams are odd and increasing). An even or
            // reused id is left to the server's stack, which refuses it.
            self.highest = id;
            if self.list.len() < self.cap {
                self.list.push(Entry {
                    id,
                    remote_closed: end,
                    local_closed: false,
                    reset_due: false,
                });
            }
            return Client::Pass;
        }
        self.client_frame(id, end)
    }

    /// A client DATA on `id` (END_STREAM: `end`).
    pub fn client_data(&mut self, id: u32, end: bool) -> Client {
        self.client_frame(id, end)
    }

    fn client_frame(&mut self, id: u32, end: bool) -> Client {
        let Some(i) = self.find(id) else {
            return Client::Pass;
        };
        let e = &mut self.list[i];
        if e.remote_closed {
            let first = !e.reset_due;
            e.reset_due = true;
            return Client::AfterEnd { first };
        }
        // Trailers (a second HEADERS) or DATA on an open stream.
        if end {
            e.remote_closed = true;
            if e.local_closed {
                self.list.remove(i);
            }
        }
        Client::Pass
    }

    /// RST_STREAM on `id`, from either side: the stream is closed (§6.4), nothing is due
    /// (§5.4.2: never a RST_STREAM in answer to one).
    pub fn reset(&mut self, id: u32) {
        if let Some(i) = self.find(id) {
            self.list.remove(i);
        }
    }

    /// The server ended `id` (END_STREAM). `true`: RST_STREAM STREAM_CLOSED is due now.
    pub fn server_end(&mut self, id: u32) -> bool {
        let Some(i) = self.find(id) else {
            return false;
        };
        let e = &mut self.list[i];
        e.local_closed = true;
        if e.remote_closed {
            let due = e.reset_due;
            self.list.remove(i);
            return due;
        }
        false
    }

    /// Streams followed now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.list.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_after_end_stream_is_refused_once_then_reset_when_answered() {
        let mut s = Streams::new(8);
        assert_eq!(s.client_headers(1, true), Client::Pass);
        assert_eq!(s.client_data(1, false), Client::AfterEnd { first: true });
        assert_eq!(s.client_headers(1, true), Client::AfterEnd { first: false });
        assert!(s.server_end(1));
        assert_eq!(s.len(), 0);
        // Forgotten: the server's stack answers what comes next.
        assert_eq!(s.client_data(1, false), Client::Pass);
    }

    #[test]
    fn trailers_end_an_open_stream() {
        let mut s = Streams::new(8);
        s.client_headers(1, false);
        assert_eq!(s.client_data(1, false), Client::Pass);
        assert_eq!(s.client_headers(1, true), Client::Pass);
        assert_eq!(s.client_data(1, true), Client::AfterEnd { first: true });
    }

    #[test]
    fn streams_are_forgotten_when_both_sides_ended_or_reset() {
        let mut s = Streams::new(8);
        s.client_headers(1, true);
        s.client_headers(3, false);
        s.client_headers(5, true);
        assert!(!s.server_end(1));
        assert!(!s.server_end(3));
        assert_eq!(s.len(), 2);
        s.client_data(3, true);
        s.reset(5);
        assert_eq!(s.len(), 0);
        assert_eq!(s.highest(), 5);
    }

    #[test]
    fn a_client_reset_cancels_the_due_reset() {
        let mut s = Streams::new(8);
        s.client_headers(1, true);
        s.client_data(1, false);
        s.reset(1);
        assert!(!s.server_end(1));
    }

    #[test]
    fn the_table_is_capped_and_ignores_even_or_old_ids() {
        let mut s = Streams::new(2);
        for id in [1, 3, 5, 7] {
            s.client_headers(id, true);
        }
        assert_eq!(s.len(), 2);
        assert_eq!(s.highest(), 7);
        // Stream 7 is not followed: its frames pass.
        assert_eq!(s.client_data(7, false), Client::Pass);
        s.client_headers(4, true);
        s.client_headers(3, true);
        assert_eq!(s.highest(), 7);
        assert_eq!(s.len(), 2);
    }
}
