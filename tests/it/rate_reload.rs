//! Rate-limit buckets across a reload (issue 14, item 7): a site that keeps its
//! limit keeps its clients' buckets, so a reload is no way to a fresh burst; a
//! changed limit starts afresh. Through the real binary and SIGHUP.

use crate::support::binary::Bellhop;
use crate::support::client::get;
use crate::support::{bounded, secs, wait_for, TempDir};

/// A site with a route limited to one request a minute, answering `text`.
fn proxyfile(limit: &str, text: &str) -> String {
    format!(
        "\"http://127.0.0.1:0\" {{\n    \
             route \"/limited\" {{\n        rate-limit \"{limit}\" burst=1\n        respond \"{text}\"\n    }}\n    \
             respond \"open\"\n}}\n"
    )
}

#[tokio::test]
async fn an_exhausted_limit_stays_exhausted_across_a_reload() {
    bounded(secs(40), "test", async {
        let dir = TempDir::new("rate-reload");
        let file = dir.write("Proxyfile", &proxyfile("1/m", "before"));
        let bellhop = Bellhop::run_config(&file, &[], 1).await;
        let (site, host) = (bellhop.addr(), bellhop.addr().to_string());
        assert_eq!(get(site, &host, "/limited").await.status, 200);
        assert_eq!(get(site, &host, "/limited").await.status, 429);

        // Same site, same limit, another answer: the reload applies, the bucket stays.
        dir.write("Proxyfile", &proxyfile("1/m", "after"));
        let reloaded = |n: usize| {
            let applied = bellhop
                .proc
                .plain_lines()
                .iter()
                .filter(|l| l.contains("reloaded: 1 site"))
                .count();
            applied >= n
        };
        bellhop.proc.signal(libc::SIGHUP);
        wait_for("the first reload", secs(10), || reloaded(1)).await;
        assert_eq!(get(site, &host, "/").await.text(), "open");
        let limited = get(site, &host, "/limited").await;
        assert_eq!(limited.status, 429, "{}", limited.text());

        // A different limit means different buckets: the client starts afresh.
        dir.write("Proxyfile", &proxyfile("2/m", "changed"));
        bellhop.proc.signal(libc::SIGHUP);
        wait_for("the second reload", secs(10), || reloaded(2)).await;
        let fresh = get(site, &host, "/limited").await;
        assert_eq!(
            (fresh.status.as_u16(), fresh.text().as_str()),
            (200, "changed")
        );
    })
    .await
}
