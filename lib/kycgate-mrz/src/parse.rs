//! ICAO 9303 MRZ text → fields: format detection, names, dates with century rules, check digits.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use crate::checks::Checks;
use crate::checks::{self, field, Layout, Span};

/// The five ICAO 9303 machine-readable layouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Format {
    /// ID-1 card: 3 lines × 30 (Doc 9303 Part 5).
    Td1,
    /// ID-2 card: 2 lines × 36 (Part 6).
    Td2,
    /// Passport booklet: 2 lines × 44 (Part 4).
    Td3,
    /// Full-size visa: 2 lines × 44, document code `V` (Part 7).
    MrvA,
    /// Small visa: 2 lines × 36, document code `V` (Part 7).
    MrvB,
}

// === impl Format ===

impl Format {
    /// The layout's name as reported in results (`TD1`, `TD2`, `TD3`, `MRVA`, `MRVB`).
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Td1 => "TD1",
            Format::Td2 => "TD2",
            Format::Td3 => "TD3",
            Format::MrvA => "MRVA",
            Format::MrvB => "MRVB",
        }
    }

    /// Picks the layout from the line count, the line length and the first character (visas start
    /// with `V`). `None` if the shape matches no ICAO layout.
    pub fn detect(line_count: usize, width: usize, first_char: u8) -> Option<Format> {
        let visa = first_char == b'V';
        match (line_count, width, visa) {
            (3, 30, _) => Some(Format::Td1),
            (2, 36, false) => Some(Format::Td2),
            (2, 36, true) => Some(Format::MrvB),
            (2, 44, false) => Some(Format::Td3),
            (2, 44, true) => Some(Format::MrvA),
            _ => None,
        }
    }

    /// Lines in this layout.
    pub fn line_count(self) -> usize {
        checks::layout(self).lines
    }

    /// Characters per line in this layout.
    pub fn width(self) -> usize {
        checks::layout(self).width
    }
}

/// A date as printed in the MRZ; a part is `None` when printed as `<<`, non-digits, `00` (month or
/// day) or out of range, because ICAO lets issuers leave parts of a date unknown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MrzDate {
    /// Four-digit year, century resolved against [`Today`].
    pub year: Option<i32>,
    /// Month 1-12.
    pub month: Option<u32>,
    /// Day of month, valid for the month (and year, when known).
    pub day: Option<u32>,
}

// === impl MrzDate ===

impl MrzDate {
    /// True when year, month and day are all known.
    pub fn is_complete(&self) -> bool {
        self.year.is_some() && self.month.is_some() && self.day.is_some()
    }

    /// `Y-M-D` without zero padding and `None` for unknown parts (`1991-9-24`, `None-None-None`),
    /// the date format of the Progeny v3 API.
    pub fn ymd(&self) -> String {
        fn part<T: fmt::Display>(v: Option<T>) -> String {
            v.map_or_else(|| "None".to_owned(), |v| v.to_string())
        }
        format!("{}-{}-{}", part(self.year), part(self.month), part(self.day))
    }

    /// Whole years from this date (a birth date) to `today`, or `None` if the year is unknown.
    ///
    /// Unknown month or day count as the latest possible, so the age is never overstated (an age
    /// gate must not pass a minor because the MRZ left the birthday blank).
    pub fn age_on(&self, today: Today) -> Option<u32> {
        let year = self.year?;
        let month = self.month.unwrap_or(12);
        let day = self.day.unwrap_or_else(|| days_in_month(year, month));
        let mut age = today.year - year;
        if (today.month, today.day) < (month, day) {
            age -= 1;
        }
        u32::try_from(age).ok()
    }

    /// Whether this date (an expiry date) is strictly before `today`; `None` if the year is unknown.
    ///
    /// Unknown month or day count as the latest possible: only a certainly-past date is "expired".
    pub fn is_before(&self, today: Today) -> Option<bool> {
        let year = self.year?;
        let month = self.month.unwrap_or(12);
        let day = self.day.unwrap_or_else(|| days_in_month(year, month));
        Some((year, month, day) < (today.year, today.month, today.day))
    }
}

/// The current calendar date, passed in by the caller so parsing is deterministic and testable.
///
/// Two-digit MRZ years are resolved against it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Today {
    /// Four-digit year.
    pub year: i32,
    /// Month 1-12.
    pub month: u32,
    /// Day of month 1-31.
    pub day: u32,
}

// === impl Today ===

impl Today {
    /// The UTC date of `t` (dates before 1970 clamp to 1970-01-01; MRZ reading has no use for them).
    pub fn from_system_time(t: SystemTime) -> Today {
        let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
        civil_from_days(days)
    }

