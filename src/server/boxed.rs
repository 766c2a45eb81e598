//! Large futures boxed where they are made.

/// `Box::pin($future)`, with the future made in its allocation. `Box::pin`
/// builds it on the stack and copies all of it into the box, unused bytes
/// too: callgrind counted 250–550 instructions per request for each of the
/// request path's large futures (an h2 stream's, an HTTP/1.1 exchange's
/// phases, the forwarding to an upstream). A macro, not a function: passed
/// to a function, even one always inlined, the future is built on the stack
/// first and the copy is back (measured).
macro_rules! pin_in_place {
    ($future:expr) => {
        Box::into_pin(Box::write(Box::new_uninit(), $future))
    };
}

pub(super) use pin_in_place;
