//! Percent-decoding, the one copy: URL query strings (`+` is a space there) and the aggregator's
//! `X-Remote-Extra-` header keys. Malformed escapes are kept as they are, never an error: the
//! decoded text is validated by whoever reads it.

/// Decodes `%XX` escapes in `s`; with `plus_is_space`, `+` becomes a space (form encoding).
/// Bytes that do not form UTF-8 afterwards become U+FFFD.
pub fn decode(s: &str, plus_is_space: bool) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        match b {
            b'%' => match tail.get(..2).and_then(hex_pair) {
                Some(byte) => {
                    out.push(byte);
                    rest = tail.get(2..).unwrap_or_default();
                }
                None => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            _ => out.push(b),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_pair(pair: &[u8]) -> Option<u8> {
    let digit = |c: u8| char::from(c).to_digit(16);
    match pair {
        [hi, lo] => {
            let value = digit(*hi)?.checked_mul(16)?.checked_add(digit(*lo)?)?;
            u8::try_from(value).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn decodes_escapes_and_keeps_garbage() {
        assert_eq!(decode("a%2", true), "a%2");
        assert_eq!(decode("%zz", true), "%zz");
        assert_eq!(decode("%41%42", true), "AB");
        assert_eq!(decode("%", true), "%");
        assert_eq!(decode("a+b", true), "a b");
        assert_eq!(decode("a+b", false), "a+b");
        assert_eq!(decode("%C3%A9%e9", false), "é\u{fffd}");
        assert_eq!(decode("é%4", false), "é%4");
    }
}
