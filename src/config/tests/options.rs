//! The `options` block: every option's forms and that each one takes effect.

use std::net::SocketAddr;
use std::time::Duration;

use super::parse_ok;
use crate::config::{defaults, Options};

#[test]
fn acme_profile_option() {
    let config = parse_ok("options { profile \"shortlived\" }\napp.example.com { proxy 8000 }\n");
    assert_eq!(config.options.acme_profile.as_deref(), Some("shortlived"));
    let config = parse_ok("app.example.com { proxy 8000 }\n");
    assert_eq!(config.options.acme_profile, None);
}

#[test]
fn options_alternatives() {
    let config = parse_ok(
        r#"
        options {
            acme-ca "staging"
            http-port 0
            https-port 0
            admin 2019
            trusted-proxies "10.0.0.0/8" "192.168.1.7" "fd00::/8"
            grace-period "1m30s"
            client-header-timeout "500ms"
            workers 3
        }
        a.example.com { proxy 1 }
        "#,
    );
    let o = config.options;
    assert_eq!(o.acme_ca, defaults::ACME_CA_STAGING);
    assert_eq!((o.http_port, o.https_port), (0, 0));
    assert_eq!(o.admin, Some(SocketAddr::from(([127, 0, 0, 1], 2019))));
    assert_eq!(
        o.trusted_proxies
            .iter()
            .map(|n| n.prefix)
            .collect::<Vec<_>>(),
        vec![8, 32, 8]
    );
    assert_eq!(o.grace_period, Duration::from_secs(90));
    assert_eq!(o.client_header_timeout, Duration::from_millis(500));
    assert_eq!(o.workers.map(usize::from), Some(3));

    let o = parse_ok(
        "options { acme-ca \"production\"; admin \"[::1]:2020\" }\na.example.com { proxy 1 }",
    )
    .options;
    assert_eq!(o.acme_ca, defaults::ACME_CA);
    assert_eq!(o.admin, Some("[::1]:2020".parse().unwrap()));
    assert_eq!(
        parse_ok("options {}\na.example.com { proxy 1 }").options,
        Options::default()
    );
}

#[test]
fn every_option_name_sets_something() {
    use crate::config::options::OPTION_NAMES;
    // A non-default value for each option; a new option without one fails here,
    // and one whose parser arm is missing leaves Options at its default.
    let sample = |name: &str| match name {
        "email" => "\"ops@example.com\"",
        "acme-ca" => "\"staging\"",
        "acme-ca-root" => "\"/root.pem\"",
        "profile" => "\"shortlived\"",
        "state-dir" => "\"/tmp/state\"",
        "http-port" => "8080",
        "https-port" => "8443",
        "admin" => "2019",
        "trusted-proxies" => "\"10.0.0.0/8\"",
        "grace-period" => "\"1s\"",
        "client-header-timeout" => "\"1s\"",
        "workers" => "2",
        "bind" => "\"127.0.0.1\"",
        "storage" => "\"redis://127.0.0.1:6379/0\"",
        "max-connections" => "100",
        "max-connections-per-ip" => "8",
        "client-body-timeout" => "\"1s\"",
        "client-write-timeout" => "\"1s\"",
        "drain-timeout" => "\"1h\"",
        other => panic!("add a sample value for option `{other}` to this test"),
    };
    for name in OPTION_NAMES {
        let src = format!(
            "options {{ {name} {} }}\na.example.com {{ proxy 1 }}",
            sample(name)
        );
        assert_ne!(
            parse_ok(&src).options,
            Options::default(),
            "{name} was not applied"
        );
    }
}

#[test]
fn storage_forms() {
    use crate::config::{Storage, StorageRedis};
    let o = parse_ok(
        "options { storage \"redis://:pw@127.0.0.1:6379/0\" key-file=\"/etc/bellhop/storage.key\" }\na.example.com { proxy 1; rate-limit \"5/s\" shared=#true }",
    );
    assert_eq!(
        o.options.storage,
        Storage::Redis(StorageRedis {
            url: "redis://:pw@127.0.0.1:6379/0".into(),
            key_file: Some("/etc/bellhop/storage.key".into()),
            password_file: None,
            ca_root: None,
        })
    );
    assert!(!format!("{:?}", o.options.storage).contains("pw"));
    assert!(o.sites[0].routes[0].rate_limit.is_some_and(|l| l.shared));
    let o = parse_ok("options { storage \"dir\" }\na.example.com { proxy 1 }");
    assert_eq!(o.options.storage, Storage::Dir);
}