    /// Today's UTC date from the system clock.
    pub fn now() -> Today {
        Today::from_system_time(SystemTime::now())
    }
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> Today {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Today {
        year: i32::try_from(year).unwrap_or(i32::MAX),
        // Both are small positive numbers by construction (1..=12, 1..=31).
        month: month as u32,
        day: day as u32,
    }
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Days in `month` of `year` (31 for an out-of-range month, the lenient bound).
fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 31,
    }
}

/// A parsed machine-readable zone.
///
/// `Debug` is written by hand and prints only the format and check results: every other field is
/// personal data and must not reach logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mrz {
    /// Which ICAO layout the lines follow.
    pub format: Format,
    /// Document code with filler removed (`P`, `I`, `ID`, `V`, `AC`, `C1`, …).
    pub document_code: String,
    /// Issuing state or organisation, filler removed (`UTO`, `D` for `D<<`, `XOM`, …), never corrected.
    pub issuing_state: String,
    /// Primary identifier: the name field before the first `<<`, `<` turned into spaces.
    pub surname: String,
    /// Secondary identifier: the name field after the first `<<`, `<` runs turned into single spaces.
    pub given_names: String,
    /// Document number, trailing filler removed, long-number continuation appended.
    pub document_number: String,
    /// Nationality code as printed, filler removed (`D`, `GBD`, `XXA`, …), never corrected.
    pub nationality: String,
    /// Date of birth; century chosen so the date is not after `today`.
    pub date_of_birth: MrzDate,
    /// `M`, `F`, or `X` (printed `<` or `X`); `None` for any other character.
    pub sex: Option<char>,
    /// Date of expiry; century chosen within 50 years either side of `today`.
    pub date_of_expiry: MrzDate,
    /// TD3 personal number (the field its own check digit covers); `None` if blank or not TD3.
    pub personal_number: Option<String>,
    /// Optional data (TD1 line 1 after any number continuation, TD2, MRV-A/B line 2); `None` if blank.
    pub optional_data: Option<String>,
    /// TD1's second optional-data field (line 2, columns 19-29); `None` if blank or not TD1.
    pub optional_data_2: Option<String>,
    /// The lines as parsed (surrounding whitespace trimmed), for audit and re-checking.
    pub lines: Vec<String>,
    /// Per-field check-digit results.
    pub checks: Checks,
    /// Every check digit present in the layout holds.
    pub valid: bool,
}

impl fmt::Debug for Mrz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mrz")
            .field("format", &self.format)
            .field("checks", &self.checks)
            .field("valid", &self.valid)
            .finish_non_exhaustive()
    }
}

/// Why text could not be parsed as an MRZ. Positions are 0-based; no variant carries the text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// An MRZ has two or three lines.
    #[error("an MRZ has 2 or 3 lines, got {0}")]
    LineCount(usize),
    /// The lines differ in length, or their length fits no layout for this line count.
    #[error("line lengths {lengths:?} match no ICAO 9303 layout")]
    UnknownLayout {
        /// Length of each line, in characters.
        lengths: Vec<usize>,
    },
    /// A character outside `A`-`Z`, `0`-`9` and `<`.
    #[error("line {line}, column {column}: character outside A-Z, 0-9 and '<'")]
    InvalidCharacter {
        /// Line index.
        line: usize,
        /// Column index.
        column: usize,
    },
}

/// Parses MRZ lines (top first) into fields, validating every check digit of the layout.
///
/// Surrounding whitespace on each line is ignored; nothing else is altered. Check-digit failures do
/// not make this fail: they are reported in [`Mrz::checks`] and [`Mrz::valid`].
pub fn parse(lines: &[&str], today: Today) -> Result<Mrz, ParseError> {
    if !(2..=3).contains(&lines.len()) {
        return Err(ParseError::LineCount(lines.len()));
    }
    let lines: Vec<&str> = lines.iter().map(|l| l.trim()).collect();
    for (i, l) in lines.iter().enumerate() {
        if let Some((column, _)) = l.char_indices().find(|(_, c)| !checks::is_mrz_char(*c)) {
            // The line is ASCII up to `column`, so the byte index is the column.
            return Err(ParseError::InvalidCharacter { line: i, column });
        }
    }
    let width = lines[0].len();
    let same = lines.iter().all(|l| l.len() == width);
    let first = lines[0].as_bytes().first().copied().unwrap_or(b'<');
    let format = Format::detect(lines.len(), width, first)
        .filter(|_| same)
        .ok_or_else(|| ParseError::UnknownLayout { lengths: lines.iter().map(|l| l.len()).collect() })?;
    let bytes: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
    Ok(fields(format, &bytes, today))
}

