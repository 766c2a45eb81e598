//! A small KDL v2 tokenizer that keeps every byte of the source.
//!
//! The `kdl` crate gives us a tree, but two jobs need the raw token stream:
//! explaining syntax errors (which bare word did KDL choke on?) and formatting
//! (where exactly are the comments?). The lexer never fails: on broken input it
//! still returns tokens covering the whole text, so the error explainer can look
//! at what the user wrote.

use std::ops::Range;

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A value or name: bare word, number, keyword (`#true`), quoted, raw or
    /// multi-line string.
    Word,
    /// `(type)` annotation in front of a name or value.
    Annotation,
    /// `=` between a property key and its value.
    Equals,
    /// `{`
    Open,
    /// `}`
    Close,
    /// `;`
    Semicolon,
    /// One newline (CRLF counts once).
    Newline,
    /// `// …` up to, not including, the newline.
    LineComment,
    /// `/* … */`, nested; `terminated` is false if the file ends inside it.
    BlockComment {
        /// Whether the closing `*/` was found.
        terminated: bool,
    },
    /// `/-`: comments out the next node, entry or children block.
    Slashdash,
    /// `\` line continuation, with its optional comment, through the newline.
    Escline,
    /// A character that can't start any token (e.g. a stray `)`).
    Stray,
}

/// A token and where it is in the source (byte offsets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    /// What it is.
    pub kind: Kind,
    /// Byte range in the source.
    pub span: Range<usize>,
}

/// How to treat `/` inside a bare word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slashes {
    /// As KDL does: `//` and `/*` start a comment even in the middle of a word.
    Kdl,
    /// As the user probably meant: `https://x`, `/api/*` and `unix//a.sock` are one
    /// word each. Used only to explain why KDL rejected a file.
    Glued,
}

/// Characters that may not appear in a bare word (KDL v2 `identifier-char`).
fn is_word_char(c: char) -> bool {
    !(is_space(c) || is_newline_start(c) || is_disallowed(c) || "\\/(){};[]\"#=".contains(c))
}

/// KDL v2 `unicode-space`.
pub(crate) fn is_space(c: char) -> bool {
    matches!(
        c,
        '\u{0009}' | '\u{0020}' | '\u{00A0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}'
    )
}

/// First character of a KDL v2 `newline`.
pub(crate) fn is_newline_start(c: char) -> bool {
    matches!(
        c,
        '\r' | '\n' | '\u{0085}' | '\u{000B}' | '\u{000C}' | '\u{2028}' | '\u{2029}'
    )
}

/// KDL v2 disallowed literal code points (controls, bidi overrides, BOM).
fn is_disallowed(c: char) -> bool {
    matches!(c,
        '\u{0000}'..='\u{0008}'
        | '\u{000E}'..='\u{001F}'
        | '\u{200E}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2066}'..='\u{2069}'
        | '\u{FEFF}')
}

/// Splits `source` into tokens; whitespace between tokens is skipped.
pub(crate) fn tokenize(source: &str, slashes: Slashes) -> Vec<Token> {
    let mut lexer = Lexer {
        src: source,
        pos: 0,
        slashes,
        tokens: Vec::new(),
    };
    lexer.run();
    lexer.tokens
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    slashes: Slashes,
    tokens: Vec<Token>,
}

