//! Pass-through I/O for stream wrappers that act on one direction only:
//! reads (`read_through!`) or writes (`write_through!`) go straight to the
//! wrapped stream, written once here. Used by the connection's wrappers
//! (`server::linger::Linger`, `server::write_deadline::WriteDeadline`) and the client side of a
//! tunnel.

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

/// The `AsyncWrite` methods that write straight to the field `$field`:
/// `poll_write`, `poll_write_vectored`, `is_write_vectored` and
/// `poll_flush`. Used inside an `impl AsyncWrite`, which adds its own
/// `poll_shutdown`.
macro_rules! write_through {
    ($field:ident) => {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::pin::Pin::new(&mut self.get_mut().$field).poll_write(cx, buf)
        }

        fn poll_write_vectored(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            bufs: &[std::io::IoSlice<'_>],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::pin::Pin::new(&mut self.get_mut().$field).poll_write_vectored(cx, bufs)
        }

        fn is_write_vectored(&self) -> bool {
            self.$field.is_write_vectored()
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.get_mut().$field).poll_flush(cx)
        }
    };
}

pub(crate) use {read_through, write_through};
