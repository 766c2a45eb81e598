//! The command line: `validate` and `fmt` exit codes and messages, `version`, and
//! the README's local quick-start Proxyfile actually serving.

use std::path::Path;

use crate::support::binary::{run_cli, Bellhop};
use crate::support::client::get;
use crate::support::{bounded, secs, TempDir};

const GOOD: &str = r#"// bellhop test config
"http://127.0.0.1:18080" {
    proxy "127.0.0.1:9000" // the app
}
"#;

const MESSY: &str = r#"options{
      email "ops@example.com"
}
// the app, with a comment that must survive
"http://127.0.0.1:18080"   {   proxy    "127.0.0.1:9000"    // inline comment
route "/api/*" { proxy 3000 }
}
"#;

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn validate_accepts_a_good_proxyfile() {
    let dir = TempDir::new("cli");
    let file = dir.write("Proxyfile", GOOD);
    let (code, _, _) = run_cli(&["validate", "--config", path(&file)], None);
    assert_eq!(code, 0);
}

#[test]
fn validate_defaults_to_the_proxyfile_in_the_working_directory() {
    let dir = TempDir::new("cli");
    dir.write("Proxyfile", GOOD);
    let (code, _, _) = run_cli(&["validate"], Some(dir.path()));
    assert_eq!(code, 0);
    dir.write("Proxyfile", "\"http://127.0.0.1:18080\" { proxx 9000 }\n");
    let (code, _, _) = run_cli(&["validate"], Some(dir.path()));
    assert_ne!(
        code, 0,
        "validate without --config did not read ./Proxyfile"
    );
}

#[tokio::test]
async fn run_defaults_to_the_proxyfile_in_the_working_directory() {
    bounded(secs(30), "test", async {
        let dir = TempDir::new("run");
        dir.write(
            "Proxyfile",
            "\"http://127.0.0.1:0\" {\n    respond \"from ./Proxyfile\"\n}\n",
        );
        let bellhop = Bellhop::start_in(Some(dir.path()), &["run"], 1).await;
        let r = get(bellhop.addr(), &bellhop.addr().to_string(), "/").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text().trim(), "from ./Proxyfile");
    })
    .await
}

#[test]
fn validate_rejects_a_misspelled_directive_with_file_line_column_and_suggestion() {
    let dir = TempDir::new("cli");
    let file = dir.write(
        "Proxyfile",
        "// line 1\n\"http://127.0.0.1:18080\" {\n    proxx \"127.0.0.1:9000\"\n}\n",
    );
    let (code, out, err) = run_cli(&["validate", "--config", path(&file)], None);
    assert_ne!(code, 0);
    let text = format!("{out}{err}");
    let plain = crate::support::binary::strip_ansi(&text);
    assert!(
        plain.contains("Proxyfile:3:5"),
        "no file:line:column in:\n{plain}"
    );
    assert!(
        plain.to_lowercase().contains("did you mean"),
        "no suggestion in:\n{plain}"
    );
    assert!(
        plain.contains("proxy"),
        "suggestion does not name `proxy`:\n{plain}"
    );
}

#[test]
fn validate_suggests_quoting_a_bare_ip_and_port() {
    let dir = TempDir::new("cli");
    let file = dir.write(
        "Proxyfile",
        "\"http://127.0.0.1:18080\" {\n    proxy 127.0.0.1:9000\n}\n",
    );
    let (code, out, err) = run_cli(&["validate", "--config", path(&file)], None);
    assert_ne!(code, 0);
    let plain = crate::support::binary::strip_ansi(&format!("{out}{err}"));
    assert!(plain.contains("Proxyfile:2:"), "no file:line in:\n{plain}");
    assert!(
        plain.contains("\"127.0.0.1:9000\""),
        "no quoted suggestion in:\n{plain}"
    );
}

#[test]
fn validate_of_a_missing_file_fails_naming_it() {
    let dir = TempDir::new("cli");
    let missing = dir.path().join("NoSuchProxyfile");
    let (code, out, err) = run_cli(&["validate", "--config", path(&missing)], None);
    assert_ne!(code, 0);
    assert!(format!("{out}{err}").contains("NoSuchProxyfile"));
}