impl Lexer<'_> {
    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek2(&self) -> Option<char> {
        self.rest().chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn push(&mut self, kind: Kind, start: usize) {
        self.tokens.push(Token {
            kind,
            span: start..self.pos,
        });
    }

    fn run(&mut self) {
        while let Some(c) = self.peek() {
            let start = self.pos;
            match c {
                c if is_space(c) || c == '\u{FEFF}' => {
                    self.bump();
                }
                c if is_newline_start(c) => {
                    self.newline();
                    self.push(Kind::Newline, start);
                }
                '/' if self.peek2() == Some('/') => {
                    self.line_comment();
                    self.push(Kind::LineComment, start);
                }
                '/' if self.peek2() == Some('*') => {
                    let terminated = self.block_comment();
                    self.push(Kind::BlockComment { terminated }, start);
                }
                '/' if self.peek2() == Some('-') => {
                    self.pos += 2;
                    self.push(Kind::Slashdash, start);
                }
                '\\' => {
                    self.escline();
                    self.push(Kind::Escline, start);
                }
                '{' | '}' | ';' | '=' => {
                    self.bump();
                    let kind = match c {
                        '{' => Kind::Open,
                        '}' => Kind::Close,
                        ';' => Kind::Semicolon,
                        _ => Kind::Equals,
                    };
                    self.push(kind, start);
                }
                '(' => {
                    self.annotation();
                    self.push(Kind::Annotation, start);
                }
                '"' => {
                    self.quoted(0);
                    self.push(Kind::Word, start);
                }
                '#' => {
                    let hashes = self.rest().chars().take_while(|&c| c == '#').count();
                    if self.rest()[hashes..].starts_with('"') {
                        self.pos += hashes;
                        self.quoted(hashes);
                    } else {
                        // `#true`, `#null`, `#-inf`, … (or junk, reported by kdl).
                        self.bump();
                        while self.peek().is_some_and(|c| self.continues_word(c)) {
                            self.bump();
                        }
                    }
                    self.push(Kind::Word, start);
                }
                c if self.continues_word(c) => {
                    self.word();
                    self.push(Kind::Word, start);
                }
                _ => {
                    self.bump();
                    self.push(Kind::Stray, start);
                }
            }
        }
    }

    /// Consumes one newline; CRLF is a single newline.
    fn newline(&mut self) {
        if self.rest().starts_with("\r\n") {
            self.pos += 2;
        } else {
            self.bump();
        }
    }

    fn line_comment(&mut self) {
        while let Some(c) = self.peek() {
            if is_newline_start(c) {
                break;
            }
            self.bump();
        }
    }

    /// Consumes a nested `/* … */`; returns whether it was closed.
    fn block_comment(&mut self) -> bool {
        self.pos += 2;
        let mut depth = 1usize;
        while depth > 0 {
            if self.rest().starts_with("/*") {
                self.pos += 2;
                depth += 1;
            } else if self.rest().starts_with("*/") {
                self.pos += 2;
                depth -= 1;
            } else if self.bump().is_none() {
                return false;
            }
        }
        true
    }

    /// `\`, spaces, an optional line comment and the newline.
    fn escline(&mut self) {
        self.bump();
        while self.peek().is_some_and(is_space) {
            self.bump();
        }
        if self.rest().starts_with("//") {
            self.line_comment();
        }
        if self.peek().is_some_and(is_newline_start) {
            self.newline();
        }
    }

    /// `(type)`, skipping over a quoted type name.
    fn annotation(&mut self) {
        self.bump();
        while let Some(c) = self.peek() {
            match c {
                ')' => {
                    self.bump();
                    return;
                }
                '"' => self.quoted(0),
                c if is_newline_start(c) || c == '{' || c == '}' || c == ';' => return,
                _ => {
                    self.bump();
                }
            }
        }
    }

    /// A string starting at `"` (after `hashes` leading `#` for raw strings),
    /// single-line or `"""` multi-line. Stops at the end of input if unterminated.
    fn quoted(&mut self, hashes: usize) {
        let multi = self.rest().starts_with("\"\"\"");
        let open = if multi { 3 } else { 1 };
        self.pos += open;
        let mut close = String::from(if multi { "\"\"\"" } else { "\"" });
        close.extend(std::iter::repeat_n('#', hashes));
        loop {
            if self.rest().starts_with(close.as_str()) {
                self.pos += close.len();
                return;
            }
            match self.bump() {
                None => return,
                // Escapes only exist in non-raw strings; skip the escaped char so
                // `\"` does not end the string.
                Some('\\') if hashes == 0 => {
                    self.bump();
                }
                // A single-line quoted string can't span lines; stop so one
                // missing quote doesn't swallow the rest of the file.
                Some(c) if !multi && hashes == 0 && is_newline_start(c) => {
                    self.pos -= c.len_utf8();
                    return;
                }
                Some(_) => {}
            }
        }
    }

    /// Whether `c` belongs to a bare word. In [`Slashes::Glued`] mode the
    /// characters users put in unquoted URLs, paths and IPv6 literals count too.
    fn continues_word(&self, c: char) -> bool {
        is_word_char(c) || (self.slashes == Slashes::Glued && "/#[]".contains(c))
    }

    /// A bare word.
    fn word(&mut self) {
        if self.slashes == Slashes::Glued {
            // Always advance, so a character the glued rule rejects can't stall the loop.
            match glued_word_len(self.rest()) {
                0 => {
                    self.bump();
                }
                n => self.pos += n,
            }
            return;
        }
        while self.peek().is_some_and(|c| self.continues_word(c)) {
            self.bump();
        }
    }
}

