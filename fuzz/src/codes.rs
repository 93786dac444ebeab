//! The error codes docs/ERRORS.md documents, per interface, with their HTTP
//! status. Parsed from the document at compile time: the document is the
//! contract, so a code the services answer with but the document lacks is a
//! finding, not something to add to a list here.

use std::collections::HashMap;

const ERRORS_MD: &str = include_str!("../../docs/ERRORS.md");

/// One section of docs/ERRORS.md: every code of its table, each with the
/// statuses it is documented with (empty when the column says `-`, as for
/// WebSocket `error` frames).
pub struct Documented {
    statuses_by_code: HashMap<&'static str, Vec<u16>>,
}

impl Documented {
    /// The table under the `## <heading>` line, for example "Persistence API"
    /// or "Engine (WebSocket `error` frames and HTTP answers)" (a prefix is
    /// enough: "Engine").
    pub fn section(heading: &str) -> Self {
        let mut statuses_by_code = HashMap::new();
        let mut inside = false;
        for line in ERRORS_MD.lines() {
            if let Some(title) = line.strip_prefix("## ") {
                inside = title.starts_with(heading);
                continue;
            }
            if !inside || !line.starts_with("| `") {
                continue;
            }
            let mut cells = line.split('|').skip(1);
            let (Some(codes), Some(statuses)) = (cells.next(), cells.next()) else {
                continue;
            };
            let statuses: Vec<u16> = statuses
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|digits| digits.parse().ok())
                .collect();
            for code in codes.split('`').skip(1).step_by(2) {
                statuses_by_code.insert(code, statuses.clone());
            }
        }
        assert!(
            !statuses_by_code.is_empty(),
            "docs/ERRORS.md has no table under a heading starting with {heading:?}"
        );
        Self { statuses_by_code }
    }

    pub fn has(&self, code: &str) -> bool {
        self.statuses_by_code.contains_key(code)
    }

    /// Whether `code` is documented with `status` (a code documented with no
    /// status, a frame-only one, matches none).
    pub fn has_with_status(&self, code: &str, status: u16) -> bool {
        self.statuses_by_code
            .get(code)
            .is_some_and(|statuses| statuses.contains(&status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_tables() {
        let api = Documented::section("Persistence API");
        assert!(api.has_with_status("malformed_json", 400));
        assert!(api.has_with_status("token_revoked", 401));
        assert!(api.has_with_status("unavailable", 503));
        assert!(!api.has("malformed_frame"));
        let engine = Documented::section("Engine");
        assert!(engine.has("malformed_frame"));
        assert!(engine.has_with_status("body_too_large", 413));
        assert!(engine.has_with_status("body_too_large", 422));
    }
}