/// Runs `bellhop fmt FILE` (which rewrites FILE in place) on `input` and returns
/// the formatted text.
fn formatted(input: &str) -> String {
    let dir = TempDir::new("fmt");
    let file = dir.write("Proxyfile", input);
    let (code, _, _) = run_cli(&["fmt", path(&file)], None);
    assert_eq!(code, 0, "fmt failed");
    std::fs::read_to_string(&file).unwrap()
}

#[test]
fn fmt_check_exit_codes() {
    let dir = TempDir::new("fmt");
    let messy = dir.write("Proxyfile", MESSY);
    let (code, _, _) = run_cli(&["fmt", "--check", path(&messy)], None);
    assert_ne!(code, 0, "fmt --check accepted an unformatted file");
    assert_eq!(
        std::fs::read_to_string(&messy).unwrap(),
        MESSY,
        "fmt --check changed the file"
    );
    let canonical = formatted(MESSY);
    let tidy = dir.write("Tidy", &canonical);
    let (code, _, _) = run_cli(&["fmt", "--check", path(&tidy)], None);
    assert_eq!(
        code, 0,
        "fmt --check rejected fmt's own output:\n{canonical}"
    );
}

#[test]
fn fmt_keeps_comments_is_idempotent_and_stays_valid() {
    let once = formatted(MESSY);
    assert!(
        once.contains("// the app, with a comment that must survive"),
        "{once}"
    );
    assert!(once.contains("// inline comment"), "{once}");
    assert_eq!(formatted(&once), once, "fmt is not idempotent");
    let dir = TempDir::new("fmt");
    let file = dir.write("Proxyfile", &once);
    let (code, _, _) = run_cli(&["validate", "--config", path(&file)], None);
    assert_eq!(code, 0, "formatted file does not validate:\n{once}");
}

#[test]
fn fmt_check_of_an_invalid_file_fails() {
    let dir = TempDir::new("fmt");
    let file = dir.write("Proxyfile", "\"http://127.0.0.1:18080\" { proxy \n");
    let (code, _, _) = run_cli(&["fmt", "--check", path(&file)], None);
    assert_ne!(code, 0);
}

#[test]
fn version_prints_the_crate_version() {
    let (code, out, err) = run_cli(&["version"], None);
    assert_eq!(code, 0);
    assert!(
        format!("{out}{err}").contains(env!("CARGO_PKG_VERSION")),
        "version output lacks {}",
        env!("CARGO_PKG_VERSION")
    );
}

#[test]
fn unknown_subcommand_fails() {
    let (code, _, err) = run_cli(&["frobnicate"], None);
    assert_ne!(code, 0);
    assert!(!err.is_empty());
}

#[test]
fn proxyfile_example_validates_and_is_formatted() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("Proxyfile.example");
    let (code, _, _) = run_cli(&["validate", "--config", path(&example)], None);
    assert_eq!(code, 0, "Proxyfile.example does not validate");
    let (code, _, _) = run_cli(&["fmt", "--check", path(&example)], None);
    assert_eq!(code, 0, "Proxyfile.example is not in `bellhop fmt` layout");
}

/// The README's first quick-start command runs `Proxyfile.local`; it must validate
/// and serve (here on an ephemeral port instead of 8080).
#[tokio::test]
async fn readme_local_proxyfile_validates_and_serves() {
    bounded(secs(30), "test", async {
        let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("Proxyfile.local");
        let text = std::fs::read_to_string(&local).expect("Proxyfile.local exists");
        assert!(
            text.contains("127.0.0.1:8080"),
            "README promises http://127.0.0.1:8080"
        );
        let (code, _, _) = run_cli(&["validate", "--config", path(&local)], None);
        assert_eq!(code, 0);
        let dir = TempDir::new("local");
        let file = dir.write("Proxyfile", &text.replace("127.0.0.1:8080", "127.0.0.1:0"));
        let bellhop = Bellhop::run_config(&file, &[], 1).await;
        let r = get(bellhop.addr(), &bellhop.addr().to_string(), "/").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().contains("bellhop"), "{}", r.text());
    })
    .await
}
