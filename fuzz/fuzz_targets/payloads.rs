//! Every payload parser (each source's `EventKind::interpret`) over any bytes
//! that parse as JSON, seeded with the sample bodies in events/payloads/.
//! Checks: no panic, the same meaning twice, a derivable event key, no
//! payment card field in a kept state, and a meaning that does not depend on
//! the whitespace between tokens.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    shared_fuzz::check_all_kinds(data, &body);
    shared_fuzz::check_whitespace_insensitive(data, &body);
});
