//! Labels on organizations and spaces (SPEC §7) and the `label=key:value`
//! filters of their lists.

use std::collections::BTreeMap;

use super::{Error, ErrorKind, Result};

/// The most labels one resource carries.
pub const MAX_LABELS: usize = 64;
/// The longest label value, in characters.
pub const MAX_VALUE_CHARS: usize = 256;
/// The most `label` filters one list takes.
pub const MAX_FILTERS: usize = 16;
/// Keys: a lowercase ASCII letter, then up to 62 of `a-z 0-9 _ . -`.
const MAX_KEY_BYTES: usize = 63;

/// A validated set of labels, in key order (so their JSON is canonical).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Labels(BTreeMap<String, String>);

fn invalid(reason: &'static str, field: String, message: String) -> Error {
    Error::new(ErrorKind::InvalidArgument, reason, message).with("field", field)
}

/// Whether `key` matches `^[a-z][a-z0-9_.-]{0,62}$`.
pub fn valid_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_KEY_BYTES
        && bytes[0].is_ascii_lowercase()
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'))
}

fn shown(raw: &str) -> String {
    let mut s: String = raw.chars().filter(|c| !c.is_control()).take(64).collect();
    if raw.chars().count() > 64 {
        s.push('…');
    }
    s
}

fn check_value(field: String, value: &str) -> Result<()> {
    // An empty value would be left out of the protobuf encoding of the map,
    // and Envoy's JSON transcoder (1.40) drops the connection on a map
    // entry without its value: a stored empty value would break every REST
    // reply that shows it. Omit the label instead.
    if value.is_empty() {
        return Err(invalid(
            "INVALID_LABEL_VALUE",
            field.clone(),
            format!("{field} must not be empty; leave the label out instead"),
        ));
    }
    let chars = value.chars().count();
    if chars > MAX_VALUE_CHARS {
        return Err(invalid(
            "INVALID_LABEL_VALUE",
            field.clone(),
            format!("{field} must be at most {MAX_VALUE_CHARS} characters, got {chars}"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(
            "INVALID_TEXT",
            field.clone(),
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(())
}

impl Labels {
    /// Validates labels as a request carries them; `field` names the map.
    pub fn parse(field: &'static str, raw: &BTreeMap<String, String>) -> Result<Self> {
        if raw.len() > MAX_LABELS {
            return Err(invalid(
                "TOO_MANY_LABELS",
                field.to_owned(),
                format!(
                    "{field} holds {} labels; at most {MAX_LABELS} are allowed",
                    raw.len()
                ),
            ));
        }
        // Checked in key order, so the first error is always the same one.
        for (key, value) in raw {
            if !valid_key(key) {
                return Err(invalid(
                    "INVALID_LABEL_KEY",
                    field.to_owned(),
                    format!(
                        "label key '{}' must start with a lowercase letter and hold at most 63 of a-z, 0-9, '_', '.', '-'",
                        shown(key)
                    ),
                )
                .with("key", shown(key)));
            }
            check_value(format!("{field}.{key}"), value)?;
        }
        Ok(Self(raw.clone()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.0.clone()
    }

    /// The canonical JSON object stored with the resource.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| "{}".to_owned())
    }

    /// Reads the stored JSON back.
    pub fn from_json(raw: &str) -> std::result::Result<Self, serde_json::Error> {
        Ok(Self(serde_json::from_str(raw)?))
    }
}

/// `label=key:value` filters: every one must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelFilter(Vec<(String, String)>);

impl LabelFilter {
    pub fn parse(field: &'static str, raw: &[String]) -> Result<Self> {
        if raw.len() > MAX_FILTERS {
            return Err(invalid(
                "TOO_MANY_LABEL_FILTERS",
                field.to_owned(),
                format!(
                    "at most {MAX_FILTERS} {field} filters are allowed, got {}",
                    raw.len()
                ),
            ));
        }
        let mut filters = Vec::with_capacity(raw.len());
        for (i, one) in raw.iter().enumerate() {
            let Some((key, value)) = one.split_once(':') else {
                return Err(invalid(
                    "INVALID_LABEL_FILTER",
                    format!("{field}[{i}]"),
                    format!("{field} filter '{}' must be key:value", shown(one)),
                ));
            };
            if !valid_key(key) {
                return Err(invalid(
                    "INVALID_LABEL_FILTER",
                    format!("{field}[{i}]"),
                    format!("{field} filter '{}' names an invalid label key", shown(one)),
                ));
            }
            check_value(format!("{field}[{i}]"), value)?;
            filters.push((key.to_owned(), value.to_owned()));
        }
        Ok(Self(filters))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn keys_follow_the_pattern() {
        for good in [
            "a",
            "env",
            "team.name",
            "cost-center_2",
            &format!("a{}", "b".repeat(62)),
        ] {
            assert!(valid_key(good), "{good}");
        }
        for bad in [
            "",
            "Env",
            "1env",
            "_x",
            "env:prod",
            "é",
            "a b",
            &format!("a{}", "b".repeat(63)),
        ] {
            assert!(!valid_key(bad), "{bad}");
        }
    }

    #[test]
    fn labels_are_validated_and_canonical() {
        let labels = Labels::parse("labels", &map(&[("tier", "gold"), ("env", "prod")])).expect("valid");
        assert_eq!(labels.to_json(), r#"{"env":"prod","tier":"gold"}"#);
        assert_eq!(Labels::from_json(&labels.to_json()).expect("json"), labels);

        let e = Labels::parse("labels", &map(&[("Env", "x")])).expect_err("bad key");
        assert_eq!(e.reason, "INVALID_LABEL_KEY");
        let e = Labels::parse("labels", &map(&[("env", &"x".repeat(257))])).expect_err("long value");
        assert_eq!(e.reason, "INVALID_LABEL_VALUE");
        assert!(e.metadata.contains(&("field", "labels.env".to_owned())));
        assert!(Labels::parse("labels", &map(&[("env", &"é".repeat(256))])).is_ok());
        let e = Labels::parse("labels", &map(&[("env", "a\0b")])).expect_err("NUL");
        assert_eq!(e.reason, "INVALID_TEXT");
        let many: BTreeMap<String, String> = (0..65).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        assert_eq!(
            Labels::parse("labels", &many).expect_err("65").reason,
            "TOO_MANY_LABELS"
        );
        let enough: BTreeMap<String, String> = (0..64).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        assert!(Labels::parse("labels", &enough).is_ok());
    }

    #[test]
    fn filters_split_at_the_first_colon() {
        let f = LabelFilter::parse("label", &["env:prod".into(), "url:http://x".into()]).expect("valid");
        assert_eq!(
            f.iter().collect::<Vec<_>>(),
            vec![("env", "prod"), ("url", "http://x")]
        );
        for bad in ["env", ":prod", "Env:prod", "e nv:x"] {
            let e = LabelFilter::parse("label", &[bad.into()]).expect_err(bad);
            assert_eq!(e.reason, "INVALID_LABEL_FILTER", "{bad}");
        }
        assert_eq!(
            LabelFilter::parse("label", &["empty:".into()])
                .expect_err("empty value")
                .reason,
            "INVALID_LABEL_VALUE"
        );
        assert_eq!(
            Labels::parse("labels", &map(&[("env", "")]))
                .expect_err("empty value")
                .reason,
            "INVALID_LABEL_VALUE"
        );
        for bad in ["env", ":prod"] {
            let e = LabelFilter::parse("label", &[bad.into()]).expect_err(bad);
            assert_eq!(e.reason, "INVALID_LABEL_FILTER", "{bad}");
            assert!(e.metadata.contains(&("field", "label[0]".to_owned())));
        }
        let many: Vec<String> = (0..17).map(|i| format!("k{i}:v")).collect();
        assert_eq!(
            LabelFilter::parse("label", &many).expect_err("17").reason,
            "TOO_MANY_LABEL_FILTERS"
        );
    }
}
