//! The kernel's `\ooo` octal escapes of whitespace-separated fields, as in
//! `/proc/self/mountinfo`, `/proc/self/mountstats` and `/etc/fstab` (getmntent(3)): one
//! implementation for the three readers. Failure modes: none — a backslash that does not
//! start a valid three-digit octal escape below 256 is kept as it is.

/// Decode `\ooo` escapes; anything else is kept as is.
pub fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && let Some(oct) = field.get(i + 1..i + 4)
            && oct.iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = u32::from(oct[0] - b'0') * 64
                + u32::from(oct[1] - b'0') * 8
                + u32::from(oct[2] - b'0');
            if let Ok(b) = u8::try_from(v) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

/// [`unescape`] of text, invalid UTF-8 replaced (for display and for fstab paths).
pub fn unescape_lossy(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_owned();
    }
    String::from_utf8_lossy(&unescape(field.as_bytes())).into_owned()
}

/// Escape a field as the kernel and getmntent(3) do: space, tab, newline and backslash
/// as `\ooo`.
pub fn escape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    for &b in field {
        if matches!(b, b' ' | b'\t' | b'\n' | b'\\') {
            out.extend_from_slice(format!("\\{b:03o}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_escapes_decode_and_the_rest_stays() {
        assert_eq!(unescape_lossy("/a\\040b\\011c\\134d"), "/a b\tc\\d");
        assert_eq!(unescape_lossy("/plain"), "/plain");
        assert_eq!(unescape_lossy("/trailing\\04"), "/trailing\\04");
        assert_eq!(unescape_lossy("/end\\040"), "/end ");
        assert_eq!(unescape_lossy("/big\\777"), "/big\\777", "above 255: kept");
        assert_eq!(escape(b"a b\\"), b"a\\040b\\134");
        assert_eq!(unescape(&escape(b"\t\n \\x")), b"\t\n \\x");
    }
}
