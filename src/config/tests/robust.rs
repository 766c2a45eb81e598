//! No input makes the parser or formatter panic, and every file that parses
//! formats stably. Mutations of a small file that uses every token kind stand
//! in for a fuzzer.

use crate::config::{format, parse};

/// Small, so the many mutated copies parse quickly in debug builds.
const BASE: &str = r##"options { http-port 8080; admin 2019 } // c
a.example.com "http://:81" {
    /* b */ proxy 1 "[::1]:2" { idle-timeout "1h" }
    route "/x/*" { respond #"r"# status=201 }
    /-encode gzip
}
"##;

/// Characters that matter to KDL's grammar or to our own scanning.
const INSERTS: &[&str] = &[
    "\"", "/", "//", "/*", "/-", "{", "}", ";", "#", "\\", "\n", "=", "é", "*", "1", "[",
];

fn exercise(src: &str, render: bool) {
    match parse(src, "Proxyfile") {
        Ok(config) => {
            let out = match format(src, "Proxyfile") {
                Ok(out) => out,
                Err(e) => panic!("valid file did not format:\n{src}\n{}", e.render()),
            };
            assert_eq!(parse(&out, "Proxyfile").ok(), Some(config), "{src}");
            assert_eq!(format(&out, "Proxyfile").ok(), Some(out.clone()), "{src}");
        }
        // Rendering is slow in debug builds, so only a sample is rendered.
        Err(e) if render => assert!(e.render().contains('×'), "{src}"),
        Err(e) => assert!(!e.to_string().is_empty(), "{src}"),
    }
}

#[test]
fn base_is_valid() {
    assert!(parse(BASE, "Proxyfile").is_ok());
}

#[test]
fn mutated_files_never_panic() {
    let boundaries: Vec<usize> = (0..=BASE.len())
        .filter(|&i| BASE.is_char_boundary(i))
        .collect();
    let mut case = 0usize;
    for (n, &at) in boundaries.iter().enumerate() {
        // Each position gets a few of the inserts, rotating, and a deletion.
        for insert in INSERTS.iter().cycle().skip(n % INSERTS.len()).take(2) {
            case += 1;
            exercise(
                &format!("{}{insert}{}", &BASE[..at], &BASE[at..]),
                case.is_multiple_of(16),
            );
        }
        if let Some(&next) = boundaries.get(n + 1) {
            exercise(&format!("{}{}", &BASE[..at], &BASE[next..]), false);
        }
    }
}