/// Length of the word at the start of `s` as a user means it when they forget
/// quotes: up to whitespace or a KDL delimiter, but taking `/`, `#`, `[`, `]` and
/// `{uri}`-style placeholders along (`https://example.org{uri}` is one word).
pub(crate) fn glued_word_len(s: &str) -> usize {
    let mut len = 0;
    while let Some(c) = s[len..].chars().next() {
        if c == '{' {
            let placeholder = s[len + 1..].find('}').filter(|&end| {
                end > 0
                    && s[len + 1..len + 1 + end]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
            });
            match placeholder {
                Some(end) => len += end + 2,
                None => break,
            }
        } else if is_word_char(c) || "/#[]".contains(c) {
            len += c.len_utf8();
        } else {
            break;
        }
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds_and_text(src: &str, slashes: Slashes) -> Vec<(Kind, &str)> {
        tokenize(src, slashes)
            .into_iter()
            .map(|t| (t.kind, &src[t.span]))
            .collect()
    }

    #[test]
    fn tokens_cover_words_strings_comments() {
        let src = "a \"b\\\"c\" #\"raw\"# k=1 /* x /* y */ */ // end\n}";
        assert_eq!(
            kinds_and_text(src, Slashes::Kdl),
            vec![
                (Kind::Word, "a"),
                (Kind::Word, "\"b\\\"c\""),
                (Kind::Word, "#\"raw\"#"),
                (Kind::Word, "k"),
                (Kind::Equals, "="),
                (Kind::Word, "1"),
                (Kind::BlockComment { terminated: true }, "/* x /* y */ */"),
                (Kind::LineComment, "// end"),
                (Kind::Newline, "\n"),
                (Kind::Close, "}"),
            ]
        );
    }

    #[test]
    fn slashes_split_or_glue() {
        let src = "redirect https://x.example";
        assert_eq!(
            kinds_and_text(src, Slashes::Kdl),
            vec![
                (Kind::Word, "redirect"),
                (Kind::Word, "https:"),
                (Kind::LineComment, "//x.example"),
            ]
        );
        assert_eq!(
            kinds_and_text(src, Slashes::Glued),
            vec![(Kind::Word, "redirect"), (Kind::Word, "https://x.example")]
        );
    }

    #[test]
    fn glued_words_take_placeholders_but_not_blocks() {
        assert_eq!(
            glued_word_len("https://x.example{uri} }"),
            "https://x.example{uri}".len()
        );
        assert_eq!(glued_word_len("/api/*{ proxy 1 }"), "/api/*".len());
        assert_eq!(glued_word_len("[::1]:80;"), "[::1]:80".len());
    }

    #[test]
    fn multiline_and_unterminated_strings() {
        let src = "a \"\"\"\n  x\n  \"\"\" b \"open\nc";
        assert_eq!(
            kinds_and_text(src, Slashes::Kdl),
            vec![
                (Kind::Word, "a"),
                (Kind::Word, "\"\"\"\n  x\n  \"\"\""),
                (Kind::Word, "b"),
                (Kind::Word, "\"open"),
                (Kind::Newline, "\n"),
                (Kind::Word, "c"),
            ]
        );
    }

    #[test]
    fn crlf_is_one_newline_and_escline_is_one_token() {
        let src = "a \\ // why\r\n  b\r\n";
        assert_eq!(
            kinds_and_text(src, Slashes::Kdl),
            vec![
                (Kind::Word, "a"),
                (Kind::Escline, "\\ // why\r\n"),
                (Kind::Word, "b"),
                (Kind::Newline, "\r\n"),
            ]
        );
    }
}
