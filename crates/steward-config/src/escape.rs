//! Paths are bytes on Linux, and not every name is UTF-8 or printable. For people (and for
//! keys that must stay distinct), a name is shown escaped: UTF-8 as it is, `\` as `\\`,
//! control characters and bytes that are not UTF-8 as `\n`, `\t`, `\xNN`. Two different
//! names never show the same.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// `bytes` shown escaped.
pub fn escaped(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// A path (or any OS string) shown escaped.
pub fn escaped_os(s: &OsStr) -> String {
    escaped(s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_not_text_are_shown_and_stay_distinct() {
        assert_eq!(escaped(b"plain name.pdf"), "plain name.pdf");
        assert_eq!(escaped(b"\xff\xfe-x.txt"), "\\xff\\xfe-x.txt");
        assert_eq!(escaped("é.txt".as_bytes()), "é.txt");
        assert_eq!(escaped(b"a\nb\tc"), "a\\nb\\tc");
        assert_eq!(escaped(b"\x1b[31m"), "\\x1b[31m");
        // The backslash itself is escaped, so `\xff` as text and byte 0xff differ.
        assert_ne!(escaped(b"\\xff"), escaped(b"\xff"));
    }
}
