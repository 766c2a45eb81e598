//! `format`: canonical layout, comments kept, idempotent, meaning unchanged.

use super::forms::{design_example, PROXYFILE_EXAMPLE};
use super::parse_ok;
use crate::config::format;

fn fmt(src: &str) -> String {
    match format(src, "Proxyfile") {
        Ok(out) => out,
        Err(e) => panic!("format failed:\n{}", e.render()),
    }
}

/// Formatting twice changes nothing, and the result means the same as the input.
pub(super) fn check_stable(src: &str) -> String {
    let once = fmt(src);
    let twice = fmt(&once);
    assert_eq!(once, twice, "not idempotent; first pass:\n{once}");
    assert_eq!(parse_ok(src), parse_ok(&once), "meaning changed:\n{once}");
    once
}

/// Every comment of `src` (by its text) is in `out`.
fn assert_comments_kept(src: &str, out: &str) {
    for line in src.lines() {
        if let Some(i) = line.find("//") {
            // Skip `//` inside quoted URLs.
            if line[..i].matches('"').count() % 2 == 0 {
                let comment = line[i..].trim_end();
                assert!(out.contains(comment), "lost {comment:?} in:\n{out}");
            }
        }
    }
}

const MESSY: &str = r#"

// Top comment
options {   // after the brace
  email    "ops@example.com"   // the contact
      /* block */ http-port 80
}



app.example.com   www.app.example.com{
        proxy localhost:8000 {
   idle-timeout "24h" // long-lived sockets
        }
    route "/api/*" {proxy 3000}   // api

    /-route "/old" { proxy 1 }
    rate-limit "20/s"   burst = 40
    // last inside
}
localhost { tls internal  ;  proxy 8000 }
a.example.com { proxy /* inline */ 8000 }
// final comment


"#;

const MESSY_FORMATTED: &str = r#"// Top comment
options {                   // after the brace
    email "ops@example.com" // the contact
    /* block */ http-port 80
}

app.example.com www.app.example.com {
    proxy localhost:8000 {
        idle-timeout "24h" // long-lived sockets
    }
    route "/api/*" { proxy 3000 } // api

    /-route "/old" { proxy 1 }
    rate-limit "20/s" burst=40
    // last inside
}
localhost { tls internal; proxy 8000 }
a.example.com { proxy /* inline */ 8000 }
// final comment
"#;

#[test]
fn messy_input_gets_the_canonical_layout() {
    let out = check_stable(MESSY);
    assert_eq!(out, MESSY_FORMATTED);
    assert_comments_kept(MESSY, &out);
}

#[test]
fn design_example_is_stable_and_keeps_comments() {
    let out = check_stable(design_example());
    assert_comments_kept(design_example(), &out);
    // One-line blocks stay on one line.
    for one_line in [
        "localhost { tls internal; proxy 8000 } ",
        "    route \"/api/*\" { proxy 3000 } ",
    ] {
        assert!(out.lines().any(|l| l.starts_with(one_line)), "{out}");
    }
}

#[test]
fn proxyfile_example_is_already_formatted() {
    assert_eq!(check_stable(PROXYFILE_EXAMPLE), PROXYFILE_EXAMPLE);
}

#[test]
fn long_one_line_blocks_open_up() {
    let long = format!(
        "a.example.com {{ respond \"{}\"; rate-limit \"1/s\" }}\n",
        "x".repeat(90)
    );
    let out = check_stable(&long);
    assert_eq!(
        out,
        format!(
            "a.example.com {{\n    respond \"{}\"\n    rate-limit \"1/s\"\n}}\n",
            "x".repeat(90)
        )
    );
}

#[test]
fn nested_one_line_blocks_and_continuations() {
    let src = "a.example.com { proxy 1 { idle-timeout \"1h\" } }\nb.example.com {\n    proxy 1 \\\n        2 \\ // second backend\n        3\n}\n";
    let out = check_stable(src);
    assert_eq!(
        out,
        "a.example.com { proxy 1 { idle-timeout \"1h\" } }\nb.example.com {\n    proxy 1 2 \\ // second backend\n        3\n}\n"
    );
}

