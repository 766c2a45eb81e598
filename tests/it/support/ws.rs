//! WebSocket client helpers (tokio-tungstenite), shared limits for both ends.

use std::net::SocketAddr;

use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A client WebSocket over plain TCP.
pub type Ws = WebSocketStream<TcpStream>;

/// Limits roomy enough for the 16 MiB message tests, on client and backend alike.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20))
}

/// Opens `ws://addr{path}` (Host header `addr`) and completes the handshake.
pub async fn connect(addr: SocketAddr, path: &str) -> Ws {
    try_connect(addr, path).await.expect("websocket handshake")
}

/// Like [`connect`], but returns the error instead of panicking.
pub async fn try_connect(
    addr: SocketAddr,
    path: &str,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let sock = TcpStream::connect(addr).await?;
    let req = format!("ws://{addr}{path}").into_client_request()?;
    let (ws, resp) =
        tokio_tungstenite::client_async_with_config(req, sock, Some(ws_config())).await?;
    assert_eq!(resp.status(), 101);
    Ok(ws)
}

/// The next text or binary message, skipping pings and pongs. `None` when the
/// stream ended, errored, or a Close frame arrived (which is returned as `Err`).
pub async fn next_data<S>(ws: &mut WebSocketStream<S>) -> Option<Result<Message, Message>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match ws.next().await {
            None | Some(Err(_)) => return None,
            Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => return Some(Ok(m)),
            Some(Ok(m @ Message::Close(_))) => return Some(Err(m)),
            Some(Ok(_)) => {}
        }
    }
}

/// Reads until the stream ends (after a Close frame, an error or EOF); returns the
/// Close frame's code if one came. Over TCP or TLS alike.
pub async fn read_until_end<S>(ws: &mut WebSocketStream<S>) -> Option<u16>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut code = None;
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Close(f)) => code = Some(f.map(|f| u16::from(f.code)).unwrap_or(1005)),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    code
}
