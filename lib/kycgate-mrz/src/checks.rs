//! ICAO 9303 check digits (7-3-1 weighting) and, per layout, which fields each digit covers.

use serde::{Deserialize, Serialize};

use crate::parse::Format;

/// Value of one MRZ character in the check-digit sum: `0`-`9` → 0-9, `A`-`Z` → 10-35, `<` → 0.
///
/// `None` for anything outside the MRZ alphabet, so callers can tell "not an MRZ" from "bad digit".
pub fn char_value(c: u8) -> Option<u32> {
    match c {
        b'0'..=b'9' => Some(u32::from(c - b'0')),
        b'A'..=b'Z' => Some(u32::from(c - b'A') + 10),
        b'<' => Some(0),
        _ => None,
    }
}

/// Whether `c` belongs to the MRZ alphabet (`A`-`Z`, `0`-`9`, `<`).
pub fn is_mrz_char(c: char) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit() || c == '<'
}

/// The ICAO 9303 check digit (0-9) of `data`: Σ value × weight (7, 3, 1 repeating) mod 10.
///
/// `None` if `data` holds a character outside the MRZ alphabet.
pub fn check_digit(data: &[u8]) -> Option<u8> {
    const WEIGHTS: [u32; 3] = [7, 3, 1];
    let mut sum = 0u32;
    for (i, &c) in data.iter().enumerate() {
        sum += char_value(c)? * WEIGHTS[i % 3];
    }
    // `sum % 10` < 10, so the narrowing cannot lose anything.
    Some((sum % 10) as u8)
}

/// Whether `check` is a digit equal to the check digit of `data`.
///
/// A `<` in a check-digit position never verifies here; the one place ICAO allows it (an empty TD3
/// personal number) is handled by [`evaluate`].
pub fn verify(data: &[u8], check: u8) -> bool {
    check.is_ascii_digit() && check_digit(data) == Some(check - b'0')
}

/// Per-field check-digit results of one MRZ.
///
/// `Option` fields are `None` where the layout has no such digit (personal number: TD3 only;
/// composite: TD1, TD2, TD3), so "absent" is never confused with "failed".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checks {
    /// Document number (including a TD1/TD2 continuation in the optional data).
    pub document_number: bool,
    /// Date of birth.
    pub date_of_birth: bool,
    /// Date of expiry.
    pub date_of_expiry: bool,
    /// TD3 personal number (optional data of line 2); `<` or `0` accepted when the field is empty.
    pub personal_number: Option<bool>,
    /// Composite digit over the upper and middle/lower line data (not on visas).
    pub composite: Option<bool>,
}

// === impl Checks ===

impl Checks {
    /// True when every check digit present in the layout holds.
    pub fn all_hold(&self) -> bool {
        self.document_number
            && self.date_of_birth
            && self.date_of_expiry
            && self.personal_number.unwrap_or(true)
            && self.composite.unwrap_or(true)
    }

    /// Number of check digits present in the layout that fail.
    pub fn failed(&self) -> usize {
        [
            Some(self.document_number),
            Some(self.date_of_birth),
            Some(self.date_of_expiry),
            self.personal_number,
            self.composite,
        ]
        .iter()
        .filter(|c| **c == Some(false))
        .count()
    }
}

/// A run of characters `[start, end)` on line `line` (0-based), as laid out by ICAO 9303.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Line index (0 = top line).
    pub line: usize,
    /// First column, 0-based.
    pub start: usize,
    /// One past the last column.
    pub end: usize,
}

const fn span(line: usize, start: usize, end: usize) -> Span {
    Span { line, start, end }
}

