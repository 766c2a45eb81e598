//! bellhop running inside the test process, through the library API
//! (`bellhop::server::Server`): bind, read the ephemeral addresses, run, shut down.

use std::net::SocketAddr;

use bellhop::config::Config;
use tokio::task::JoinHandle;

use super::backends::echo::Echo;
use super::config::{site, tcp, ConfigBuilder};

/// A bellhop server running in this process; aborted when dropped.
pub struct TestServer {
    /// One address per listener, in order of first appearance in the config.
    pub addrs: Vec<SocketAddr>,
    /// The admin listener's address, when the config has one.
    pub admin: Option<SocketAddr>,
    shutdown: Box<dyn Fn() + Send + Sync>,
    task: Option<JoinHandle<Result<(), String>>>,
}

impl TestServer {
    /// Binds every listener of `config` and starts serving.
    pub async fn start(config: Config) -> TestServer {
        let server = bellhop::Server::bind(config)
            .await
            .unwrap_or_else(|e| panic!("Server::bind failed: {e:?}"));
        // A listener on all interfaces reports [::]:PORT; tests talk to it on 127.0.0.1.
        let addrs: Vec<SocketAddr> = server
            .local_addrs()
            .into_iter()
            .map(|a| {
                if a.ip().is_unspecified() {
                    SocketAddr::from(([127, 0, 0, 1], a.port()))
                } else {
                    a
                }
            })
            .collect();
        assert!(!addrs.is_empty(), "server has no listeners");
        let admin = server.admin_addr();
        let handle = server.shutdown_handle();
        let task = tokio::spawn(async move { server.run().await.map_err(|e| format!("{e:?}")) });
        TestServer {
            addrs,
            admin,
            shutdown: Box::new(move || handle.shutdown()),
            task: Some(task),
        }
    }

    /// The first (usually only) listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// `host:port` of the first listener with the given host name, for Host headers.
    pub fn host(&self, name: &str) -> String {
        format!("{name}:{}", self.addr().port())
    }

    /// Starts graceful shutdown.
    pub fn shutdown(&self) {
        (self.shutdown)()
    }

    /// Waits for `run()` to return and gives its result.
    pub async fn finished(mut self) -> Result<(), String> {
        let task = self.task.take().expect("task");
        task.await.map_err(|e| format!("server task: {e}"))?
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// bellhop answering any Host on 127.0.0.1 (a catch-all site, so a bad Host is
/// not simply a 404 for an unknown site) in front of an echo backend.
pub async fn catch_all() -> (Echo, TestServer) {
    let echo = Echo::start("app").await;
    let server = TestServer::start(
        ConfigBuilder::new()
            .site(site("").proxy(tcp(echo.addr())))
            .build(),
    )
    .await;
    (echo, server)
}