#[test]
fn crlf_tabs_and_raw_strings() {
    let src = "a.example.com {\r\n\trespond #\"say \"hi\"\"# status=200\r\n}\r\n";
    let out = check_stable(src);
    assert_eq!(
        out,
        "a.example.com {\n    respond #\"say \"hi\"\"# status=200\n}\n"
    );
}

#[test]
fn multiline_strings_are_kept_verbatim() {
    let src = "a.example.com {\n  respond \"\"\"\n    line one\n    line two\n    \"\"\"\n}\n";
    let out = check_stable(src);
    assert_eq!(
        out,
        "a.example.com {\n    respond \"\"\"\n    line one\n    line two\n    \"\"\"\n}\n"
    );
}

#[test]
fn invalid_files_are_not_formatted() {
    let err = format("a.example.com { proxy 127.0.0.1:8000 }", "Proxyfile").unwrap_err();
    assert!(err.render().contains("\"127.0.0.1:8000\""));
    let err = format("a.example.com { prxy 8000 }", "Proxyfile").unwrap_err();
    assert!(err.render().contains("did you mean `proxy`?"));
}

#[test]
fn slashdash_block_comments_and_semicolons() {
    let src = "a.example.com /* also */ b.example.com { proxy 1 /-2 3; /-rate-limit \"1/s\" }\nc.example.com {\n    proxy 1 /-{ idle-timeout \"1h\" } { idle-timeout \"2h\" }; // after semi\n    /* own line block */\n    /*\n     * multi-line block\n     */\n    encode gzip;   rate-limit \"5/s\"\n}\n/-d.example.com {\n  proxy 5\n}\n/-\nb.example.org { proxy 6 }\n\"e.example.com\" { respond \"héllo wörld ✓\" ; }\n";
    let expected = "a.example.com /* also */ b.example.com { proxy 1 /-2 3; /-rate-limit \"1/s\" }\nc.example.com {\n    proxy 1 /-{ idle-timeout \"1h\" } { idle-timeout \"2h\" } // after semi\n    /* own line block */\n    /*\n     * multi-line block\n     */\n    encode gzip\n    rate-limit \"5/s\"\n}\n/-d.example.com {\n    proxy 5\n}\n/-b.example.org { proxy 6 }\n\"e.example.com\" { respond \"héllo wörld ✓\" }\n";
    assert_eq!(check_stable(src), expected);
}

#[test]
fn trailing_comments_align_per_run() {
    let src = "a.example.com {\n    proxy 1 // one\n    rate-limit \"10/s\" burst=20 // two\n\n    encode gzip // alone\n}\n";
    let expected = "a.example.com {\n    proxy 1                    // one\n    rate-limit \"10/s\" burst=20 // two\n\n    encode gzip // alone\n}\n";
    assert_eq!(check_stable(src), expected);
}

#[test]
fn slashdash_comment_lines_go_above_the_node() {
    let src = "options { /- // why\n    email \"a@example.com\"\n}\na.example.com { proxy 1 }\n";
    let expected =
        "options {\n    // why\n    /-email \"a@example.com\"\n}\na.example.com { proxy 1 }\n";
    assert_eq!(check_stable(src), expected);
}

#[test]
fn route_properties_survive_formatting() {
    let out = check_stable(
        "x.example.com {\n  route \"/old/*\"   rewrite=\"/new/*\" {proxy 3000}\n  route \"/api/*\" strip-prefix=#true { proxy 3001 }\n  proxy 8000\n}\n",
    );
    assert!(
        out.contains("route \"/old/*\" rewrite=\"/new/*\" { proxy 3000 }"),
        "{out}"
    );
}
