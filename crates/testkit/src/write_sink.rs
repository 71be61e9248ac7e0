//! [`WriteSink`]: a write half that takes every write whole, at once, and
//! runs a hook first: for tests that steer what happens during a write (a
//! busy wait, the next batch queued) and never want the writer to wait.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;

/// Takes every write whole without waiting, calling `on_write` before each
/// (a vectored write counts as one). What it takes is dropped.
pub struct WriteSink<F> {
    on_write: F,
}

impl<F: FnMut() + Unpin> WriteSink<F> {
    /// A sink that calls `on_write` at each write.
    pub fn new(on_write: F) -> Self {
        Self { on_write }
    }
}

impl<F: FnMut() + Unpin> AsyncWrite for WriteSink<F> {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        (self.on_write)();
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        (self.on_write)();
        Poll::Ready(Ok(bufs.iter().map(|buf| buf.len()).sum()))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test]
    async fn every_write_is_taken_whole_after_its_hook() {
        let mut calls = 0;
        {
            let mut sink = WriteSink::new(|| calls += 1);
            assert_eq!(sink.write(b"abc").await.unwrap(), 3);
            let parts = [io::IoSlice::new(b"de"), io::IoSlice::new(b"fgh")];
            assert_eq!(sink.write_vectored(&parts).await.unwrap(), 5);
        }
        assert_eq!(calls, 2);
    }
}
