//! The `Date` of responses that have none: the current time as an HTTP
//! date, formatted once a second per thread.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;

thread_local! {
    /// The second last formatted, and its text.
    static NOW: RefCell<(u64, HeaderValue)> =
        const { RefCell::new((u64::MAX, HeaderValue::from_static(""))) };
}

fn with_now<R>(f: impl FnOnce(&HeaderValue) -> R) -> R {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    NOW.with_borrow_mut(|(cached, value)| {
        if *cached != second {
            *cached = second;
            // An HTTP date is ASCII, always a valid field value.
            if let Ok(formatted) = HeaderValue::from_str(&httpdate::fmt_http_date(now)) {
                *value = formatted;
            }
        }
        f(value)
    })
}

/// The current time as a header value (h2 responses).
pub(super) fn http_date() -> HeaderValue {
    with_now(HeaderValue::clone)
}

/// Appends the current time (HTTP/1.1 response heads).
pub(super) fn write_http_date(out: &mut Vec<u8>) {
    with_now(|value| out.extend_from_slice(value.as_bytes()));
}
