//! bellhop's integration tests: real sockets on 127.0.0.1, real backends (hyper,
//! tokio-tungstenite, uvicorn), bellhop both in-process (`bellhop::server`) and as the
//! spawned binary where a process boundary matters (RSS, fds, signals, logs, CLI).
//!
//! Modules follow the criteria: `headers`, `routing`, `upstreams`,
//! `streaming`, `keepalive`, `websocket`, `failures`, `logging`, `shutdown`, `reload`,
//! `cli`, `uvicorn`, `files`, `encode`, `admin`, `rate_reload` and `ws_close` (issue 14), and attacks on bellhop itself: `attack`
//! (slow and silent clients, h2 rapid reset) and `malformed` (bad request framing
//! and hosts, a backend dying mid-response). Shared machinery lives in `support`.

mod support;

mod access;
mod admin;
mod attack;
mod bind;
mod cli;
mod encode;
mod error_pages;
mod failures;
mod files;
mod h1_server;
mod h1_upstream;
mod h2;
mod header_directives;
mod headers;
mod keepalive;
mod limits;
mod logging;
mod malformed;
mod notify;
mod park;
mod paths;
mod rate_reload;
mod reload;
mod reload_result;
mod routing;
mod shutdown;
mod site_log;
mod slow_reader;
mod sovgrid;
mod spa;
mod streaming;
mod upgrade;
mod upstream_restart;
mod upstreams;
mod uvicorn;
mod websocket;
mod workers;
mod ws_close;