#[test]
fn storage_password_file_ca_root_and_env() {
    use crate::config::{parse_with_env, Storage, StorageRedis};
    let o = parse_ok(
        "options { storage \"rediss://redis.internal:6380/0\" password-file=\"/etc/bellhop/redis.pass\" ca-root=\"/etc/bellhop/redis-ca.pem\" }\na.example.com { proxy 1 }",
    );
    assert_eq!(
        o.options.storage,
        Storage::Redis(StorageRedis {
            url: "rediss://redis.internal:6380/0".into(),
            key_file: None,
            password_file: Some("/etc/bellhop/redis.pass".into()),
            ca_root: Some("/etc/bellhop/redis-ca.pem".into()),
        })
    );
    // The password from the environment, never shown by Debug.
    let src = "options { storage \"redis://:{env.REDIS_PASSWORD}@10.0.0.5:6379/0\" }\na.example.com { proxy 1 }";
    let o = parse_with_env(src, "Proxyfile", &|name| {
        (name == "REDIS_PASSWORD").then(|| "from-env".to_string())
    })
    .unwrap();
    let Storage::Redis(redis) = &o.options.storage else {
        panic!("{:?}", o.options.storage);
    };
    assert_eq!(redis.url, "redis://:from-env@10.0.0.5:6379/0");
    assert!(!format!("{:?}", o.options.storage).contains("from-env"));
}

#[test]
fn storage_password_and_ca_conflicts() {
    use super::parse_err;
    let err = parse_err("options { storage \"redis://:pw@h:6379/0\" password-file=\"/p\" }\na.example.com { proxy 1 }");
    assert!(err.to_string().contains("password is given twice"), "{err}");
    assert!(err.render().contains("1:"), "{}", err.render());
    let err = parse_err(
        "options { storage \"redis://h:6379/0\" ca-root=\"/ca.pem\" }\na.example.com { proxy 1 }",
    );
    assert!(err.to_string().contains("needs a TLS connection"), "{err}");
    let err =
        parse_err("options { storage \"dir\" password-file=\"/p\" }\na.example.com { proxy 1 }");
    assert!(err.to_string().contains("password-file"), "{err}");
    let err = parse_err(
        "options { storage \"redis://h\" password_file=\"/p\" }\na.example.com { proxy 1 }",
    );
    assert!(
        err.render().contains("did you mean `password-file`"),
        "{}",
        err.render()
    );
    let err =
        parse_err("options { storage \"redis://h\" ca-root=\"\" }\na.example.com { proxy 1 }");
    assert!(
        err.to_string().contains("a file path") || err.render().contains("empty"),
        "{}",
        err.render()
    );
}

#[test]
fn storage_errors_point_at_the_value() {
    use super::parse_err;
    let err = parse_err("options { storage \"http://x\" }\na.example.com { proxy 1 }");
    assert!(err.to_string().contains("not a storage URL"), "{err}");
    let err =
        parse_err("options { storage \"redis://h\" keyfile=\"/k\" }\na.example.com { proxy 1 }");
    assert!(
        err.render().contains("did you mean `key-file`"),
        "{}",
        err.render()
    );
    let err = parse_err("options { storage \"dir\" key-file=\"/k\" }\na.example.com { proxy 1 }");
    assert!(err.to_string().contains("key-file"), "{err}");
    // A shared limit without shared storage would silently be per instance.
    let err = parse_err("a.example.com { proxy 1; rate-limit \"5/s\" shared=#true }");
    assert!(err.to_string().contains("needs shared storage"), "{err}");
    let err = parse_err("options { storage \"redis://h\" }\na.example.com { proxy 1; rate-limit \"5/s\" shared=\"true\" }");
    assert!(err.render().contains("shared=#true"), "{}", err.render());
    let line = err.render();
    assert!(line.contains("2:"), "names the line: {line}");
}

#[test]
fn drain_timeout_option() {
    let o = parse_ok("options { drain-timeout \"90m\" }\na.example.com { proxy 1 }").options;
    assert_eq!(o.drain_timeout, Duration::from_secs(90 * 60));
    // Zero is allowed: the old process closes what it has as soon as the new one serves.
    let o = parse_ok("options { drain-timeout \"0s\" }\na.example.com { proxy 1 }").options;
    assert_eq!(o.drain_timeout, Duration::ZERO);
    assert_eq!(Options::default().drain_timeout, defaults::DRAIN_TIMEOUT);
}