/// Where each field of a layout sits. Columns are 0-based (ICAO numbers them from 1).
///
/// Shared by [`crate::parse`] (reading fields) and [`crate::decode`] (character classes and the
/// positions each check digit protects), so the two can never disagree about the layout.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Number of lines.
    pub lines: usize,
    /// Characters per line.
    pub width: usize,
    /// Document code (2 characters).
    pub document_code: Span,
    /// Issuing state or organisation (3 characters).
    pub issuing_state: Span,
    /// Name field (primary `<<` secondary identifier).
    pub name: Span,
    /// Document number (first 9 characters).
    pub document_number: Span,
    /// Document-number check digit (one column).
    pub document_number_check: Span,
    /// Nationality (3 characters).
    pub nationality: Span,
    /// Date of birth, YYMMDD.
    pub date_of_birth: Span,
    /// Its check digit.
    pub date_of_birth_check: Span,
    /// Sex (one column).
    pub sex: Span,
    /// Date of expiry, YYMMDD.
    pub date_of_expiry: Span,
    /// Its check digit.
    pub date_of_expiry_check: Span,
    /// First optional-data field; in TD1 and TD2 it also carries the tail of a long document number.
    pub optional_data: Span,
    /// TD1's second optional-data field (line 2).
    pub optional_data_2: Option<Span>,
    /// TD3's personal-number field and its check digit.
    pub personal_number: Option<(Span, Span)>,
    /// Composite check: the spans it covers and its digit.
    pub composite: Option<(&'static [Span], Span)>,
    /// Whether a document number longer than 9 characters may continue in `optional_data`
    /// (TD1 and TD2 only): the check column then holds `<`.
    pub long_document_number: bool,
}

const TD1: Layout = Layout {
    lines: 3,
    width: 30,
    document_code: span(0, 0, 2),
    issuing_state: span(0, 2, 5),
    document_number: span(0, 5, 14),
    document_number_check: span(0, 14, 15),
    optional_data: span(0, 15, 30),
    date_of_birth: span(1, 0, 6),
    date_of_birth_check: span(1, 6, 7),
    sex: span(1, 7, 8),
    date_of_expiry: span(1, 8, 14),
    date_of_expiry_check: span(1, 14, 15),
    nationality: span(1, 15, 18),
    optional_data_2: Some(span(1, 18, 29)),
    composite: Some((&[span(0, 5, 30), span(1, 0, 7), span(1, 8, 15), span(1, 18, 29)], span(1, 29, 30))),
    name: span(2, 0, 30),
    personal_number: None,
    long_document_number: true,
};

/// Line 2 of every two-line layout starts the same way; only the tail differs.
const fn two_line(width: usize, tail: TwoLineTail) -> Layout {
    Layout {
        lines: 2,
        width,
        document_code: span(0, 0, 2),
        issuing_state: span(0, 2, 5),
        name: span(0, 5, width),
        document_number: span(1, 0, 9),
        document_number_check: span(1, 9, 10),
        nationality: span(1, 10, 13),
        date_of_birth: span(1, 13, 19),
        date_of_birth_check: span(1, 19, 20),
        sex: span(1, 20, 21),
        date_of_expiry: span(1, 21, 27),
        date_of_expiry_check: span(1, 27, 28),
        optional_data: tail.optional_data,
        optional_data_2: None,
        personal_number: tail.personal_number,
        composite: tail.composite,
        long_document_number: tail.long_document_number,
    }
}

struct TwoLineTail {
    optional_data: Span,
    personal_number: Option<(Span, Span)>,
    composite: Option<(&'static [Span], Span)>,
    long_document_number: bool,
}

const TD2: Layout = two_line(
    36,
    TwoLineTail {
        optional_data: span(1, 28, 35),
        personal_number: None,
        composite: Some((&[span(1, 0, 10), span(1, 13, 20), span(1, 21, 35)], span(1, 35, 36))),
        long_document_number: true,
    },
);

const TD3: Layout = two_line(
    44,
    TwoLineTail {
        // TD3 has no free optional data: columns 29-42 are the personal number.
        optional_data: span(1, 28, 28),
        personal_number: Some((span(1, 28, 42), span(1, 42, 43))),
        composite: Some((&[span(1, 0, 10), span(1, 13, 20), span(1, 21, 43)], span(1, 43, 44))),
        long_document_number: false,
    },
);

const MRV_A: Layout = two_line(
    44,
    TwoLineTail { optional_data: span(1, 28, 44), personal_number: None, composite: None, long_document_number: false },
);

const MRV_B: Layout = two_line(
    36,
    TwoLineTail { optional_data: span(1, 28, 36), personal_number: None, composite: None, long_document_number: false },
);

/// The field layout of `format`.
pub fn layout(format: Format) -> &'static Layout {
    match format {
        Format::Td1 => &TD1,
        Format::Td2 => &TD2,
        Format::Td3 => &TD3,
        Format::MrvA => &MRV_A,
        Format::MrvB => &MRV_B,
    }
}

