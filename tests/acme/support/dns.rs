//! Just enough DNS to know that pebble-challtestsrv answers queries.
//!
//! Pebble resolves every name it validates through challtestsrv. Pebble's
//! directory answering says nothing about challtestsrv, which starts in parallel;
//! a validation sent before its resolver is up fails and the name backs off for a
//! minute. So start-up waits for one real answer.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

/// Whether `server` answers an A query for `name` within a short time.
pub async fn answers(server: SocketAddr, name: &str) -> bool {
    let Ok(socket) = UdpSocket::bind("127.0.0.1:0").await else {
        return false;
    };
    let id = (std::process::id() as u16) ^ 0x5a5a;
    let query = a_query(id, name);
    if socket.send_to(&query, server).await.is_err() {
        return false;
    }
    let mut reply = [0u8; 512];
    match tokio::time::timeout(Duration::from_millis(200), socket.recv_from(&mut reply)).await {
        // Same id, and the QR bit says it is a response.
        Ok(Ok((n, from))) => {
            from == server && n >= 12 && reply[..2] == id.to_be_bytes()[..] && reply[2] & 0x80 != 0
        }
        _ => false,
    }
}

/// A recursion-desired query for the A record of `name` (RFC 1035 §4.1).
fn a_query(id: u16, name: &str) -> Vec<u8> {
    let mut packet = Vec::with_capacity(32 + name.len());
    packet.extend_from_slice(&id.to_be_bytes());
    // Flags: RD; one question, no other records.
    packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.push(0);
    // QTYPE A, QCLASS IN.
    packet.extend_from_slice(&[0, 1, 0, 1]);
    packet
}
