//! Relative paths in a Proxyfile are relative to the Proxyfile itself.
//!
//! bellhop usually runs under systemd with `/` as its working directory, so a
//! path relative to the working directory would be a surprise; relative to the
//! file that names it is what a reader of the file expects.

use std::path::{Path, PathBuf};

use super::model::{Config, ErrorBody, Handler, Storage, TlsMode, Upstream};

/// Makes every relative path in `config` relative to `base` (the Proxyfile's directory).
pub(crate) fn resolve(config: &mut Config, base: &Path) {
    if base.as_os_str().is_empty() {
        return;
    }
    let fix = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    let options = &mut config.options;
    fix(&mut options.state_dir);
    if let Some(root) = options.acme_ca_root.as_mut() {
        fix(root);
    }
    if let Storage::Redis(redis) = &mut options.storage {
        let files = [
            &mut redis.key_file,
            &mut redis.password_file,
            &mut redis.ca_root,
        ];
        files.into_iter().flatten().for_each(fix);
    }
    for site in &mut config.sites {
        if let Some(log) = site.log.as_mut() {
            fix(&mut log.path);
        }
        if let TlsMode::Files { cert, key } = &mut site.tls {
            fix(cert);
            fix(key);
        }
        for route in &mut site.routes {
            match &mut route.handler {
                Handler::Files { root, .. } => fix(root),
                Handler::Proxy(proxy) => {
                    for upstream in &mut proxy.upstreams {
                        if let Upstream::Unix { path } = upstream {
                            fix(path);
                        }
                    }
                }
                Handler::Redirect { .. } | Handler::Respond { .. } => {}
            }
            for page in &mut route.error_pages {
                if let ErrorBody::File(path) = &mut page.body {
                    fix(path);
                }
            }
        }
    }
}
