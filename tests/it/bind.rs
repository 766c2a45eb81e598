//! Listeners bind what the sites' addresses say (`bind`, IP addresses), so a
//! loopback-only site is not reachable on another local address. Linux routes
//! all of 127.0.0.0/8 to loopback, so 127.0.0.2 stands in for "another
//! interface of this machine".

use std::net::SocketAddr;

use tokio::net::TcpStream;

use crate::support::client::get;
use crate::support::ports::Port;
use crate::support::server::TestServer;
use crate::support::{bounded, secs, TempDir};

/// Starts bellhop in this process on the Proxyfile text `src`.
async fn start(src: &str) -> TestServer {
    let config = bellhop::config::parse(src, "Proxyfile")
        .unwrap_or_else(|e| panic!("config does not parse: {e:?}"));
    TestServer::start(config).await
}

/// Asserts that nothing accepts connections at `addr`.
async fn assert_refused(addr: SocketAddr) {
    match TcpStream::connect(addr).await {
        Err(e) => assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "{addr}: {e}"
        ),
        Ok(_) => panic!("{addr} accepted a connection; it should not be bound"),
    }
}

fn at(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

#[tokio::test]
async fn site_bind_listens_on_that_address_only() {
    bounded(secs(20), "test", async {
        let port = Port::reserve();
        let server = start(&format!(
            "\"http://app.test:{}\" {{\n    bind \"127.0.0.1\"\n    respond \"hi\"\n}}\n",
            port.number()
        ))
        .await;
        let r = get(at([127, 0, 0, 1], port.number()), "app.test", "/").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), "hi");
        assert_refused(at([127, 0, 0, 2], port.number())).await;
        drop(server);
    })
    .await
}

/// `"https://127.0.0.1:8443"` with `"http://127.0.0.1:8080"` and `http-port
/// 8080`: the port that carries the redirects binds 127.0.0.1 too (it bound
/// `[::]` before), and so does the HTTPS port.
#[tokio::test]
async fn redirect_port_of_loopback_sites_binds_loopback_only() {
    bounded(secs(30), "test", async {
        let (https, http) = (Port::reserve(), Port::reserve());
        let state = TempDir::new("bind-state");
        let server = start(&format!(
            "options {{\n    http-port {http}\n    state-dir \"{state}\"\n}}\n\"https://127.0.0.1:{https}\" {{ respond \"secure\" }}\n\"http://127.0.0.1:{http}\" {{ respond \"plain\" }}\n",
            http = http.number(),
            https = https.number(),
            state = state.path().display(),
        ))
        .await;
        let plain = at([127, 0, 0, 1], http.number());
        let r = get(plain, &plain.to_string(), "/").await;
        assert_eq!(r.text(), "plain");
        assert_refused(at([127, 0, 0, 2], http.number())).await;
        assert_refused(at([127, 0, 0, 2], https.number())).await;
        TcpStream::connect(at([127, 0, 0, 1], https.number()))
            .await
            .expect("the HTTPS site listens on 127.0.0.1");
        drop(server);
    })
    .await
}

/// `options { bind }` covers every site, the redirect port of a host-name
/// HTTPS site included.
#[tokio::test]
async fn options_bind_covers_host_name_sites_and_their_redirects() {
    bounded(secs(30), "test", async {
        let (https, http) = (Port::reserve(), Port::reserve());
        let state = TempDir::new("bind-options");
        let server = start(&format!(
            "options {{\n    bind \"127.0.0.1\"\n    http-port {http}\n    https-port {https}\n    state-dir \"{state}\"\n}}\napp.localhost {{ respond \"app\" }}\n",
            http = http.number(),
            https = https.number(),
            state = state.path().display(),
        ))
        .await;
        let redirect = get(at([127, 0, 0, 1], http.number()), "app.localhost", "/x").await;
        assert_eq!(redirect.status, 308, "{}", redirect.text());
        assert_refused(at([127, 0, 0, 2], http.number())).await;
        assert_refused(at([127, 0, 0, 2], https.number())).await;
        drop(server);
    })
    .await
}
