//! The Caddy-parity directives: `header`, `request-header`, `security-headers`,
//! `error-page`, `respond content-type`, `files try=`, `{env.NAME}` and `import`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use http::{HeaderName, HeaderValue};

use super::{parse_err, parse_ok};
use crate::config::{
    format, load, parse_with_env, ErrorBody, ErrorPage, Handler, HeaderOp, PathPattern,
};

fn set(name: &'static str, value: &'static str) -> HeaderOp {
    HeaderOp::Set(
        HeaderName::from_static(name),
        HeaderValue::from_static(value),
    )
}

#[test]
fn header_forms_and_route_order() {
    let config = parse_ok(
        r#"a.example.com {
            header "X-Frame-Options" "DENY"
            header "-Server"
            header "+Link" "</app.css>; rel=preload"
            request-header "X-Env" "prod"
            route "/assets/*" { header "Cache-Control" "max-age=60"; request-header "-Cookie" }
            proxy 8000
        }"#,
    );
    let routes = &config.sites[0].routes;
    let site_ops = vec![
        set("x-frame-options", "DENY"),
        HeaderOp::Remove(HeaderName::from_static("server")),
        HeaderOp::Add(
            HeaderName::from_static("link"),
            HeaderValue::from_static("</app.css>; rel=preload"),
        ),
    ];
    assert_eq!(routes[1].path, PathPattern::Any);
    assert_eq!(routes[1].response_headers, site_ops);
    let mut route_ops = site_ops.clone();
    route_ops.push(set("cache-control", "max-age=60"));
    assert_eq!(routes[0].response_headers, route_ops);
    assert_eq!(
        routes[0].request_headers,
        vec![
            set("x-env", "prod"),
            HeaderOp::Remove(HeaderName::from_static("cookie"))
        ]
    );
}

#[test]
fn security_headers_come_first_and_turn_hsts_on() {
    let site = &parse_ok(
        r#"a.example.com { header "X-Frame-Options" "DENY"; security-headers; proxy 8000 }"#,
    )
    .sites[0];
    let ops = &site.routes[0].response_headers;
    assert_eq!(ops[0], set("x-content-type-options", "nosniff"));
    assert_eq!(ops.last(), Some(&set("x-frame-options", "DENY")));
    assert_eq!(site.hsts, Some(std::time::Duration::from_secs(365 * 86400)));
    let site = &parse_ok(r#"a.example.com { security-headers; hsts "1d"; proxy 8000 }"#).sites[0];
    assert_eq!(site.hsts, Some(std::time::Duration::from_secs(86400)));
}

#[test]
fn header_mistakes_are_reported_where_written() {
    for (src, says) in [
        (r#"a.example.com { header "X-A"; proxy 1 }"#, "has no value"),
        (
            r#"a.example.com { header "-X-A" "v"; proxy 1 }"#,
            "takes no value",
        ),
        (
            r#"a.example.com { header "Content-Length" "5"; proxy 1 }"#,
            "can't be changed",
        ),
        (
            r#"a.example.com { header "X A" "v"; proxy 1 }"#,
            "not a header name",
        ),
        (
            r#"a.example.com { header "X-A" "a\nb"; proxy 1 }"#,
            "not a valid header value",
        ),
        (
            r#"a.example.com { route "/a" { security-headers }; proxy 1 }"#,
            "whole site",
        ),
        (
            r#"a.example.com { headr "X-A" "b"; proxy 1 }"#,
            "did you mean `header`",
        ),
    ] {
        let report = parse_err(src).render();
        assert!(report.contains(says), "{src}: {report}");
        assert!(report.contains("Proxyfile:1:"), "{src}: {report}");
    }
}

#[test]
fn error_pages_respond_content_type_and_files_try() {
    let config = parse_ok(
        r#"a.example.com {
            error-page 502 503 504 "/srv/maint.html"
            route "/api/*" { error-page 503 text="{\"error\":\"down\"}" content-type="application/json"; proxy 3000 }
            route "/hi" { respond "<b>hi</b>" content-type="text/html" }
            files "/srv/site" try="/index.html"
        }"#,
    );
    let routes = &config.sites[0].routes;
    let maint = ErrorPage {
        statuses: vec![502, 503, 504],
        body: ErrorBody::File("/srv/maint.html".into()),
    };
    assert_eq!(routes[2].error_pages, vec![maint.clone()]);
    // The route's own page is tried before the site's.
    assert_eq!(routes[0].error_pages[0].statuses, vec![503]);
    assert_eq!(routes[0].error_pages[1], maint);
    assert_eq!(
        routes[1].handler,
        Handler::Respond {
            status: 200,
            body: "<b>hi</b>".into(),
            content_type: Some(HeaderValue::from_static("text/html")),
        }
    );
    assert_eq!(
        routes[2].handler,
        Handler::Files {
            root: "/srv/site".into(),
            fallback: Some("/index.html".into()),
        }
    );
    for (src, says) in [
        (
            r#"a.example.com { error-page 302 "/x.html"; proxy 1 }"#,
            "not an error status",
        ),
        (
            r#"a.example.com { error-page "/x.html"; proxy 1 }"#,
            "at least one status",
        ),
        (
            r#"a.example.com { error-page 502; proxy 1 }"#,
            "needs a file or text",
        ),
        (
            r#"a.example.com { files "/srv" try="index.html" }"#,
            "not a file path",
        ),
    ] {
        let report = parse_err(src).render();
        assert!(report.contains(says), "{src}: {report}");
    }
}

fn env_parse(src: &str, vars: &[(&str, &str)]) -> Result<crate::config::Config, String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    parse_with_env(src, "Proxyfile", &|name| map.get(name).cloned()).map_err(|e| e.render())
}

