//! Validated values. Each can only be built valid; handlers never re-check
//! strings.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use super::error::{Error, Result};

pub const SLUG_MIN: usize = 2;
pub const SLUG_MAX: usize = 63;
pub const NAME_MAX: usize = 100;
pub const DESCRIPTION_MAX: usize = 4000;
pub const EMAIL_MAX: usize = 254;

/// `^[a-z0-9]+(-[a-z0-9]+)*$`, 2-63 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Slug(String);

impl Slug {
    /// Parses a slug given by a caller in `field`.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(Error::missing(field, format!("{field} must not be empty")));
        }
        let len = s.chars().count();
        if !(SLUG_MIN..=SLUG_MAX).contains(&len) {
            return Err(Error::invalid(
                "INVALID_SLUG",
                field,
                format!("{field} must be {SLUG_MIN} to {SLUG_MAX} characters long, got {len}"),
            )
            .with("value", s));
        }
        let well_formed = s.split('-').all(|part| {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
        if !well_formed {
            return Err(Error::invalid(
                "INVALID_SLUG",
                field,
                format!(
                    "{field} may hold only lowercase letters a-z, digits and single hyphens between them"
                ),
            )
            .with("value", s));
        }
        Ok(Self(s.to_owned()))
    }

    /// Derives a slug from a name: lowercase, ASCII letters and digits kept,
    /// every other run of characters becomes one `-`, trimmed, cut to 63.
    pub fn derive(field: &'static str, name: &str) -> Result<Self> {
        let mut out = String::with_capacity(name.len().min(SLUG_MAX));
        let mut pending_dash = false;
        for c in name.chars() {
            if c.is_ascii_alphanumeric() {
                if pending_dash && !out.is_empty() {
                    out.push('-');
                }
                pending_dash = false;
                out.push(c.to_ascii_lowercase());
            } else {
                pending_dash = true;
            }
        }
        out.truncate(SLUG_MAX);
        while out.ends_with('-') {
            out.pop();
        }
        if out.is_empty() {
            return Err(Error::invalid(
                "INVALID_SLUG",
                field,
                "cannot derive a slug from the name: it has no ASCII letters or digits; give a slug",
            )
            .with("value", name));
        }
        Self::parse(field, &out)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A display name of an organization or a space: 1-100 characters after
/// trimming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    /// `what` names the thing for messages ("organization", "space").
    pub fn parse(what: &str, field: &'static str, raw: &str) -> Result<Self> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(Error::missing(field, format!("{what} {field} is required")));
        }
        let len = s.chars().count();
        if len > NAME_MAX {
            return Err(Error::invalid(
                "INVALID_NAME",
                field,
                format!("{what} {field} must be at most {NAME_MAX} characters, got {len}"),
            ));
        }
        if s.chars().any(char::is_control) {
            return Err(Error::invalid(
                "INVALID_NAME",
                field,
                format!("{what} {field} must not contain control characters"),
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Free text of at most 4,000 characters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Description(String);

impl Description {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self> {
        let s = raw.trim();
        let len = s.chars().count();
        if len > DESCRIPTION_MAX {
            return Err(Error::invalid(
                "FIELD_TOO_LONG",
                field,
                format!("{field} must be at most {DESCRIPTION_MAX} characters, got {len}"),
            ));
        }
        if s.chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
        {
            return Err(Error::invalid(
                "INVALID_TEXT",
                field,
                format!("{field} must not contain control characters other than newlines and tabs"),
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address, its ASCII letters lowercased so that comparisons
/// ignore their case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(Error::missing(field, format!("{field} is required")));
        }
        let bad = |why: &str| {
            Err(Error::invalid(
                "INVALID_EMAIL",
                field,
                format!("{field} is not a valid email address: {why}"),
            )
            .with("value", s))
        };
        if s.len() > EMAIL_MAX {
            return bad("too long");
        }
        let Some((local, domain)) = s.split_once('@') else {
            return bad("it has no '@'");
        };
        if local.is_empty() || domain.is_empty() || domain.contains('@') {
            return bad("expected local-part@domain");
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return bad("it contains whitespace");
        }
        if domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
            return bad("the domain is malformed");
        }
        // Only ASCII letters fold: Unicode case rules would make addresses
        // an identity provider keeps apart one user (the Kelvin sign "K"
        // lowercases to "k").
        Ok(Self(s.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A slug that names an existing organization in a request path. Anything
/// that is not a well-formed slug names nothing: NOT_FOUND, without asking
/// the database (and without echoing more than a slug's length).
pub fn lookup_slug(raw: &str) -> Result<&str> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(Error::missing("slug", "organization slug is required"));
    }
    if Slug::parse("slug", s).is_err() {
        let shown: String = s.chars().take(SLUG_MAX).collect();
        return Err(Error::org_not_found(&shown));
    }
    Ok(s)
}

/// Parses a UUID given in `field`.
pub fn parse_id(field: &'static str, raw: &str) -> Result<Uuid> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(Error::missing(field, format!("{field} is required")));
    }
    Uuid::parse_str(s)
        .map_err(|_| Error::invalid("INVALID_ID", field, format!("{field} must be a UUID")).with("value", s))
}

/// Declares a closed set of lowercase string values with parsing and display.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $reason:literal, $what:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses a value given by a caller in `field`.
            pub fn parse(field: &'static str, raw: &str) -> Result<Self> {
                let s = raw.trim();
                if s.is_empty() {
                    return Err(Error::missing(field, format!("{field} is required")));
                }
                s.parse().map_err(|_| {
                    let allowed: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                    Error::invalid($reason, field, format!(
                        "{field} must be one of {}, got '{s}'", allowed.join(", ")
                    )).with("value", s)
                })
            }
        }

        impl FromStr for $name {
            type Err = ();
            fn from_str(s: &str) -> std::result::Result<Self, ()> {
                match s { $($text => Ok($name::$variant),)+ _ => Err(()) }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                raw.parse()
                    .map_err(|_| serde::de::Error::custom(format!("unexpected {} '{raw}'", $what)))
            }
        }
    };
}

string_enum!(
    /// A role in an organization.
    OrgRole, "INVALID_ROLE", "organization role", { Admin => "admin", Member => "member" }
);

string_enum!(
    /// A role in a space.
    SpaceRole, "INVALID_ROLE", "space role", { Admin => "admin", Editor => "editor", Viewer => "viewer" }
);

string_enum!(
    /// Who may read a space's content.
    Visibility, "INVALID_VISIBILITY", "visibility", { Organization => "organization", Restricted => "restricted" }
);

string_enum!(
    /// The state of a space's agent.
    AgentStatus, "INVALID_AGENT_STATUS", "agent status", {
        Active => "ACTIVE", Idle => "IDLE", Suspended => "SUSPENDED", Error => "ERROR"
    }
);

string_enum!(
    /// The state of a data contract.
    ContractStatus, "INVALID_STATUS", "contract status", {
        Draft => "draft", Active => "active", Expired => "expired", Deprecated => "deprecated"
    }
);

string_enum!(
    /// The state of an issue.
    IssueStatus, "INVALID_STATUS", "issue status", {
        Open => "open", InProgress => "in_progress", Resolved => "resolved", WontFix => "wont_fix"
    }
);

string_enum!(
    /// How urgent an issue is.
    IssuePriority, "INVALID_PRIORITY", "issue priority", {
        Low => "low", Medium => "medium", High => "high", Critical => "critical"
    }
);

string_enum!(
    /// How bad a failing quality check is.
    Severity, "INVALID_SEVERITY", "severity", { Warning => "warning", Error => "error", Critical => "critical" }
);

string_enum!(
    /// The result of a quality check's last run.
    CheckStatus, "INVALID_STATUS", "check status", {
        Pass => "pass", Fail => "fail", Warning => "warning", Error => "error"
    }
);

/// The agent of a space, validated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Agent {
    pub agent_id: String,
    pub status: AgentStatus,
    pub autonomy_level: i32,
}

impl Agent {
    pub fn parse(agent_id: &str, status: &str, autonomy_level: i32) -> Result<Self> {
        let agent_id = agent_id.trim();
        if agent_id.is_empty() {
            return Err(Error::missing(
                "agent.agent_id",
                "agent.agent_id is required when an agent is given",
            ));
        }
        if agent_id.chars().count() > NAME_MAX || agent_id.chars().any(char::is_control) {
            return Err(Error::invalid(
                "INVALID_AGENT",
                "agent.agent_id",
                format!("agent.agent_id must be 1 to {NAME_MAX} printable characters"),
            ));
        }
        let status = if status.trim().is_empty() {
            AgentStatus::Idle
        } else {
            AgentStatus::parse("agent.status", status)?
        };
        if !(0..=5).contains(&autonomy_level) {
            return Err(Error::invalid(
                "INVALID_AUTONOMY_LEVEL",
                "agent.autonomy_level",
                format!("agent.autonomy_level must be between 0 and 5, got {autonomy_level}"),
            ));
        }
        Ok(Self {
            agent_id: agent_id.to_owned(),
            status,
            autonomy_level,
        })
    }
}

/// A linked repository reference (free form, e.g. `github.com/acme/app`).
pub fn parse_repo(field: &'static str, raw: &str) -> Result<String> {
    let s = raw.trim();
    if s.chars().count() > 500 || s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::invalid(
            "INVALID_REPO",
            field,
            format!("{field} must be at most 500 characters without spaces"),
        ));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_accept_lowercase_words_joined_by_single_hyphens() {
        for ok in ["ab", "acme", "acme-corp", "a1-b2-c3", &"a".repeat(63)] {
            assert_eq!(Slug::parse("slug", ok).map(|s| s.0), Ok(ok.to_owned()));
        }
    }

    #[test]
    fn slugs_reject_bad_shapes_with_invalid_slug() {
        for bad in [
            "a",
            "Acme",
            "acme-",
            "-acme",
            "ac--me",
            "ac me",
            "acmé",
            "ac_me",
            &"a".repeat(64),
        ] {
            let err = Slug::parse("slug", bad).unwrap_err();
            assert_eq!(err.reason, "INVALID_SLUG", "{bad}");
            assert!(err.metadata.contains(&("field", "slug".to_owned())));
        }
        assert_eq!(Slug::parse("slug", "  ").unwrap_err().reason, "MISSING_FIELD");
    }

    #[test]
    fn slugs_are_derived_from_names() {
        let d = |n: &str| Slug::derive("slug", n).map(|s| s.0);
        assert_eq!(d("Acme Corp"), Ok("acme-corp".into()));
        assert_eq!(d("  Hello,   World!! "), Ok("hello-world".into()));
        assert_eq!(d("Café Résumé 2025"), Ok("caf-r-sum-2025".into()));
        assert_eq!(d("__data__platform__"), Ok("data-platform".into()));
        let long = "x".repeat(62) + " yz";
        assert_eq!(d(&long), Ok("x".repeat(62)));
        assert_eq!(Slug::derive("slug", "日本語").unwrap_err().reason, "INVALID_SLUG");
        assert_eq!(Slug::derive("slug", "!!!").unwrap_err().reason, "INVALID_SLUG");
        // A single character is too short to be a slug.
        assert_eq!(Slug::derive("slug", "A").unwrap_err().reason, "INVALID_SLUG");
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            Name::parse("organization", "name", "  Acme ").unwrap().as_str(),
            "Acme"
        );
        assert_eq!(
            Name::parse("organization", "name", " ").unwrap_err().reason,
            "MISSING_FIELD"
        );
        assert!(Name::parse("organization", "name", &"n".repeat(100)).is_ok());
        assert_eq!(
            Name::parse("organization", "name", &"n".repeat(101))
                .unwrap_err()
                .reason,
            "INVALID_NAME"
        );
    }

    #[test]
    fn emails_are_lowercased_and_checked() {
        assert_eq!(
            Email::parse("email", " Ann@Example.COM ").unwrap().as_str(),
            "ann@example.com"
        );
        for bad in ["ann", "@x.org", "ann@", "a b@x.org", "a@b@c", "a@.x"] {
            assert_eq!(
                Email::parse("email", bad).unwrap_err().reason,
                "INVALID_EMAIL",
                "{bad}"
            );
        }
    }

    #[test]
    fn roles_parse_only_their_lowercase_names() {
        assert_eq!(OrgRole::parse("role", "admin"), Ok(OrgRole::Admin));
        assert_eq!(
            OrgRole::parse("role", "editor").unwrap_err().reason,
            "INVALID_ROLE"
        );
        assert_eq!(SpaceRole::parse("role", "editor"), Ok(SpaceRole::Editor));
        assert_eq!(OrgRole::parse("role", "").unwrap_err().reason, "MISSING_FIELD");
    }

    #[test]
    fn agents_are_validated() {
        assert!(Agent::parse("bot-1", "ACTIVE", 5).is_ok());
        assert_eq!(
            Agent::parse("bot-1", "ACTIVE", 6).unwrap_err().reason,
            "INVALID_AUTONOMY_LEVEL"
        );
        assert_eq!(
            Agent::parse("bot-1", "active", 1).unwrap_err().reason,
            "INVALID_AGENT_STATUS"
        );
        assert_eq!(Agent::parse("", "ACTIVE", 1).unwrap_err().reason, "MISSING_FIELD");
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn slug_parsing_never_panics_and_keeps_what_it_accepts(raw in "\\PC{0,80}") {
            if let Ok(slug) = Slug::parse("slug", &raw) {
                prop_assert_eq!(Slug::parse("slug", slug.as_str()), Ok(slug.clone()));
                let len = slug.as_str().len();
                prop_assert!((SLUG_MIN..=SLUG_MAX).contains(&len));
            }
        }

        #[test]
        fn derived_slugs_are_valid_and_stable(name in "\\PC{0,200}") {
            if let Ok(slug) = Slug::derive("slug", &name) {
                prop_assert_eq!(Slug::parse("slug", slug.as_str()), Ok(slug.clone()));
                prop_assert_eq!(Slug::derive("slug", slug.as_str()), Ok(slug));
            }
        }

        #[test]
        fn well_formed_slugs_round_trip(parts in prop::collection::vec("[a-z0-9]{1,8}", 1..6)) {
            let raw = parts.join("-");
            prop_assume!((SLUG_MIN..=SLUG_MAX).contains(&raw.len()));
            prop_assert_eq!(Slug::parse("slug", &raw).map(|s| s.0), Ok(raw));
        }

        #[test]
        fn email_parsing_is_idempotent_and_folds_only_ascii(raw in "\\PC{0,80}") {
            if let Ok(email) = Email::parse("email", &raw) {
                prop_assert_eq!(Email::parse("email", email.as_str()), Ok(email.clone()));
                prop_assert!(!email.as_str().bytes().any(|b| b.is_ascii_uppercase()));
                // Nothing but ASCII letters changed.
                prop_assert_eq!(email.as_str().chars().count(), raw.trim().chars().count());
            }
        }

        #[test]
        fn lookups_never_panic_and_refuse_what_cannot_be_a_slug(raw in "\\PC{0,100}") {
            match lookup_slug(&raw) {
                Ok(slug) => prop_assert!(Slug::parse("slug", slug).is_ok()),
                Err(e) => prop_assert!(e.message.len() < 200),
            }
        }

        #[test]
        fn names_and_descriptions_never_panic(raw in "\\PC{0,300}") {
            let _ = Name::parse("organization", "name", &raw);
            if let Ok(d) = Description::parse("description", &raw) {
                prop_assert!(!d.as_str().chars().any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r')));
            }
        }
    }
}