/// Slice of `lines` covered by `s`; empty if the lines are shorter than the layout says.
pub(crate) fn field<'a>(lines: &[&'a [u8]], s: Span) -> &'a [u8] {
    lines.get(s.line).and_then(|l| l.get(s.start..s.end)).unwrap_or(&[])
}

/// The document number as ICAO defines it, with the TD1/TD2 long-number continuation resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DocumentNumber {
    /// Characters the check digit covers (the full number, fillers included as printed).
    pub data: Vec<u8>,
    /// The check-digit character, if any.
    pub check: Option<u8>,
    /// Optional data left once a continuation (and its terminating `<`) is taken out.
    pub rest: Vec<u8>,
}

/// Splits the document number from its check digit, following the TD1/TD2 rule for numbers longer
/// than 9 characters: the check column holds `<`, the number continues at the start of the optional
/// data, and the last character of that continuation is the check digit.
pub(crate) fn document_number(layout: &Layout, lines: &[&[u8]]) -> DocumentNumber {
    let head = field(lines, layout.document_number);
    let check = field(lines, layout.document_number_check).first().copied();
    let optional = field(lines, layout.optional_data);
    if layout.long_document_number && check == Some(b'<') {
        let run = optional.iter().position(|&c| c == b'<').unwrap_or(optional.len());
        if let Some((&digit, tail)) = optional[..run].split_last() {
            let mut data = head.to_vec();
            data.extend_from_slice(tail);
            let rest = optional.get(run + 1..).unwrap_or(&[]).to_vec();
            return DocumentNumber { data, check: Some(digit), rest };
        }
    }
    DocumentNumber { data: head.to_vec(), check, rest: optional.to_vec() }
}

/// Checks every digit `format` defines, over `lines` (assumed to have the layout's shape;
/// missing characters make the affected checks fail rather than panic).
pub fn evaluate(format: Format, lines: &[&str]) -> Checks {
    let bytes: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
    evaluate_bytes(format, &bytes)
}

/// [`evaluate`] over byte lines, for the decoder's inner loop.
pub(crate) fn evaluate_bytes(format: Format, lines: &[&[u8]]) -> Checks {
    let l = layout(format);
    let digit = |s: Span| field(lines, s).first().copied().unwrap_or(b'?');
    let doc = document_number(l, lines);
    let document_number = doc.check.is_some_and(|c| verify(&doc.data, c));
    let date_of_birth = verify(field(lines, l.date_of_birth), digit(l.date_of_birth_check));
    let date_of_expiry = verify(field(lines, l.date_of_expiry), digit(l.date_of_expiry_check));
    let personal_number = l.personal_number.map(|(data, check)| {
        let data = field(lines, data);
        let check = digit(check);
        let empty = !data.is_empty() && data.iter().all(|&c| c == b'<');
        verify(data, check) || (empty && check == b'<')
    });
    let composite = l.composite.map(|(spans, check)| {
        let data: Vec<u8> = spans.iter().flat_map(|&s| field(lines, s).iter().copied()).collect();
        verify(&data, digit(check))
    });
    Checks { document_number, date_of_birth, date_of_expiry, personal_number, composite }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_and_values() {
        // Worked example from Doc 9303 Part 3 §4.9: date 520727 → check digit 3.
        assert_eq!(check_digit(b"520727"), Some(3));
        assert_eq!(check_digit(b"L898902C3"), Some(6));
        assert_eq!(check_digit(b"<<<<<<<<<<<<<<"), Some(0));
        assert_eq!(check_digit(b"AB2134<<<"), Some(5));
        assert_eq!(check_digit(b"ab"), None);
        assert!(!verify(b"<<<", b'<'));
    }
}
