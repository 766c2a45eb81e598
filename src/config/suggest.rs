//! "Did you mean …?" for misspelled directive, option and property names.

/// The candidate closest to `word`, if it is close enough to be a likely typo.
///
/// "Close enough" is an edit distance of at most a third of the word's length
/// (at least 1), the same rule rustc uses; `_` and `-` count as the same letter
/// because `idle_timeout` for `idle-timeout` is the most common slip.
pub(crate) fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let word = normalize(word);
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|&c| (edit_distance(&word, &normalize(c)), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

fn normalize(word: &str) -> String {
    word.to_ascii_lowercase().replace('_', "-")
}

/// Optimal string alignment distance: insertions, deletions, substitutions and
/// swaps of two neighbouring letters each cost 1.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rolling rows: two back (for swaps), previous and current.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(before[j - 2] + 1);
            }
            cur[j] = best;
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("proxy", "proxy"), 0);
        assert_eq!(edit_distance("prxoy", "proxy"), 1);
        assert_eq!(edit_distance("prox", "proxy"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestions() {
        let known = ["idle-timeout", "header-timeout", "connect-timeout"];
        assert_eq!(did_you_mean("idle_timeout", &known), Some("idle-timeout"));
        assert_eq!(did_you_mean("idle-timout", &known), Some("idle-timeout"));
        assert_eq!(
            did_you_mean("Header-Timeout", &known),
            Some("header-timeout")
        );
        assert_eq!(did_you_mean("timeout", &known), None);
        assert_eq!(did_you_mean("xyz", &known), None);
        assert_eq!(did_you_mean("prxy", &["proxy", "files"]), Some("proxy"));
    }
}
