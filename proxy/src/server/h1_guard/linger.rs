//! The lingering close of a refused connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// How long a refused connection is drained after its error response (RFC 9112 §9.6).
pub(super) const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// The most a refused connection is drained of.
pub(super) const LINGER_BYTES: usize = 4 * 1024 * 1024;

/// A lingering close (RFC 9112 §9.6 "Tear-down"; nginx's `lingering_close`): after a
/// refused request the write side is closed and what the client is still sending (the
/// rest of an oversized target or body) is read and dropped until it closes too, so that
/// closing with unread data does not make the kernel reset the connection and destroy
/// the error response on its way. Bounded in time and bytes.
#[derive(Debug)]
pub(super) struct Linger {
    deadline: Pin<Box<tokio::time::Sleep>>,
    drained: usize,
}

impl Linger {
    pub(super) fn new() -> Self {
        Linger {
            deadline: Box::pin(tokio::time::sleep(LINGER_TIME)),
            drained: 0,
        }
    }

    pub(super) fn poll_drain<S: AsyncRead + Unpin>(
        &mut self,
        inner: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        let mut scratch = [0u8; 4096];
        loop {
            let mut rb = ReadBuf::new(&mut scratch);
            match Pin::new(&mut *inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if !rb.filled().is_empty() => {
                    self.drained += rb.filled().len();
                    if self.drained >= LINGER_BYTES {
                        return Poll::Ready(Ok(()));
                    }
                }
                // EOF or an error: the client is done.
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    return match std::future::Future::poll(self.deadline.as_mut(), cx) {
                        Poll::Ready(()) => Poll::Ready(Ok(())),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
    }
}
