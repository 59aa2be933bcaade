//! Parsing `SetSetting` requests (`clusterctl set NAME VALUE`): which names exist and which values
//! each takes. Pure, so the accepted spellings are unit-tested in one place.

use tessera_proto::topology::Settings;

use crate::error::SettingError;

/// One validated change to the cluster settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingChange {
    RequireFullCoverage(bool),
    AllowReadsWhenDown(bool),
    /// Milliseconds, > 0.
    NodeTimeoutMs(u64),
}

impl SettingChange {
    /// Parses a setting name (optionally with Redis's `cluster-` prefix, any case) and its value:
    /// `yes`/`no` for the booleans, milliseconds for node-timeout.
    pub fn parse(name: &str, value: &str) -> Result<SettingChange, SettingError> {
        let lower = name.trim().to_ascii_lowercase();
        let key = lower.strip_prefix("cluster-").unwrap_or(&lower);
        match key {
            "require-full-coverage" => yes_no(key, value).map(SettingChange::RequireFullCoverage),
            "allow-reads-when-down" => yes_no(key, value).map(SettingChange::AllowReadsWhenDown),
            "node-timeout" => match value.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Ok(SettingChange::NodeTimeoutMs(ms)),
                _ => Err(SettingError::NotMillis(value.to_string())),
            },
            _ => Err(SettingError::UnknownName(name.to_string())),
        }
    }

    /// The settings with this change applied.
    pub fn apply(self, mut settings: Settings) -> Settings {
        match self {
            SettingChange::RequireFullCoverage(on) => settings.require_full_coverage = on,
            SettingChange::AllowReadsWhenDown(on) => settings.allow_reads_when_down = on,
            SettingChange::NodeTimeoutMs(ms) => settings.node_timeout_ms = ms,
        }
        settings
    }
}

fn yes_no(name: &str, value: &str) -> Result<bool, SettingError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(SettingError::NotYesNo {
            name: name.to_string(),
            value: value.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_spellings() {
        let cases = [
            (
                "require-full-coverage",
                "no",
                SettingChange::RequireFullCoverage(false),
            ),
            (
                "require-full-coverage",
                "YES",
                SettingChange::RequireFullCoverage(true),
            ),
            (
                "cluster-require-full-coverage",
                "yes",
                SettingChange::RequireFullCoverage(true),
            ),
            (
                "allow-reads-when-down",
                "yes",
                SettingChange::AllowReadsWhenDown(true),
            ),
            (
                "Allow-Reads-When-Down",
                "no",
                SettingChange::AllowReadsWhenDown(false),
            ),
            ("node-timeout", "5000", SettingChange::NodeTimeoutMs(5000)),
            (
                "cluster-node-timeout",
                "300",
                SettingChange::NodeTimeoutMs(300),
            ),
        ];
        for (name, value, want) in cases {
            assert_eq!(
                SettingChange::parse(name, value),
                Ok(want),
                "{name} {value}"
            );
        }
    }

    #[test]
    fn rejected_spellings() {
        let cases = [
            ("require-full-coverage", "true"),
            ("require-full-coverage", ""),
            ("allow-reads-when-down", "1"),
            ("node-timeout", "0"),
            ("node-timeout", "-5"),
            ("node-timeout", "15s"),
            ("node-timeout", "yes"),
            ("maxmemory", "1"),
            ("", "yes"),
        ];
        for (name, value) in cases {
            assert!(SettingChange::parse(name, value).is_err(), "{name} {value}");
        }
    }

    #[test]
    fn messages_name_the_problem() {
        let err = SettingChange::parse("require-full-coverage", "maybe").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value \"maybe\" for require-full-coverage: want yes or no"
        );
        let err = SettingChange::parse("colour", "red").unwrap_err();
        assert!(err.to_string().starts_with("unknown setting \"colour\""));
    }

    #[test]
    fn apply_changes_one_field() {
        let base = Settings::default();
        let next = SettingChange::NodeTimeoutMs(300).apply(base);
        assert_eq!(next.node_timeout_ms, 300);
        assert_eq!(next.require_full_coverage, base.require_full_coverage);
        let next = SettingChange::RequireFullCoverage(false).apply(base);
        assert!(!next.require_full_coverage);
    }
}
