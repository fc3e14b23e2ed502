//! Input rules shared by the domains. Each returns the cleaned value or a field error.

use crate::error::{ApiError, ApiResult};

pub const USERNAME_LEN: std::ops::RangeInclusive<usize> = 3..=32;
pub const PASSWORD_LEN: std::ops::RangeInclusive<usize> = 8..=128;
pub const DISPLAY_NAME_MAX: usize = 64;
pub const EMAIL_MAX: usize = 254;
pub const TITLE_MAX: usize = 120;
pub const DESCRIPTION_MAX: usize = 2_000;
/// How long a client id may be, in bytes.
pub const CLIENT_ID_LEN: std::ops::RangeInclusive<usize> = 1..=64;

/// 3–32 characters of `[a-z0-9_-]`.
pub fn username(field: &'static str, raw: &str) -> ApiResult<String> {
    let len = raw.chars().count();
    if !USERNAME_LEN.contains(&len) {
        return Err(ApiError::bad_input(
            field,
            "username must be 3 to 32 characters long",
        ));
    }
    if !raw
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(ApiError::bad_input(
            field,
            "username may contain only lowercase letters a-z, digits, '_' and '-'",
        ));
    }
    Ok(raw.to_owned())
}

/// A plausible address: one `@`, a non-empty local part, a dotted domain, no spaces.
/// Returned lower-cased so that uniqueness ignores case.
pub fn email(field: &'static str, raw: &str) -> ApiResult<String> {
    let email = raw.trim().to_lowercase();
    let invalid = || {
        ApiError::bad_input(
            field,
            "email must be a valid address such as name@example.com",
        )
    };
    if email.is_empty()
        || email.len() > EMAIL_MAX
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid());
    }
    let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    if local.is_empty() || local.len() > 64 || local.contains('@') || !domain_ok {
        return Err(invalid());
    }
    Ok(email)
}

/// 8–128 characters (not bytes).
pub fn password(field: &'static str, raw: &str) -> ApiResult<()> {
    if !PASSWORD_LEN.contains(&raw.chars().count()) {
        return Err(ApiError::bad_input(
            field,
            "password must be 8 to 128 characters long",
        ));
    }
    Ok(())
}

/// Trimmed, non-empty, at most `max` characters, no control characters.
pub fn single_line(field: &'static str, raw: &str, max: usize) -> ApiResult<String> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(ApiError::bad_input(
            field,
            format!("{field} must not be empty"),
        ));
    }
    if value.chars().count() > max {
        return Err(ApiError::bad_input(
            field,
            format!("{field} must be at most {max} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::bad_input(
            field,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(value.to_owned())
}

/// Free text of at most `max` characters (may be empty).
pub fn text(field: &'static str, raw: &str, max: usize) -> ApiResult<String> {
    let value = raw.trim();
    if value.chars().count() > max {
        return Err(ApiError::bad_input(
            field,
            format!("{field} must be at most {max} characters"),
        ));
    }
    Ok(value.to_owned())
}

/// An id argument: a UUID.
pub fn id(field: &'static str, raw: &str) -> ApiResult<uuid::Uuid> {
    uuid::Uuid::parse_str(raw)
        .map_err(|_| ApiError::bad_input(field, format!("{field} is not a valid id")))
}

/// A client's own id (one per editor tab), as `applyUpdate` echoes it to subscribers and
/// presence lists it: 1–64 bytes. An empty id would name no client, so it is refused.
pub fn client_id(raw: &str) -> ApiResult<()> {
    if !CLIENT_ID_LEN.contains(&raw.len()) {
        return Err(ApiError::bad_input(
            "clientId",
            format!(
                "clientId must be {} to {} bytes",
                CLIENT_ID_LEN.start(),
                CLIENT_ID_LEN.end()
            ),
        ));
    }
    Ok(())
}

/// A value within an inclusive range.
pub fn in_range(
    field: &'static str,
    value: i32,
    range: std::ops::RangeInclusive<i32>,
) -> ApiResult<i32> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::bad_input(
            field,
            format!(
                "{field} must be between {} and {}",
                range.start(),
                range.end()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(username("u", "ab").is_err());
        assert!(username("u", "abc").is_ok());
        assert!(username("u", "Abc").is_err());
        assert!(username("u", "a b").is_err());
        assert!(username("u", "ok_name-1").is_ok());
        assert!(username("u", &"a".repeat(33)).is_err());
    }

    #[test]
    fn emails() {
        assert_eq!(
            email("e", " Ann@Example.COM ").ok().as_deref(),
            Some("ann@example.com")
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@x.io",
            "ann@x",
            "ann@x..io",
            "a b@x.io",
            "a@b@x.io",
            "ann@-x.io",
        ] {
            assert!(email("e", bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn client_ids_are_1_to_64_bytes() {
        assert!(client_id("").is_err());
        assert!(client_id("a").is_ok());
        assert!(client_id(&"a".repeat(64)).is_ok());
        assert!(client_id(&"a".repeat(65)).is_err());
        // Bytes, not characters: 32 two-byte characters fit, 33 do not.
        assert!(client_id(&"é".repeat(32)).is_ok());
        assert!(client_id(&"é".repeat(33)).is_err());
    }

    #[test]
    fn passwords_count_characters() {
        assert!(password("p", "1234567").is_err());
        assert!(password("p", "12345678").is_ok());
        assert!(password("p", &"é".repeat(128)).is_ok());
        assert!(password("p", &"é".repeat(129)).is_err());
    }
}
