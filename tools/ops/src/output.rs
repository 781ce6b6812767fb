//! Output helpers: times, progress bars, and what is never printed.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::OpsError;

/// Microseconds since the epoch as RFC 3339 (UTC).
pub fn rfc3339_micros(micros: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| micros.to_string())
}

/// An RFC 3339 time from the command line, as microseconds since the epoch.
pub fn parse_rfc3339_micros(raw: &str) -> Result<i64, String> {
    let time = OffsetDateTime::parse(raw.trim(), &Rfc3339)
        .map_err(|e| format!("{raw:?} is not an RFC 3339 time ({e}); e.g. 2024-05-01T00:00:00Z"))?;
    i64::try_from(time.unix_timestamp_nanos() / 1000)
        .map_err(|_| format!("{raw:?} is out of range"))
}

/// Writes `text` to this tool's stdout.
pub fn print(text: &str) -> Result<(), OpsError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

fn visible() -> bool {
    std::io::stdout().is_terminal()
}

/// A progress bar of `len` steps on stderr; hidden unless stdout is a terminal.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    if !visible() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_owned());
    bar
}

/// A spinner for work of unknown length; hidden unless stdout is a terminal.
pub fn spinner(what: &str) -> ProgressBar {
    if !visible() {
        return ProgressBar::hidden();
    }
    let spinner = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    spinner.set_style(
        ProgressStyle::with_template("{spinner} {prefix} {msg}").expect("a valid template"),
    );
    spinner.set_prefix(what.to_owned());
    spinner
}

/// Prints a line to stdout without tearing the progress bar.
pub fn line(bar: &ProgressBar, text: &str) -> Result<(), OpsError> {
    bar.suspend(|| print(&format!("{text}\n")))
}

pub const REDACTED: &str = "<redacted>";

/// Header names whose values are never printed: a Revel signature with its
/// body is a replayable request.
pub fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.contains("signature") || name.contains("token") || name.contains("authorization")
}

/// Payment and contact fields, hidden unless `--show-body` is given.
pub fn is_personal_field(key: &str) -> bool {
    const PAYMENT: &[&str] = &[
        "card_number",
        "card_type",
        "cc_digits",
        "cvv",
        "transaction_data",
        "processor_response",
        "signature_img_url",
        "iban",
        "account_number",
    ];
    const CONTACT: &[&str] = &[
        "email",
        "phone",
        "mobile",
        "fax",
        "address",
        "street",
        "city",
        "zip",
        "postal",
        "first_name",
        "last_name",
        "full_name",
        "firstname",
        "lastname",
        "birth",
        "dob",
    ];
    let key = key.to_ascii_lowercase();
    key.starts_with("cc_") || PAYMENT.iter().chain(CONTACT).any(|part| key.contains(part))
}

/// Replaces the value of every payment or contact field, at any depth.
pub fn redact_personal(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, field) in map.iter_mut() {
                if is_personal_field(key) {
                    *field = Value::String(REDACTED.to_owned());
                } else {
                    redact_personal(field);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_personal),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payment_and_contact_fields_are_redacted_at_any_depth_and_the_rest_kept() {
        let mut body = json!({
            "orderInfo": {"uuid": "o-1", "final_total": 4.86},
            "payments": [{"amount": 4.86, "cc_first_name": "A", "last_4_cc_digits": "4242", "card_type": "visa"}],
            "customer": {"email": "a@b.c", "phone_number": "555", "first_name": "Ann", "address": {"street": "x"}},
            "gift_card_number": "G1"
        });
        redact_personal(&mut body);
        assert_eq!(
            body,
            json!({
                "orderInfo": {"uuid": "o-1", "final_total": 4.86},
                "payments": [{"amount": 4.86, "cc_first_name": REDACTED, "last_4_cc_digits": REDACTED, "card_type": REDACTED}],
                "customer": {"email": REDACTED, "phone_number": REDACTED, "first_name": REDACTED, "address": REDACTED},
                "gift_card_number": REDACTED
            })
        );
    }

    #[test]
    fn signatures_and_tokens_are_secret_headers() {
        assert!(is_secret_header("X-Revel-Signature"));
        assert!(is_secret_header("webhook-signature"));
        assert!(!is_secret_header("x-revel-instance"));
    }

    #[test]
    fn times_round_trip_through_rfc3339() {
        let micros = parse_rfc3339_micros("2024-05-01T12:00:00.5+02:00").unwrap();
        assert_eq!(rfc3339_micros(micros), "2024-05-01T10:00:00.5Z");
        assert!(parse_rfc3339_micros("yesterday").is_err());
    }
}
