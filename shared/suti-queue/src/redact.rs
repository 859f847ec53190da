//! Hiding the password of a URL before it reaches a log or a debug print: the broker's options
//! and the runtime's secret settings share this one rule.

/// `url` with the password of its user-info replaced by `***`: `scheme://user:***@host…`. A
/// user-info without a colon may itself be a token, so it is hidden whole (`scheme://***@host…`).
/// Anything that is not `scheme://…` with user-info comes back unchanged.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let (scheme, rest) = url.split_at(scheme_end + 3);
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let masked = match authority[..at].split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        None => "***".to_string(),
    };
    format!("{scheme}{masked}{}", &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn the_password_is_hidden_and_the_user_kept() {
        assert_eq!(
            redact_url("amqp://suti:hunter2@rabbit:5672/%2f"),
            "amqp://suti:***@rabbit:5672/%2f"
        );
        assert_eq!(
            redact_url("redis://:s3cret@redis:6379/0"),
            "redis://:***@redis:6379/0"
        );
        assert_eq!(
            redact_url("amqp://a:b:c@host/"),
            "amqp://a:***@host/",
            "everything after the first colon is the password"
        );
    }

    #[test]
    fn a_user_info_without_a_password_is_hidden_whole() {
        assert_eq!(redact_url("amqp://token@host/"), "amqp://***@host/");
    }

    #[test]
    fn urls_without_credentials_are_unchanged() {
        for url in [
            "redis://127.0.0.1:6379/",
            "amqp://host/vhost@name",
            "not a url",
            "",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }
}
