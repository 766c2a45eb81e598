//! `AsyncRead` for the connection's stream wrappers that only act on writes
//! ([`Linger`](super::linger::Linger), [`WriteDeadline`](super::write_deadline::WriteDeadline)):
//! their reads go straight to the wrapped stream, written once here.

/// Implements `AsyncRead` for `$wrapper<I>` by reading its `inner` field.
macro_rules! read_through {
    ($wrapper:ident) => {
        impl<I: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for $wrapper<I> {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
            }
        }
    };
}

pub(super) use read_through;
