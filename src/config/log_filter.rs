//! Checking a log filter (`log_level`, `RUST_LOG`) before it is used. tracing's `EnvFilter`
//! takes a bare word that is not a level as a target name, so `warning` or `verbose` would
//! silently switch every line off, the access log included. Here a bare word must be a level;
//! directives with a target (`rangeserve=debug`, `info,hyper=warn`) are checked by `EnvFilter`.

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Words people write for a level, and the level they mean.
const SYNONYMS: [(&str, &str); 10] = [
    ("warning", "warn"),
    ("err", "error"),
    ("fatal", "error"),
    ("critical", "error"),
    ("information", "info"),
    ("notice", "info"),
    ("verbose", "debug"),
    ("all", "trace"),
    ("none", "off"),
    ("quiet", "off"),
];

/// `filter` as given, or why it is refused (one line, with the nearest level for a bare word
/// that is not one).
pub fn check(filter: &str) -> Result<(), String> {
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let bare = !directive.contains(['=', '[', ':']);
        if bare && !is_level(directive) {
            return Err(format!(
                "{directive:?} is not a level ({}); did you mean {:?}?",
                LEVELS.join(", "),
                nearest(directive)
            ));
        }
        if let Some((_, level)) = directive.rsplit_once('=') {
            if !is_level(level.trim()) {
                return Err(format!(
                    "in {directive:?}: {level:?} is not a level ({}); did you mean {:?}?",
                    LEVELS.join(", "),
                    nearest(level.trim())
                ));
            }
        }
    }
    tracing_subscriber::EnvFilter::try_new(filter)
        .map(|_| ())
        .map_err(|e| format!("{filter:?} is not a filter: {e}"))
}

fn is_level(word: &str) -> bool {
    LEVELS.iter().any(|l| l.eq_ignore_ascii_case(word))
        || matches!(word, "0" | "1" | "2" | "3" | "4" | "5")
}

/// The level `word` most likely meant: a known synonym, else the level fewest edits away.
fn nearest(word: &str) -> &'static str {
    let lower = word.to_ascii_lowercase();
    if let Some((_, level)) = SYNONYMS.iter().find(|(w, _)| *w == lower) {
        return level;
    }
    LEVELS
        .iter()
        .copied()
        .min_by_key(|l| edit_distance(&lower, l))
        .unwrap_or("info")
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(cur)
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_directives_pass() {
        for ok in [
            "info",
            "WARN",
            "off",
            "info,rangeserve=debug",
            "rangeserve::access=info",
            "warn,hyper=off",
            "rangeserve[span]=trace",
            "",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn bare_words_that_are_not_levels_are_refused_with_the_nearest() {
        for (bad, meant) in [
            ("warning", "warn"),
            ("verbose", "debug"),
            ("inf", "info"),
            ("debgu", "debug"),
        ] {
            let e = check(bad).unwrap_err();
            assert!(e.contains(&format!("did you mean {meant:?}")), "{bad}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
        assert!(check("rangeserve=loud").unwrap_err().contains("\"loud\""));
        // A bare target name would switch every other line off: refused too.
        assert!(check("info,rangeserve")
            .unwrap_err()
            .contains("\"rangeserve\" is not a level"));
    }
}
