//! What an HTTP answer means, decided in one place for every client in the workspace: the
//! MLflow REST client and object storage here, and the remote cache (`env-remote`), so the
//! same answer always gives the same exit code (issue 23).
//!
//! - `401`/`403`: the credentials were missing or refused, or lack a permission. Only the
//!   user can fix that; retrying does not help: exit 1.
//! - `408`, `429` and `5xx`: transient (MLflow retries `408, 429, 500, 502, 503, 504`). A later
//!   try may work, so it is "something broken" (exit 2), which build agents retry.
//! - Any other `4xx` (`404`, `400`): the request names something that is not there: exit 1.
//! - Anything else (no answer, a redirect not followed): exit 2.

/// What an HTTP status means to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpClass {
    /// `401`/`403`: credentials missing, refused, or without the permission.
    Refused,
    /// `408`, `429`, `5xx`: the server is busy or broken; a later try may work.
    Transient,
    /// Other `4xx`: the request names something wrong (a missing object, a bad name).
    Rejected,
    /// Anything else: an answer no client here expects.
    Unexpected,
}

impl HttpClass {
    /// The class of `status`.
    #[must_use]
    pub fn of(status: u16) -> Self {
        match status {
            401 | 403 => Self::Refused,
            408 | 429 | 500..=599 => Self::Transient,
            400..=499 => Self::Rejected,
            _ => Self::Unexpected,
        }
    }

    /// Whether the user's input or settings are at fault (exit 1) rather than something
    /// broken that a retry may fix (exit 2).
    #[must_use]
    pub fn is_user_error(self) -> bool {
        matches!(self, Self::Refused | Self::Rejected)
    }
}

/// Whether an answer with `status` (or none, `None`) is the user's to fix; see the module docs.
#[must_use]
pub fn is_user_error(status: Option<u16>) -> bool {
    status.is_some_and(|status| HttpClass::of(status).is_user_error())
}

/// The HTTP status behind an `object_store` error, if the store answered. `object_store`
/// types 401, 403, 404, 304, 409 and 412 for requests on one object; other answers (a
/// listing's 403, any 429 or 5xx) are its `Generic` error around its private `RetryError`,
/// whose only public trace of the status is the status line it formats
/// (`Server returned non-2xx status code: 503 Service Unavailable: ...`). That line, made by
/// `object_store` itself and never by the server, is read; a server's message never is.
#[must_use]
pub fn object_store_status(error: &object_store::Error) -> Option<u16> {
    match error {
        object_store::Error::NotFound { .. } => Some(404),
        object_store::Error::PermissionDenied { .. } => Some(403),
        object_store::Error::Unauthenticated { .. } => Some(401),
        object_store::Error::NotModified { .. } => Some(304),
        object_store::Error::AlreadyExists { .. } => Some(409),
        object_store::Error::Precondition { .. } => Some(412),
        _ => {
            let mut cause: Option<&dyn std::error::Error> = Some(error);
            while let Some(error) = cause {
                // A transport failure has no status, whatever its text holds.
                if error.is::<object_store::client::HttpError>() {
                    return None;
                }
                let text = error.to_string();
                if let Some((_, rest)) = text.split_once("Server returned non-2xx status code: ") {
                    return rest.get(..3)?.parse().ok();
                }
                cause = error.source();
            }
            None
        }
    }
}

/// Whether an `object_store` error is a transport failure (no connection, a timeout, a broken
/// body), told by its typed `HttpError`, never by its text.
#[must_use]
pub fn object_store_unreachable(error: &object_store::Error) -> bool {
    let mut cause: Option<&dyn std::error::Error> = Some(error);
    while let Some(error) = cause {
        if let Some(http) = error.downcast_ref::<object_store::client::HttpError>() {
            return matches!(
                http.kind(),
                object_store::client::HttpErrorKind::Connect
                    | object_store::client::HttpErrorKind::Request
                    | object_store::client::HttpErrorKind::Timeout
                    | object_store::client::HttpErrorKind::Interrupted
            );
        }
        cause = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_for_every_status() {
        for status in [401, 403] {
            assert_eq!(HttpClass::of(status), HttpClass::Refused, "{status}");
            assert!(is_user_error(Some(status)), "{status}");
        }
        // Transient answers are retried, then exit 2 so an agent retries too.
        for status in [408, 429, 500, 502, 503, 504, 507] {
            assert_eq!(HttpClass::of(status), HttpClass::Transient, "{status}");
            assert!(!is_user_error(Some(status)), "{status}");
        }
        for status in [400, 404, 409, 410] {
            assert_eq!(HttpClass::of(status), HttpClass::Rejected, "{status}");
            assert!(is_user_error(Some(status)), "{status}");
        }
        for status in [200, 302, 304] {
            assert!(!is_user_error(Some(status)), "{status}");
        }
        assert!(!is_user_error(None));
    }

    #[test]
    fn statuses_of_object_store_errors() {
        #[derive(Debug)]
        struct Text(String);
        impl std::fmt::Display for Text {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::error::Error for Text {}
        let generic = |text: &str| object_store::Error::Generic {
            store: "S3",
            source: Box::new(Text(text.to_string())),
        };
        assert_eq!(
            object_store_status(&generic(
                "Error performing GET http://h/b in 1ms - Server returned non-2xx status code: 429 Too Many Requests: <Error/>"
            )),
            Some(429)
        );
        // A server's own words are not a status.
        assert_eq!(
            object_store_status(&generic("AccessDenied: status code: 403")),
            None
        );
        let denied = object_store::Error::PermissionDenied {
            path: "p".into(),
            source: Box::new(Text("x".into())),
        };
        assert_eq!(object_store_status(&denied), Some(403));
        let refused = object_store::Error::Generic {
            store: "S3",
            source: Box::new(object_store::client::HttpError::new(
                object_store::client::HttpErrorKind::Connect,
                Text("Connection refused".into()),
            )),
        };
        assert_eq!(object_store_status(&refused), None);
        assert!(object_store_unreachable(&refused));
        assert!(!object_store_unreachable(&denied));
    }
}
