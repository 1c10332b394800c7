//! Time as SpaceONE handles it: `dateutil.isoparse` for `datetime_*` operators, the `timediff_*`
//! grammar, lenient parsing of strings compared with datetime fields, and the three renderings
//! (JobInfo milliseconds, stat `isoformat()+"Z"`, MongoDB `$dateToString`). Times are UTC
//! milliseconds since the epoch.

use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, TimeZone,
    Timelike, Utc,
};

pub type Millis = i64;

pub fn to_millis(t: DateTime<Utc>) -> Millis {
    t.timestamp_millis()
}

pub fn from_millis(ms: Millis) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

/// JobInfo's rendering: `2022-04-02T09:17:44.031Z`.
pub fn render_info(ms: Millis) -> String {
    from_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// [`render_info`] into `buf` without allocating, for years 0 to 9999 (`None` otherwise).
pub fn write_info(ms: Millis, buf: &mut [u8; 24]) -> Option<&str> {
    let t = from_millis(ms)?;
    let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
    let fields = [
        (0_usize, year, 4_usize),
        (5, t.month(), 2),
        (8, t.day(), 2),
        (11, t.hour(), 2),
        (14, t.minute(), 2),
        (17, t.second(), 2),
        (20, t.timestamp_subsec_millis(), 3),
    ];
    for (at, n, width) in fields {
        let mut n = n;
        for b in buf.get_mut(at..at.checked_add(width)?)?.iter_mut().rev() {
            *b = b'0'.checked_add(u8::try_from(n % 10).ok()?)?;
            n /= 10;
        }
    }
    for (at, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ] {
        *buf.get_mut(at)? = c;
    }
    std::str::from_utf8(buf).ok()
}

/// Python `datetime.isoformat() + "Z"`: no fraction when zero, else six digits.
pub fn render_isoformat(ms: Millis) -> String {
    let Some(t) = from_millis(ms) else {
        return String::new();
    };
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let micros = t.timestamp_subsec_micros();
    if micros == 0 {
        format!("{base}Z")
    } else {
        format!("{base}.{micros:06}Z")
    }
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn num(s: &str) -> Option<u32> {
    if digits(s) { s.parse().ok() } else { None }
}

/// `dateutil.parser.isoparse`: `YYYY`, `YYYY-MM`, `YYYY-MM-DD` (or `YYYYMMDD`), then optionally a
/// separator and `HH[:MM[:SS[.ffffff]]]` (or the basic forms) and `Z` / `±HH[:MM]`. Naive values
/// are UTC; offsets are converted to UTC.
pub fn isoparse(s: &str) -> Option<Millis> {
    let (date, rest) = split_date(s)?;
    let Some(rest) = rest else {
        return Some(to_millis(
            Utc.from_utc_datetime(&date.and_time(NaiveTime::MIN)),
        ));
    };
    let mut chars = rest.chars();
    let sep = chars.next()?;
    if sep.is_ascii_digit() {
        return None;
    }
    let time_part = chars.as_str();
    let (time, offset) = parse_time_and_offset(time_part)?;
    let naive = NaiveDateTime::new(date, time);
    to_millis(Utc.from_utc_datetime(&naive)).checked_sub(i64::from(offset).checked_mul(60_000)?)
}

fn split_date(s: &str) -> Option<(NaiveDate, Option<&str>)> {
    // Every slice goes through `get`: a non-ASCII character anywhere must give `None`, never a
    // slice inside a UTF-8 sequence. Once a prefix is checked to be ASCII digits, its end is a
    // character boundary.
    let b = s.as_bytes();
    let year: i32 = num(s.get(..4)?)?.try_into().ok()?;
    if b.len() == 4 {
        return Some((NaiveDate::from_ymd_opt(year, 1, 1)?, None));
    }
    if b.get(4) == Some(&b'-') {
        let month = num(s.get(5..7)?)?;
        if b.len() == 7 {
            return Some((NaiveDate::from_ymd_opt(year, month, 1)?, None));
        }
        if b.get(7) != Some(&b'-') {
            return Some((NaiveDate::from_ymd_opt(year, month, 1)?, Some(s.get(7..)?)));
        }
        let day = num(s.get(8..10)?)?;
        let rest = if b.len() > 10 {
            Some(s.get(10..)?)
        } else {
            None
        };
        return Some((NaiveDate::from_ymd_opt(year, month, day)?, rest));
    }
    let month = num(s.get(4..6)?)?;
    let day = num(s.get(6..8)?)?;
    let rest = if b.len() > 8 { Some(s.get(8..)?) } else { None };
    Some((NaiveDate::from_ymd_opt(year, month, day)?, rest))
}

fn parse_time_and_offset(s: &str) -> Option<(NaiveTime, i32)> {
    let split = s.find(['Z', 'z', '+', '-']).unwrap_or(s.len());
    let (time, tz) = s.split_at(split);
    let offset = match tz {
        "" => 0,
        "Z" | "z" => 0,
        _ => {
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            // `tz` starts with one ASCII character; the body may hold anything, so it is sliced
            // with `get` (a non-ASCII body fails `num`, never panics).
            let body = tz.get(1..)?.replace(':', "");
            let (h, m) = match body.len() {
                2 => (num(&body)?, 0),
                4 => (num(body.get(..2)?)?, num(body.get(2..)?)?),
                _ => return None,
            };
            if h > 23 || m > 59 {
                return None;
            }
            // h <= 23 and m <= 59: no overflow.
            let minutes = i32::try_from(h.checked_mul(60)?.checked_add(m)?).ok()?;
            minutes.checked_mul(sign)?
        }
    };
    let (hms, frac) = match time.split_once(['.', ',']) {
        Some((a, f)) => (a, Some(f)),
        None => (time, None),
    };
    let parts: Vec<&str> = if hms.contains(':') {
        hms.split(':').collect()
    } else {
        hms.as_bytes()
            .chunks(2)
            .filter_map(|c| std::str::from_utf8(c).ok())
            .collect()
    };
    if parts.is_empty() || parts.len() > 3 || parts.iter().any(|p| p.len() != 2) {
        return None;
    }
    let h = num(parts.first()?)?;
    let m = parts.get(1).map_or(Some(0), |p| num(p))?;
    let sec = parts.get(2).map_or(Some(0), |p| num(p))?;
    let micros = match frac {
        None => 0,
        Some(f) if digits(f) && parts.len() == 3 => {
            let f6: String = f.chars().chain(std::iter::repeat('0')).take(6).collect();
            f6.parse().ok()?
        }
        Some(_) => return None,
    };
    let (h, extra_day) = if h == 24 && m == 0 && sec == 0 && micros == 0 {
        (0, true)
    } else {
        (h, false)
    };
    if extra_day {
        return None;
    }
    Some((NaiveTime::from_hms_micro_opt(h, m, sec, micros)?, offset))
}

/// `dateutil.parser.parse` for strings compared with datetime fields by plain operators: ISO forms,
/// also with a space separator; anything else is None (mongoengine turns it into a null).
pub fn lenient_parse(s: &str) -> Option<Millis> {
    let t = s.trim();
    isoparse(t).or_else(|| {
        for fmt in [
            "%Y-%m-%d %H:%M:%S",
            "%Y/%m/%d %H:%M:%S",
            "%Y/%m/%d",
            "%d %b %Y",
            "%b %d %Y",
            "%Y-%m-%d %H:%M",
        ] {
            if let Ok(dt) = NaiveDateTime::parse_from_str(t, fmt) {
                return Some(to_millis(Utc.from_utc_datetime(&dt)));
            }
            if let Ok(d) = NaiveDate::parse_from_str(t, fmt) {
                return Some(to_millis(
                    Utc.from_utc_datetime(&d.and_time(NaiveTime::MIN)),
                ));
            }
        }
        None
    })
}

/// The `timediff_*` grammar: `now`, `now/d`, `now/w`, `now/m`, optionally `+|-N s|m|h|d|w`
/// (`m` is minutes; a `|` operator counts as minus, as the reference's regex admits it).
pub fn parse_timediff(value: &str, now: DateTime<Utc>) -> Option<Millis> {
    let v = value.trim();
    let base = |b: &str| -> Option<DateTime<Utc>> {
        let midnight = Utc.from_utc_datetime(&now.date_naive().and_time(NaiveTime::MIN));
        Some(match b {
            "now" => now,
            "now/d" => midnight,
            "now/w" => midnight.checked_sub_signed(Duration::try_days(i64::from(
                now.weekday().num_days_from_monday(),
            ))?)?,
            "now/m" => Utc.from_utc_datetime(
                &NaiveDate::from_ymd_opt(now.year(), now.month(), 1)?.and_time(NaiveTime::MIN),
            ),
            _ => return None,
        })
    };
    if let Some(b) = base(v) {
        return Some(to_millis(b));
    }
    // ^\s?(now(/[dwm])?)\s?([+|-])\s?(\d+)([s|m|h|d|w])\s?$ on the untrimmed value.
    let s = value.strip_prefix(char::is_whitespace).unwrap_or(value);
    let s = s.strip_suffix(char::is_whitespace).unwrap_or(s);
    let (b, rest) = if let Some(r) = s.strip_prefix("now/") {
        let unit = r.get(..1)?;
        if !matches!(unit, "d" | "w" | "m") {
            return None;
        }
        (format!("now/{unit}"), r.get(1..)?)
    } else {
        ("now".to_string(), s.strip_prefix("now")?)
    };
    let rest = rest.strip_prefix(char::is_whitespace).unwrap_or(rest);
    let mut chars = rest.chars();
    let op = chars.next()?;
    if !matches!(op, '+' | '-' | '|') {
        return None;
    }
    let rest = chars.as_str();
    let rest = rest.strip_prefix(char::is_whitespace).unwrap_or(rest);
    let unit = rest.chars().last()?;
    let n = rest.strip_suffix(unit)?;
    if !digits(n) {
        return None;
    }
    let n: i64 = n.parse().ok()?;
    let d = match unit {
        's' => Duration::try_seconds(n)?,
        'm' => Duration::try_minutes(n)?,
        'h' => Duration::try_hours(n)?,
        'd' => Duration::try_days(n)?,
        'w' => Duration::try_weeks(n)?,
        '|' => return None,
        _ => return None,
    };
    let b = base(&b)?;
    let t = if op == '+' {
        b.checked_add_signed(d)?
    } else {
        b.checked_sub_signed(d)?
    };
    Some(to_millis(t))
}

/// MongoDB `$dateToString` with its format specifiers; an unknown one is Mongo's error.
pub fn date_to_string(ms: Millis, format: &str) -> Result<String, String> {
    let t = from_millis(ms).ok_or_else(|| "date out of range".to_string())?;
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(spec) = chars.next() else {
            return Err("Unmatched '%' at end of format string".into());
        };
        match spec {
            'Y' => out.push_str(&format!("{:04}", t.year())),
            'm' => out.push_str(&format!("{:02}", t.month())),
            'd' => out.push_str(&format!("{:02}", t.day())),
            'H' => out.push_str(&format!("{:02}", t.hour())),
            'M' => out.push_str(&format!("{:02}", t.minute())),
            'S' => out.push_str(&format!("{:02}", t.second())),
            'L' => out.push_str(&format!("{:03}", t.timestamp_subsec_millis())),
            'j' => out.push_str(&format!("{:03}", t.ordinal())),
            'w' => out.push_str(&format!("{}", t.weekday().number_from_sunday())),
            'u' => out.push_str(&format!("{}", t.weekday().number_from_monday())),
            'U' => out.push_str(&t.format("%U").to_string()),
            'V' => out.push_str(&format!("{:02}", t.iso_week().week())),
            'G' => out.push_str(&format!("{:04}", t.iso_week().year())),
            'b' => out.push_str(&t.format("%b").to_string()),
            'B' => out.push_str(&t.format("%B").to_string()),
            'Z' => out.push('0'),
            'z' => out.push_str("+0000"),
            '%' => out.push('%'),
            other => {
                return Err(format!(
                    "Invalid format character '%{other}' in format string"
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_info_renders_as_render_info() {
        let mut ms: i64 = -62_167_219_200_000; // 0000-01-01T00:00:00Z
        let end: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
        let mut buf = [0u8; 24];
        while ms <= end {
            assert_eq!(
                write_info(ms, &mut buf),
                Some(render_info(ms).as_str()),
                "{ms}"
            );
            ms += 987_654_321_987;
        }
        // Every day boundary and month end of a few years around the epoch and a leap century.
        for start in [-86_400_000_i64 * 800, 946_684_800_000 - 86_400_000 * 400] {
            for d in 0..1600 {
                let t = start + d * 86_400_000 - 1;
                assert_eq!(
                    write_info(t, &mut buf),
                    Some(render_info(t).as_str()),
                    "{t}"
                );
            }
        }
        assert_eq!(write_info(end, &mut buf), Some("9999-12-31T23:59:59.999Z"));
        assert_eq!(write_info(0, &mut buf), Some("1970-01-01T00:00:00.000Z"));
        assert_eq!(write_info(-1, &mut buf), Some("1969-12-31T23:59:59.999Z"));
        assert_eq!(write_info(end + 1, &mut buf), None);
        assert_eq!(write_info(-62_167_219_200_001, &mut buf), None);
    }

    fn at(s: &str) -> Millis {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .unwrap_or(i64::MIN)
    }

    #[test]
    fn isoparse_forms() {
        assert_eq!(isoparse("2024"), Some(at("2024-01-01T00:00:00Z")));
        assert_eq!(isoparse("2024-03"), Some(at("2024-03-01T00:00:00Z")));
        assert_eq!(isoparse("2024-01-03"), Some(at("2024-01-03T00:00:00Z")));
        assert_eq!(isoparse("20240103"), Some(at("2024-01-03T00:00:00Z")));
        assert_eq!(
            isoparse("2024-01-03T09:00:00+09:00"),
            Some(at("2024-01-03T00:00:00Z"))
        );
        assert_eq!(
            isoparse("2024-01-03T09:30"),
            Some(at("2024-01-03T09:30:00Z"))
        );
        assert_eq!(
            isoparse("2024-01-03T09:30:01.25Z"),
            Some(at("2024-01-03T09:30:01.250Z"))
        );
        assert_eq!(isoparse("2024-01-03T09"), Some(at("2024-01-03T09:00:00Z")));
        assert_eq!(
            isoparse("2024-01-03T093001-0130"),
            Some(at("2024-01-03T11:00:01Z"))
        );
        for bad in [
            "yesterday",
            "2024-13-01",
            "2024-01-03T25:00",
            "24-01-01",
            "2024-01-03T09:30:00+9",
            "",
        ] {
            assert_eq!(isoparse(bad), None, "{bad}");
        }
    }

    #[test]
    fn non_ascii_never_panics() {
        // Each slices inside a multi-byte character at a position the parser used to index.
        for bad in [
            "abcé",
            "é",
            "2024é",
            "202é-01-01",
            "2024-é1-01",
            "2024-01é",
            "2024-01-é1",
            "2024-01-01é",
            "2024-01-01T10:00+1é1",
            "2024-01-01T10:00-éé",
            "2024-01-01T10:00+0é",
            "2024-01-01T10:00:00.é",
            "2024-01-01T1é:00",
            "2024é101",
            "202401é1",
            "20240101é10000",
            "now/é",
            "now - 1é",
            "\u{10ffff}\u{10ffff}\u{10ffff}",
        ] {
            assert_eq!(isoparse(bad), None, "{bad}");
            assert_eq!(lenient_parse(bad), None, "{bad}");
            assert_eq!(parse_timediff(bad, Utc::now()), None, "{bad}");
        }
        // A non-ASCII separator is still a separator, as dateutil's isoparse accepts any.
        assert_eq!(
            isoparse("2024-01-03é09:30"),
            Some(at("2024-01-03T09:30:00Z"))
        );
    }

    #[test]
    fn timediff_grammar() {
        let now = DateTime::parse_from_rfc3339("2024-01-06T12:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        assert_eq!(
            parse_timediff("now/d-2d", now),
            Some(at("2024-01-04T00:00:00Z"))
        );
        assert_eq!(parse_timediff("now", now), Some(at("2024-01-06T12:00:00Z")));
        assert_eq!(
            parse_timediff(" now/w ", now),
            Some(at("2024-01-01T00:00:00Z"))
        );
        assert_eq!(
            parse_timediff("now/m + 1w", now),
            Some(at("2024-01-08T00:00:00Z"))
        );
        assert_eq!(
            parse_timediff("now - 30m", now),
            Some(at("2024-01-06T11:30:00Z"))
        );
        assert_eq!(
            parse_timediff("now|1h", now),
            Some(at("2024-01-06T11:00:00Z"))
        );
        for bad in [
            "now - 1x",
            "tomorrow",
            "now/y",
            "now -",
            "now + 1.5h",
            "now  - 1h",
            "now/d-d",
        ] {
            assert_eq!(parse_timediff(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn renderings() {
        let t = at("2021-11-28T01:58:34.250Z");
        assert_eq!(render_info(t), "2021-11-28T01:58:34.250Z");
        assert_eq!(render_isoformat(t), "2021-11-28T01:58:34.250000Z");
        assert_eq!(
            render_isoformat(at("2021-11-28T01:58:34Z")),
            "2021-11-28T01:58:34Z"
        );
        assert_eq!(date_to_string(t, "%Y-%m").as_deref(), Ok("2021-11"));
        assert_eq!(date_to_string(t, "month").as_deref(), Ok("month"));
        assert!(date_to_string(t, "%Q").is_err());
    }
}
