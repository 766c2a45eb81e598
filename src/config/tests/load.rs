//! `config::load`: reading a Proxyfile from disk and resolving its relative paths.

use std::path::PathBuf;

use super::forms::proxy;
use crate::config::{Config, Handler, TlsMode, Upstream};

#[test]
fn load_resolves_relative_paths_next_to_the_file() {
    let dir = std::env::temp_dir().join(format!("bellhop-config-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("Proxyfile");
    std::fs::write(
        &file,
        r#"
        options { state-dir "state"; acme-ca-root "/abs/root.pem" }
        a.example.com {
            tls "certs/a.pem" "/etc/ssl/a.key"
            route "/static/*" { files "public" }
            proxy "unix:run/app.sock"
        }
        "#,
    )
    .unwrap();
    let config: Config = crate::config::load(&file).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(config.options.state_dir, dir.join("state"));
    assert_eq!(
        config.options.acme_ca_root,
        Some(PathBuf::from("/abs/root.pem"))
    );
    let site = &config.sites[0];
    assert_eq!(
        site.tls,
        TlsMode::Files {
            cert: dir.join("certs/a.pem"),
            key: "/etc/ssl/a.key".into()
        }
    );
    assert_eq!(
        site.routes[0].handler,
        Handler::Files {
            root: dir.join("public"),
            fallback: None,
        }
    );
    assert_eq!(
        site.routes[1].handler,
        proxy(vec![Upstream::Unix {
            path: dir.join("run/app.sock")
        }])
    );
}

#[test]
fn storage_files_are_next_to_the_proxyfile() {
    use crate::config::Storage;
    let dir = std::env::temp_dir().join(format!("bellhop-config-storage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("Proxyfile");
    std::fs::write(
        &file,
        r#"
        options { storage "rediss://r:6380/0" key-file="storage.key" password-file="redis.pass" ca-root="/abs/ca.pem"; }
        a.example.com { proxy 1 }
        "#,
    )
    .unwrap();
    let config: Config = crate::config::load(&file).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let Storage::Redis(redis) = config.options.storage else {
        panic!("{:?}", config.options.storage);
    };
    assert_eq!(redis.key_file, Some(dir.join("storage.key")));
    assert_eq!(redis.password_file, Some(dir.join("redis.pass")));
    assert_eq!(redis.ca_root, Some(PathBuf::from("/abs/ca.pem")));
}

#[test]
fn load_names_an_unreadable_path() {
    let missing = std::env::temp_dir().join("bellhop-no-such-dir/Proxyfile");
    let err = crate::config::load(&missing).unwrap_err();
    let report = err.render();
    assert!(report.contains(&missing.display().to_string()), "{report}");
    assert!(report.contains("help:"), "{report}");
}
