//! A byte-stream guard that refuses oversized protocol messages before they are buffered.
//!
//! pgwire accepts messages up to 1 GiB and buffers each whole before decoding it, so one
//! client could make the gateway allocate a gigabyte per connection. This wrapper follows
//! the message framing as bytes arrive (`[type][len]` after startup, `[len]` before) and
//! fails the read as soon as a declared length exceeds the limit.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Follows message boundaries in the client's byte stream.
#[derive(Debug)]
pub struct Framing {
    max: usize,
    typed: bool,
    header: Vec<u8>,
    remaining: usize,
}

impl Framing {
    /// Start in the untyped startup phase, refusing messages longer than `max` bytes.
    pub fn new(max: usize) -> Framing {
        Framing {
            max,
            typed: false,
            header: Vec::with_capacity(5),
            remaining: 0,
        }
    }

    /// Account for bytes received.
    ///
    /// # Errors
    /// `InvalidData` naming the declared length, when it is invalid or over the limit.
    pub fn observe(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let n = self.remaining.min(bytes.len());
                self.remaining -= n;
                bytes = &bytes[n..];
                continue;
            }
            let header_len = if self.typed { 5 } else { 4 };
            let n = (header_len - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.header.len() == header_len {
                let len_bytes: [u8; 4] = self.header[header_len - 4..]
                    .try_into()
                    .map_err(|_| io::Error::other("header length"))?;
                let len = u32::from_be_bytes(len_bytes) as usize;
                if len < 4 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("invalid message length {len}"),
                    ));
                }
                if len > self.max {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "message of {len} bytes exceeds the limit of {} bytes (server.max_message_bytes)",
                            self.max
                        ),
                    ));
                }
                self.remaining = len - 4;
                self.header.clear();
                self.typed = true;
            }
        }
        Ok(())
    }
}

/// An I/O stream whose reads are checked by [`Framing`].
#[derive(Debug)]
pub struct Limited<S> {
    inner: S,
    framing: Framing,
}

impl<S> Limited<S> {
    /// Wrap `inner`; `framing` has already seen any bytes buffered before wrapping.
    pub fn new(inner: S, framing: Framing) -> Limited<S> {
        Limited { inner, framing }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.framing.observe(&buf.filled()[before..])?;
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn follows_messages_split_anywhere() {
        let mut stream = 12u32.to_be_bytes().to_vec();
        stream.extend_from_slice(&[0, 3, 0, 0, b'u', 0, 0, 0]);
        stream.extend(typed(b'Q', b"SELECT 1\0"));
        stream.extend(typed(b'X', b""));
        let mut f = Framing::new(64);
        for chunk in stream.chunks(3) {
            f.observe(chunk).unwrap();
        }
        assert_eq!(f.remaining, 0);
        assert!(f.header.is_empty());
    }

    #[test]
    fn refuses_a_declared_length_over_the_limit() {
        let mut f = Framing::new(64);
        f.observe(&8u32.to_be_bytes()).unwrap();
        f.observe(&[0, 0, 0, 0]).unwrap();
        let err = f.observe(&[b'Q', 0x10, 0, 0, 0]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "message of 268435456 bytes exceeds the limit of 64 bytes (server.max_message_bytes)"
        );
    }

    #[test]
    fn refuses_lengths_below_four() {
        let mut f = Framing::new(64);
        assert!(f.observe(&[0, 0, 0, 2]).is_err());
    }
}
