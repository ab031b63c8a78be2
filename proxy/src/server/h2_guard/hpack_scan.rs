//! Walks the representations of a header block the guard drops (RFC 7541 §6) without
//! decoding them: no Huffman, no table lookups, only integer prefixes and string lengths.
//!
//! Why: the HPACK decoder's dynamic table is connection state (RFC 9113 §4.3). A block
//! the server's decoder never sees must not have changed that table, or every later
//! header block on the connection would decode differently at the two ends. Indexed
//! fields and literals "without indexing"/"never indexed" leave the table alone; a
//! literal "with incremental indexing" (`01xxxxxx`) or a dynamic table size update
//! (`001xxxxx`) changes it — such a block cannot be dropped, and the guard ends the
//! connection instead.

/// What the walk found wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The block changes the dynamic table.
    ChangesTable,
    /// The block is not a sequence of representations (an integer over 32 bits).
    Malformed,
}

/// What follows the current item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// A new representation.
    Repr,
    /// A literal's value string.
    Value,
}

/// Where the walk is inside a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Walk(State);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the first octet of a representation.
    Repr,
    /// In an integer's continuation octets (value not needed); how many so far.
    SkipInt(Next, u8),
    /// At the first octet of a string (its length prefix).
    StrLen(Next),
    /// In a string length's continuation octets.
    StrLenCont { len: u32, shift: u8, then: Next },
    /// Inside a string's octets.
    Str { left: u32, then: Next },
}

/// Continuation octets allowed for an integer we only skip: 5 carry 35 bits, beyond
/// any index or length a 32-bit decoder accepts.
const MAX_INT_OCTETS: u8 = 5;

impl Walk {
    /// At a block's start.
    pub fn new() -> Walk {
        Walk(State::Repr)
    }

    /// Whether the block may end here (not inside a representation).
    pub fn at_end(&self) -> bool {
        self.0 == State::Repr
    }

    /// Walks `bytes`, the next octets of the block.
    pub fn scan(&mut self, bytes: &[u8]) -> Result<(), Stop> {
        let mut i = 0;
        while i < bytes.len() {
            if let State::Str { left, then } = self.0 {
                let take = (left as usize).min(bytes.len() - i);
                i += take;
                let left = left - take as u32;
                self.0 = if left == 0 {
                    after(then)
                } else {
                    State::Str { left, then }
                };
                continue;
            }
            self.0 = self.0.step(bytes[i])?;
            i += 1;
        }
        Ok(())
    }
}

impl State {
    /// The state after octet `b`.
    fn step(self, b: u8) -> Result<State, Stop> {
        Ok(match self {
            State::Repr => repr(b)?,
            State::SkipInt(then, n) => {
                if n >= MAX_INT_OCTETS {
                    return Err(Stop::Malformed);
                }
                if b & 0x80 != 0 {
                    State::SkipInt(then, n + 1)
                } else {
                    after(then)
                }
            }
            State::StrLen(then) => {
                let len = u32::from(b & 0x7f);
                if len == 0x7f {
                    State::StrLenCont {
                        len,
                        shift: 0,
                        then,
                    }
                } else {
                    string(len, then)
                }
            }
            State::StrLenCont { len, shift, then } => {
                if shift > 28 {
                    return Err(Stop::Malformed);
                }
                let len = u64::from(len) + (u64::from(b & 0x7f) << shift);
                let len = u32::try_from(len).map_err(|_| Stop::Malformed)?;
                if b & 0x80 != 0 {
                    State::StrLenCont {
                        len,
                        shift: shift + 7,
                        then,
                    }
                } else {
                    string(len, then)
                }
            }
            // Strings are skipped whole by `scan`; one octet of one is consumed here.
            State::Str { left, then } => string(left - 1, then),
        })
    }
}

/// The state after an item followed by `then`.
fn after(then: Next) -> State {
    match then {
        Next::Repr => State::Repr,
        Next::Value => State::StrLen(Next::Repr),
    }
}

fn string(len: u32, then: Next) -> State {
    if len == 0 {
        after(then)
    } else {
        State::Str { left: len, then }
    }
}

/// The first octet of a representation (RFC 7541 §6).
fn repr(b: u8) -> Result<State, Stop> {
    if b & 0x80 != 0 {
        // §6.1 indexed field: a 7-bit prefix index.
        return Ok(if b & 0x7f == 0x7f {
            State::SkipInt(Next::Repr, 0)
        } else {
            State::Repr
        });
    }
    if b & 0xc0 == 0x40 || b & 0xe0 == 0x20 {
        // §6.2.1 literal with incremental indexing, §6.3 dynamic table size update.
        return Err(Stop::ChangesTable);
    }
    // §6.2.2 without indexing, §6.2.3 never indexed: a 4-bit prefix name index (0: a
    // literal name string follows), then the value string.
    Ok(match b & 0x0f {
        0 => State::StrLen(Next::Value),
        0x0f => State::SkipInt(Next::Value, 0),
        _ => State::StrLen(Next::Repr),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(block: &[u8]) -> Result<bool, Stop> {
        let mut w = Walk::new();
        w.scan(block)?;
        Ok(w.at_end())
    }

    #[test]
    fn indexed_fields_leave_the_table_alone() {
        // :method GET, :path /, :scheme http, and dynamic index 62 + 80 (0xff 0x50).
        assert_eq!(walk(&[0x82, 0x84, 0x86, 0xff, 0x50]), Ok(true));
    }

    #[test]
    fn literals_without_indexing_are_skipped() {
        // Name index 4 (:path), value "/a"; literal name "x-a" value "b"; never indexed
        // with name index 15 + 1 (0x1f 0x01), value "v".
        let block = [
            0x04, 0x02, b'/', b'a', 0x00, 0x03, b'x', b'-', b'a', 0x01, b'b', 0x1f, 0x01, 0x01,
            b'v',
        ];
        assert_eq!(walk(&block), Ok(true));
    }

    #[test]
    fn split_anywhere_gives_the_same_walk() {
        // Literal name "x-a", a 1-octet Huffman value, then an indexed field.
        let block = [0x00, 0x03, b'x', b'-', b'a', 0x81, 0xff, 0x82];
        // A 128+ octet value: length 0x7f + 2 = 129 (0x7f, 0x02).
        let mut long = vec![0x00, 0x01, b'n', 0x7f, 0x02];
        long.extend(std::iter::repeat_n(b'v', 129));
        long.push(0x82);
        for block in [&block[..], &long[..]] {
            for cut in 0..block.len() {
                let mut w = Walk::new();
                w.scan(&block[..cut]).unwrap();
                w.scan(&block[cut..]).unwrap();
                assert!(w.at_end(), "cut at {cut}");
            }
        }
    }

    #[test]
    fn table_changes_are_found() {
        // Literal with incremental indexing (name index 1).
        assert_eq!(walk(&[0x82, 0x41, 0x01, b'a']), Err(Stop::ChangesTable));
        // Dynamic table size update.
        assert_eq!(walk(&[0x3f, 0xe1, 0x1f]), Err(Stop::ChangesTable));
    }

    #[test]
    fn truncated_block_does_not_end_cleanly() {
        assert_eq!(walk(&[0x00, 0x03, b'x']), Ok(false));
        assert_eq!(walk(&[0xff]), Ok(false));
    }

    #[test]
    fn oversized_integers_are_malformed() {
        assert_eq!(
            walk(&[0xff, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]),
            Err(Stop::Malformed)
        );
        assert_eq!(
            walk(&[0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0x7f]),
            Err(Stop::Malformed)
        );
    }
}