#[test]
fn env_placeholders_expand_in_names_and_values() {
    let config = env_parse(
        r#""{env.DOMAIN}" { request-header "X-Env" "{env.APP_ENV}-{env.REGION:-eu}"; proxy "{env.UPSTREAM:-localhost:8000}" }"#,
        &[("DOMAIN", "app.example.com"), ("APP_ENV", "prod")],
    )
    .unwrap();
    let site = &config.sites[0];
    assert_eq!(site.addresses[0].to_string(), "app.example.com");
    assert_eq!(
        site.routes[0].request_headers,
        vec![set("x-env", "prod-eu")]
    );
    let Handler::Proxy(proxy) = &site.routes[0].handler else {
        panic!("proxy");
    };
    assert_eq!(proxy.upstreams[0].to_string(), "localhost:8000");
}

#[test]
fn an_unset_variable_is_an_error_at_its_column() {
    let report = env_parse(
        "a.example.com {\n    request-header \"X-Env\" \"v-{env.APP_ENV}\"\n    proxy 8000\n}",
        &[],
    )
    .unwrap_err();
    assert!(
        report.contains("environment variable `APP_ENV` is not set"),
        "{report}"
    );
    // Line 2, column of `{env.APP_ENV}` inside the string.
    assert!(report.contains("Proxyfile:2:31"), "{report}");
    assert!(report.contains("{env.APP_ENV:-value}"), "{report}");
    let report = env_parse(r#"a.example.com { proxy "{env.9X}" }"#, &[]).unwrap_err();
    assert!(
        report.contains("not an environment variable name"),
        "{report}"
    );
    let report = env_parse(r#"a.example.com { proxy "{env.X" }"#, &[]).unwrap_err();
    assert!(report.contains("not closed"), "{report}");
}

/// A scratch directory for the import tests, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("bellhop-config-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sites")).unwrap();
        Dir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn addresses(config: &crate::config::Config) -> Vec<String> {
    config
        .sites
        .iter()
        .map(|s| s.addresses[0].to_string())
        .collect()
}

#[test]
fn imports_follow_globs_relative_to_the_importing_file() {
    let dir = Dir::new("import");
    let main = dir.write(
        "Proxyfile",
        "options { https-port 8443 }\nimport \"sites/*.kdl\"\nmain.example.com { proxy 8000 }",
    );
    dir.write("sites/b.kdl", "b.example.com { files \"public\" }");
    dir.write(
        "sites/a.kdl",
        "a.example.com { proxy 8001 }\nimport \"extra/more.kdl\"",
    );
    std::fs::create_dir_all(dir.0.join("sites/extra")).unwrap();
    dir.write("sites/extra/more.kdl", "more.example.com { proxy 8002 }");
    dir.write("sites/.a.kdl.swp", "not kdl");
    let config = load(&main).unwrap_or_else(|e| panic!("{}", e.render()));
    assert_eq!(
        addresses(&config),
        [
            "main.example.com",
            "a.example.com",
            "more.example.com",
            "b.example.com"
        ]
    );
    // Relative paths are relative to the file that names them.
    assert_eq!(
        config.sites[3].routes[0].handler,
        Handler::Files {
            root: dir.0.join("sites/public"),
            fallback: None
        }
    );
    // Formatting keeps the import line and does not follow it.
    let text = std::fs::read_to_string(&main).unwrap();
    assert!(format(&text, "Proxyfile")
        .unwrap()
        .contains("import \"sites/*.kdl\""));
}

#[test]
fn import_errors_point_into_the_right_file() {
    let dir = Dir::new("import-errors");
    let main = dir.write(
        "Proxyfile",
        "import \"sites/*.kdl\"\nmain.example.com { proxy 8000 }",
    );
    dir.write(
        "sites/bad.kdl",
        "bad.example.com {\n    proxy 8000\n    rate-limt \"5/s\"\n}",
    );
    let report = load(&main).unwrap_err().render();
    assert!(
        report.contains(&format!("{}:3:5", dir.0.join("sites/bad.kdl").display())),
        "{report}"
    );

    dir.write("sites/bad.kdl", "import \"../Proxyfile\"");
    let report = load(&main).unwrap_err().render();
    assert!(report.contains("imports itself"), "{report}");

    dir.write("sites/bad.kdl", "options { http-port 8080 }");
    let report = load(&main).unwrap_err().render();
    assert!(report.contains("can't have an `options` block"), "{report}");

    dir.write("sites/bad.kdl", "main.example.com { proxy 9000 }");
    let report = load(&main).unwrap_err().render();
    assert!(report.contains("is given twice"), "{report}");

    std::fs::remove_file(dir.0.join("sites/bad.kdl")).unwrap();
    let report = load(&main).unwrap_err().render();
    assert!(report.contains("no file matches"), "{report}");
    assert!(report.contains("Proxyfile:1:8"), "{report}");
    assert!(Path::new(&dir.0).exists());
}

#[test]
fn text_alone_cannot_import() {
    let report = parse_err("import \"sites/*.kdl\"\na.example.com { proxy 1 }").render();
    assert!(
        report.contains("needs the Proxyfile's location"),
        "{report}"
    );
}

/// `fmt` on a machine without the service's environment: the file is laid out
/// anyway (its tree checked instead of its meaning: the directives are checked
/// by `validate` where the variables are set); a syntax error still stops it.
#[test]
fn fmt_formats_a_file_whose_variables_are_unset_here() {
    let var = "BELLHOP_TEST_SURELY_UNSET_PORT";
    assert!(std::env::var_os(var).is_none());
    let src = format!("b.example.com {{proxy \"{{env.{var}}}\"}}\n");
    let out = format(&src, "Proxyfile").unwrap_or_else(|e| panic!("{}", e.render()));
    assert_eq!(
        out,
        format!("b.example.com {{ proxy \"{{env.{var}}}\" }}\n")
    );
    // An unset variable next to a syntax error: the error is reported.
    let bad = format!("b.example.com {{ proxy \"{{env.{var}}}\" }}\nc.example.com {{ proxy 80\n");
    let report = format(&bad, "Proxyfile").unwrap_err().render();
    assert!(report.contains("invalid KDL"), "{report}");
    assert!(!report.contains("is not set"), "{report}");
}
