//! Words and tables for people: sizes in binary units, ages in relative words.

use time::OffsetDateTime;

/// `1536` → `1.5 KiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `plural(1, "part")` → `1 part`, `plural(2, "part")` → `2 parts`.
pub fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// How long ago `then` was, in words: "just now", "5 minutes ago", "2 days ago".
pub fn relative_age(then: OffsetDateTime, now: OffsetDateTime) -> String {
    let secs = (now - then).whole_seconds();
    if secs < 0 {
        return "in the future".into();
    }
    let steps: [(i64, &str); 6] = [
        (60, "second"),
        (60, "minute"),
        (24, "hour"),
        (30, "day"),
        (12, "month"),
        (i64::MAX, "year"),
    ];
    if secs < 10 {
        return "just now".into();
    }
    let mut v = secs;
    for (size, name) in steps {
        if v < size {
            let s = if v == 1 { "" } else { "s" };
            return format!("{v} {name}{s} ago");
        }
        v /= size;
    }
    format!("{v} years ago")
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    #[test]
    fn sizes_and_ages_read_well() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(1 << 30), "1.0 GiB");
        let now = OffsetDateTime::now_utc();
        assert_eq!(relative_age(now, now), "just now");
        assert_eq!(
            relative_age(now - Duration::minutes(1), now),
            "1 minute ago"
        );
        assert_eq!(relative_age(now - Duration::hours(2), now), "2 hours ago");
        assert_eq!(relative_age(now - Duration::days(3), now), "3 days ago");
        assert_eq!(relative_age(now - Duration::days(800), now), "2 years ago");
    }

    #[test]
    fn plurals_follow_the_count() {
        assert_eq!(plural(0, "part"), "0 parts");
        assert_eq!(plural(1, "part"), "1 part");
        assert_eq!(plural(2, "manifest"), "2 manifests");
    }
}