/// Reads every field of a shape-checked MRZ.
fn fields(format: Format, lines: &[&[u8]], today: Today) -> Mrz {
    let l: &Layout = checks::layout(format);
    let text = |s: Span| String::from_utf8_lossy(field(lines, s)).into_owned();
    let code = |s: Span| text(s).trim_end_matches('<').to_owned();
    let doc = checks::document_number(l, lines);
    let (surname, given_names) = split_name(field(lines, l.name));
    let checks = checks::evaluate_bytes(format, lines);
    Mrz {
        format,
        document_code: code(l.document_code),
        issuing_state: code(l.issuing_state),
        surname,
        given_names,
        document_number: String::from_utf8_lossy(&doc.data).trim_end_matches('<').to_owned(),
        nationality: code(l.nationality),
        date_of_birth: birth_date(field(lines, l.date_of_birth), today),
        sex: match field(lines, l.sex).first() {
            Some(b'M') => Some('M'),
            Some(b'F') => Some('F'),
            Some(b'<' | b'X') => Some('X'),
            _ => None,
        },
        date_of_expiry: expiry_date(field(lines, l.date_of_expiry), today),
        personal_number: l.personal_number.and_then(|(s, _)| optional(field(lines, s))),
        optional_data: optional(&doc.rest),
        optional_data_2: l.optional_data_2.and_then(|s| optional(field(lines, s))),
        lines: lines.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect(),
        valid: checks.all_hold(),
        checks,
    }
}

/// Optional data with filler stripped from both ends; `None` if nothing is left.
fn optional(data: &[u8]) -> Option<String> {
    let s = String::from_utf8_lossy(data);
    let s = s.trim_matches('<');
    (!s.is_empty()).then(|| s.to_owned())
}

/// Splits a name field at the first `<<` into (primary, secondary) identifiers. `<` separates name
/// components and becomes a single space; trailing filler is dropped. Truncated names stay truncated.
fn split_name(field: &[u8]) -> (String, String) {
    let s = String::from_utf8_lossy(field);
    let s = s.trim_end_matches('<');
    let (primary, secondary) = s.split_once("<<").unwrap_or((s, ""));
    let words = |p: &str| p.split('<').filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
    (words(primary), words(secondary))
}

/// Two ASCII digits → number; anything else (`<<`, OCR noise) → `None`.
fn two_digits(b: &[u8]) -> Option<u32> {
    match b {
        [a @ b'0'..=b'9', c @ b'0'..=b'9'] => Some(u32::from(a - b'0') * 10 + u32::from(c - b'0')),
        _ => None,
    }
}

/// Splits YYMMDD; month and day are `None` unless in range (`00` is the usual "unknown").
fn date_parts(raw: &[u8]) -> (Option<u32>, Option<u32>, Option<u32>) {
    let part = |i: usize| raw.get(i..i + 2).and_then(two_digits);
    let month = part(2).filter(|m| (1..=12).contains(m));
    let day = part(4).filter(|d| (1..=31).contains(d));
    (part(0), month, day)
}

/// Keeps the day only if it exists in that month of that year.
fn finish(year: Option<i32>, month: Option<u32>, day: Option<u32>) -> MrzDate {
    let day = match (year, month, day) {
        (y, Some(m), Some(d)) => (d <= days_in_month(y.unwrap_or(2000), m)).then_some(d),
        (_, _, d) => d,
    };
    MrzDate { year, month, day }
}

/// Birth date: the latest century that does not put the (earliest possible) date after `today`.
pub(crate) fn birth_date(raw: &[u8], today: Today) -> MrzDate {
    let (yy, month, day) = date_parts(raw);
    let year = yy.map(|yy| {
        // yy < 100, so the cast is lossless.
        let mut y = today.year.div_euclid(100) * 100 + yy as i32;
        if (y, month.unwrap_or(1), day.unwrap_or(1)) > (today.year, today.month, today.day) {
            y -= 100;
        }
        y
    });
    finish(year, month, day)
}

/// Expiry date: the year ending in `yy` within (today − 50, today + 50] years.
pub(crate) fn expiry_date(raw: &[u8], today: Today) -> MrzDate {
    let (yy, month, day) = date_parts(raw);
    let year = yy.map(|yy| {
        let mut y = today.year.div_euclid(100) * 100 + yy as i32;
        if y > today.year + 50 {
            y -= 100;
        } else if y <= today.year - 50 {
            y += 100;
        }
        y
    });
    finish(year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), Today { year: 1970, month: 1, day: 1 });
        // 2000-02-29 is day 11016; 2024-12-31 is day 20088.
        assert_eq!(civil_from_days(11_016), Today { year: 2000, month: 2, day: 29 });
        assert_eq!(civil_from_days(20_088), Today { year: 2024, month: 12, day: 31 });
    }

    #[test]
    fn names() {
        assert_eq!(split_name(b"ERIKSSON<<ANNA<MARIA<<<<"), ("ERIKSSON".into(), "ANNA MARIA".into()));
        assert_eq!(split_name(b"SPITERI<MANDY<<<<<<"), ("SPITERI MANDY".into(), String::new()));
        assert_eq!(split_name(b"<<<<<<"), (String::new(), String::new()));
    }
}
