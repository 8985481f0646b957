//! Bulk membership (SPEC §7): batches of up to 1,000 entries, validated
//! whole before anything is written; every error names its entry.

use std::collections::HashMap;
use std::hash::Hash;

use uuid::Uuid;

use super::types::{Email, parse_id};
use super::{Error, ErrorKind, Result};

/// The most entries one membership batch holds.
pub const MAX_MEMBER_BATCH: usize = 1_000;

/// Re-labels an error raised for a field of entry `index`: the field becomes
/// `entries[<index>].<field>` and the message says which entry.
pub fn at_entry(index: usize, mut e: Error) -> Error {
    for (key, value) in e.metadata.iter_mut() {
        if *key == "field" {
            *value = format!("entries[{index}].{value}");
        }
    }
    e.message = format!("entries[{index}]: {}", e.message);
    e
}

fn check_size(len: usize) -> Result<()> {
    if len == 0 {
        return Err(Error::missing(
            "entries",
            "entries is required: at least one entry",
        ));
    }
    if len > MAX_MEMBER_BATCH {
        return Err(Error::invalid(
            "BATCH_TOO_LARGE",
            "entries",
            format!("a batch holds at most {MAX_MEMBER_BATCH} entries, got {len}"),
        ));
    }
    Ok(())
}

fn no_duplicates<K: Hash + Eq>(keys: &[K], field: &str, shown: impl Fn(&K) -> String) -> Result<()> {
    let mut seen = HashMap::with_capacity(keys.len());
    for (i, key) in keys.iter().enumerate() {
        if let Some(first) = seen.insert(key, i) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "DUPLICATE_ENTRY",
                format!("entries[{i}].{field} repeats entries[{first}]"),
            )
            .with("field", format!("entries[{i}].{field}"))
            .with("value", shown(key)));
        }
    }
    Ok(())
}

/// Entries to add: each email and role parsed with `role`, no email twice.
pub fn additions<R>(
    raw: &[(String, String)],
    role: impl Fn(&'static str, &str) -> Result<R>,
) -> Result<Vec<(Email, R)>> {
    check_size(raw.len())?;
    let parsed = raw
        .iter()
        .enumerate()
        .map(|(i, (email, r))| {
            let email = Email::parse("user_email", email).map_err(|e| at_entry(i, e))?;
            let r = role("role", r).map_err(|e| at_entry(i, e))?;
            Ok((email, r))
        })
        .collect::<Result<Vec<_>>>()?;
    let emails: Vec<&str> = parsed.iter().map(|(e, _)| e.as_str()).collect();
    no_duplicates(&emails, "user_email", |e| (*e).to_owned())?;
    Ok(parsed)
}

/// Entries to remove: user ids, none twice.
pub fn removals(raw: &[String]) -> Result<Vec<Uuid>> {
    check_size(raw.len())?;
    let ids = raw
        .iter()
        .enumerate()
        .map(|(i, id)| parse_id("user_id", id).map_err(|e| at_entry(i, e)))
        .collect::<Result<Vec<_>>>()?;
    no_duplicates(&ids, "user_id", Uuid::to_string)?;
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::types::OrgRole;

    fn field(e: &Error) -> Option<&str> {
        e.metadata
            .iter()
            .find(|(k, _)| *k == "field")
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn additions_are_validated_whole_and_name_the_entry() {
        let ok = additions(
            &[
                ("A@x.org".into(), "admin".into()),
                ("b@x.org".into(), "member".into()),
            ],
            OrgRole::parse,
        )
        .expect("valid");
        assert_eq!(ok[0].0.as_str(), "a@x.org");
        let e = additions(
            &[
                ("a@x.org".into(), "admin".into()),
                ("nope".into(), "member".into()),
            ],
            OrgRole::parse,
        )
        .expect_err("bad email");
        assert_eq!(field(&e), Some("entries[1].user_email"));
        let e = additions(&[("a@x.org".into(), "owner".into())], OrgRole::parse).expect_err("bad role");
        assert_eq!(field(&e), Some("entries[0].role"));
        let e = additions(
            &[
                ("a@x.org".into(), "admin".into()),
                ("A@X.org".into(), "member".into()),
            ],
            OrgRole::parse,
        )
        .expect_err("duplicate");
        assert_eq!(e.reason, "DUPLICATE_ENTRY");
        assert_eq!(field(&e), Some("entries[1].user_email"));
        assert_eq!(
            additions(&[], OrgRole::parse).expect_err("empty").reason,
            "MISSING_FIELD"
        );
        let many: Vec<(String, String)> = (0..1001)
            .map(|i| (format!("u{i}@x.org"), "member".into()))
            .collect();
        assert_eq!(
            additions(&many, OrgRole::parse).expect_err("too many").reason,
            "BATCH_TOO_LARGE"
        );
        assert!(additions(&many[..1000], OrgRole::parse).is_ok());
    }

    #[test]
    fn removals_are_ids_without_repeats() {
        let a = Uuid::now_v7().to_string();
        assert_eq!(removals(std::slice::from_ref(&a)).expect("valid").len(), 1);
        let e = removals(&[a.clone(), "x".into()]).expect_err("bad id");
        assert_eq!(field(&e), Some("entries[1].user_id"));
        let e = removals(&[a.clone(), a]).expect_err("duplicate");
        assert_eq!(e.reason, "DUPLICATE_ENTRY");
    }
}
