//! Page-number and keyset pagination shared by every list.

use uuid::Uuid;

use super::error::{Error, Result};

pub const DEFAULT_SIZE: u32 = 20;
pub const MAX_SIZE: u32 = 100;
/// Beyond this page number, offsets would be unreasonably deep; callers use
/// `page_token` instead.
pub const MAX_PAGE: u32 = 1_000_000;

/// The position of the last row of a page in the list order
/// (`created_at DESC, id DESC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: i64,
    pub id: Uuid,
}

/// Which slice of a list to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// 1-based page number (for a token, the page it leads to).
    pub page: u32,
    pub size: u32,
    /// When present, rows strictly after this cursor (keyset pagination).
    pub after: Option<Cursor>,
}

impl PageRequest {
    /// Validates `page` (absent means 1; zero or negative is an error),
    /// `size` (zero means the default; capped at 100) and `page_token`.
    pub fn parse(page: Option<i32>, size: i32, page_token: &str) -> Result<Self> {
        let size = match size {
            s if s < 0 => {
                return Err(Error::invalid(
                    "INVALID_PAGE_SIZE",
                    "size",
                    format!("size must not be negative, got {s}"),
                ));
            }
            0 => DEFAULT_SIZE,
            s => (s as u32).min(MAX_SIZE),
        };
        let token = page_token.trim();
        if !token.is_empty() {
            let (page, after) = decode_token(token)?;
            return Ok(Self {
                page,
                size,
                after: Some(after),
            });
        }
        let page = match page {
            None => 1,
            Some(p) if p >= 1 && (p as u32) <= MAX_PAGE => p as u32,
            Some(p) if p >= 1 => {
                return Err(Error::invalid(
                    "INVALID_PAGE",
                    "page",
                    format!("page must be at most {MAX_PAGE}; use page_token to go deeper"),
                ));
            }
            Some(p) => {
                return Err(Error::invalid(
                    "INVALID_PAGE",
                    "page",
                    format!("page must be 1 or more, got {p}"),
                ));
            }
        };
        Ok(Self {
            page,
            size,
            after: None,
        })
    }

    /// Rows to skip (zero when a cursor is used).
    pub fn offset(&self) -> i64 {
        if self.after.is_some() {
            0
        } else {
            i64::from(self.page - 1) * i64::from(self.size)
        }
    }

    /// Rows to fetch: one more than the page, to know whether another follows.
    pub fn fetch(&self) -> i64 {
        i64::from(self.size) + 1
    }

    /// Trims the extra row and returns the token of the next page, if any.
    pub fn finish<T>(&self, mut rows: Vec<T>, cursor_of: impl Fn(&T) -> Cursor) -> (Vec<T>, String) {
        if rows.len() > self.size as usize {
            rows.truncate(self.size as usize);
            let next = rows.last().map(|r| encode_token(self.page + 1, cursor_of(r)));
            (rows, next.unwrap_or_default())
        } else {
            (rows, String::new())
        }
    }
}

/// Tokens are opaque to callers: hex of `v1:<page>:<created_at>:<id>`.
pub fn encode_token(page: u32, c: Cursor) -> String {
    hex::encode(format!("v1:{page}:{}:{}", c.created_at, c.id))
}

fn decode_token(token: &str) -> Result<(u32, Cursor)> {
    let bad = || {
        Error::invalid(
            "INVALID_PAGE_TOKEN",
            "page_token",
            "page_token is not a token this service issued",
        )
    };
    let raw = hex::decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let mut parts = text.split(':');
    if parts.next() != Some("v1") {
        return Err(bad());
    }
    let page: u32 = parts
        .next()
        .and_then(|p| p.parse().ok())
        .filter(|p| (1..=i32::MAX as u32).contains(p))
        .ok_or_else(bad)?;
    let created_at: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let id = parts
        .next()
        .and_then(|p| Uuid::parse_str(p).ok())
        .ok_or_else(bad)?;
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok((page, Cursor { created_at, id }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_caps_and_rejections() {
        assert_eq!(
            PageRequest::parse(None, 0, "").unwrap(),
            PageRequest {
                page: 1,
                size: 20,
                after: None
            }
        );
        assert_eq!(PageRequest::parse(Some(3), 1000, "").unwrap().size, 100);
        assert_eq!(
            PageRequest::parse(Some(0), 10, "").unwrap_err().reason,
            "INVALID_PAGE"
        );
        assert_eq!(
            PageRequest::parse(Some(-2), 10, "").unwrap_err().reason,
            "INVALID_PAGE"
        );
        assert_eq!(
            PageRequest::parse(None, -1, "").unwrap_err().reason,
            "INVALID_PAGE_SIZE"
        );
        assert_eq!(PageRequest::parse(Some(4), 10, "").unwrap().offset(), 30);
    }

    #[test]
    fn tokens_round_trip_and_reject_forgeries() {
        let c = Cursor {
            created_at: 1_700_000_000_000_000,
            id: Uuid::now_v7(),
        };
        let t = encode_token(7, c);
        let p = PageRequest::parse(Some(1), 5, &t).unwrap();
        assert_eq!((p.page, p.after, p.offset()), (7, Some(c), 0));
        for bad in [
            "zz",
            "00",
            &hex::encode("v2:1:2:x"),
            &hex::encode(format!("v1:0:1:{}", c.id)),
        ] {
            assert_eq!(
                PageRequest::parse(None, 5, bad).unwrap_err().reason,
                "INVALID_PAGE_TOKEN"
            );
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn tokens_round_trip(page in 1..=i32::MAX as u32, created_at in any::<i64>(), id in any::<u128>()) {
            let cursor = Cursor { created_at, id: Uuid::from_u128(id) };
            let parsed = PageRequest::parse(None, 20, &encode_token(page, cursor));
            prop_assert_eq!(parsed, Ok(PageRequest { page, size: 20, after: Some(cursor) }));
        }

        #[test]
        fn any_token_text_parses_or_is_refused_without_panicking(raw in "\\PC{0,200}", page in any::<Option<i32>>(), size in any::<i32>()) {
            if let Ok(p) = PageRequest::parse(page, size, &raw) {
                prop_assert!(p.size >= 1 && p.size <= MAX_SIZE);
                prop_assert!(p.page >= 1 && p.page <= i32::MAX as u32);
            }
        }
    }
}
