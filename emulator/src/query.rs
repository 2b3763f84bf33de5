//! Query strings as serenity writes them: `?&limit=100&before=1`, possibly with a trailing `&`.

/// Parsed `key=value` pairs; empty segments (from `?&` or a trailing `&`) are skipped.
#[derive(Debug, Clone, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: &str) -> Query {
        let pairs = raw
            .split('&')
            .filter(|seg| !seg.is_empty())
            .map(|seg| match seg.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (seg.to_string(), String::new()),
            })
            .collect();
        Query(pairs)
    }

    /// The first value for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serenity_style() {
        let q = Query::parse("&limit=100&before=123&");
        assert_eq!(q.get("limit"), Some("100"));
        assert_eq!(q.get("before"), Some("123"));
        assert_eq!(q.get("after"), None);
        assert_eq!(Query::parse("").get("x"), None);
    }
}
