//! How `smartsock recv` shows a message: text, hex or a JSON line.

use std::fmt::Write;

use smartsock::PeerId;

/// The output format of `recv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// The payload as UTF-8, invalid sequences replaced by U+FFFD.
    Text,
    /// The payload as lowercase hex.
    Hex,
    /// `{"from":"<32 hex>","payload":"<text>"}`.
    Json,
}

impl Format {
    /// One output line for a message (without the newline).
    pub(crate) fn line(self, from: PeerId, payload: &[u8]) -> String {
        match self {
            Self::Text => String::from_utf8_lossy(payload).into_owned(),
            Self::Hex => hex(payload),
            Self::Json => {
                let text = String::from_utf8_lossy(payload);
                let quoted = serde_json::Value::from(text.as_ref()).to_string();
                format!(r#"{{"from":"{from}","payload":{quoted}}}"#)
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FROM: PeerId = PeerId::from_bytes([0xab; 16]);

    #[test]
    fn text_is_lossy_utf8() {
        assert_eq!(Format::Text.line(FROM, b"caf\xc3\xa9"), "café");
        assert_eq!(Format::Text.line(FROM, b"a\xffb"), "a\u{fffd}b");
    }

    #[test]
    fn hex_is_lowercase_pairs() {
        assert_eq!(Format::Hex.line(FROM, b"\x00\x01\xfe"), "0001fe");
        assert_eq!(Format::Hex.line(FROM, b""), "");
    }

    #[test]
    fn json_names_the_sender_and_escapes_the_payload() {
        let line = Format::Json.line(FROM, b"say \"hi\"\n");
        assert_eq!(line, r#"{"from":"abababababababababababababababab","payload":"say \"hi\"\n"}"#);
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["payload"], "say \"hi\"\n");
    }
}
