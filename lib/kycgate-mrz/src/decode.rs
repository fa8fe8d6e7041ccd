//! Recogniser alternatives → MRZ: per-position character classes, then a bounded check-digit search.

use crate::checks::{self, Checks, Layout, Span};
use crate::nationality;
use crate::parse::{self, Format, Mrz, Today};

/// One line as the recogniser sees it: for each character position, alternatives with their
/// probabilities, best first.
pub type Candidates = Vec<Vec<(char, f32)>>;

/// The decoder's reading of an MRZ.
#[derive(Clone, Debug)]
pub struct Decoded {
    /// The parsed zone (its `Debug` prints no personal data).
    pub mrz: Mrz,
    /// Calibrated-ish 0..=1: the chance every character is right, from per-character probabilities,
    /// discounted when check digits fail and raised for checked fields when they hold.
    pub confidence: f32,
    /// Positions whose chosen character differs from the recogniser's top alternative.
    pub corrected: usize,
}

/// Alternatives kept per position after class filtering; the search only looks at these.
const MAX_ALTS: usize = 3;
/// Substitutions (non-best alternatives) the check-digit search may combine.
const MAX_SUBSTITUTIONS: usize = 2;
/// Probability factor for a look-alike (`O`→`0`) of a single plain-text reading.
const CONFUSION_PENALTY: f32 = 0.06;
/// Probability factor for a look-alike used because nothing the recogniser offered fits the class
/// (`0` in a state code → `O`): likely right, but less certain than a direct reading.
const FALLBACK_PENALTY: f32 = 0.5;
/// Probability floor, so `ln` stays finite and a zero never dominates the sum.
const MIN_P: f32 = 1e-6;
/// Chance that a wrong field still satisfies its check digit (one in ten residues): the likelihood
/// ratio a holding check digit contributes to the confidence of the positions it covers.
const UNDETECTED: f32 = 0.1;
/// Total ln-probability the check-digit search may give up over the recogniser's top readings
/// (e^3 ≈ 20: a repaired reading must keep at least 5 % of the top reading's probability). Any field
/// can be made to pass with enough substitutions; past this budget a "fix" is more likely a
/// coincidence than a correction (on synthetic sweeps a budget of 4 made 45 % of unrepairable reads
/// come out wrong-but-valid, 3 made 0.3 %), and a document printed with bad digits must stay
/// invalid. One plain-text look-alike costs ln(1/0.06) ≈ 2.8, so two are never combined.
const MAX_REPAIR_LOSS: f32 = 3.0;
/// Confidence factor per failing check digit.
const FAILED_CHECK: f32 = 0.5;

/// What may stand at a position, from ICAO 9303's field definitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// `A`-`Z` (first character of the document code).
    Upper,
    /// `A`-`Z` or `<` (state codes, names).
    Letter,
    /// `0`-`9` (check digits).
    Digit,
    /// `0`-`9` or `<` (dates, which may be partly unknown; check digits that may be `<`).
    DigitOrFiller,
    /// `M`, `F`, `X` or `<`.
    Sex,
    /// Anything in the MRZ alphabet (document numbers, optional data).
    Any,
}

impl Class {
    fn admits(self, c: u8) -> bool {
        match self {
            Class::Upper => c.is_ascii_uppercase(),
            Class::Letter => c.is_ascii_uppercase() || c == b'<',
            Class::Digit => c.is_ascii_digit(),
            Class::DigitOrFiller => c.is_ascii_digit() || c == b'<',
            Class::Sex => matches!(c, b'M' | b'F' | b'X' | b'<'),
            Class::Any => c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'<',
        }
    }
}

/// Characters OCR commonly confuses with `c`, across the letter/digit boundary.
fn look_alikes(c: u8) -> &'static [u8] {
    match c {
        b'0' => b"OQD",
        b'1' => b"IL",
        b'2' => b"Z",
        b'4' => b"A",
        b'5' => b"S",
        b'6' => b"G",
        b'7' => b"T",
        b'8' => b"B",
        b'O' | b'Q' | b'D' | b'U' => b"0",
        b'I' | b'L' | b'J' => b"1",
        b'Z' => b"2",
        b'A' => b"4",
        b'S' => b"5",
        b'G' => b"6",
        b'T' => b"7",
        b'B' => b"8",
        b'H' | b'N' => b"M",
        b'E' | b'P' => b"F",
        b'K' => b"X",
        _ => b"",
    }
}

/// Class of every position of `format`, line by line.
fn classes(format: Format) -> Vec<Vec<Class>> {
    let l: &Layout = checks::layout(format);
    let mut grid = vec![vec![Class::Any; l.width]; l.lines];
    let mut set = |s: Span, c: Class| {
        for cell in grid[s.line].iter_mut().take(s.end).skip(s.start) {
            *cell = c;
        }
    };
    let dc = l.document_code;
    set(Span { end: dc.start + 1, ..dc }, Class::Upper);
    set(l.issuing_state, Class::Letter);
    set(l.name, Class::Letter);
    set(l.nationality, Class::Letter);
    let doc_check = if l.long_document_number { Class::DigitOrFiller } else { Class::Digit };
    set(l.document_number_check, doc_check);
    set(l.date_of_birth, Class::DigitOrFiller);
    set(l.date_of_birth_check, Class::Digit);
    set(l.sex, Class::Sex);
    set(l.date_of_expiry, Class::DigitOrFiller);
    set(l.date_of_expiry_check, Class::Digit);
    if let Some((_, check)) = l.personal_number {
        // `<` is allowed when the personal number is blank.
        set(check, Class::DigitOrFiller);
    }
    if let Some((_, check)) = l.composite {
        set(check, Class::Digit);
    }
    grid
}

/// A position's usable alternatives: in class, best first, at most [`MAX_ALTS`].
#[derive(Clone, Debug)]
struct Slot {
    /// (character, ln probability), best first; never empty.
    alts: Vec<(u8, f32)>,
    /// The recogniser's own top reading and its ln probability (for corrections and for state codes
    /// kept as read).
    raw_top: Option<(u8, f32)>,
    /// `alts[..offered]` came from the recogniser; the rest are look-alikes added here.
    offered: usize,
}

impl Slot {
    /// ln probability of `c` at this position (negligible if nobody proposed it).
    fn ln_p(&self, c: u8) -> f32 {
        self.alts
            .iter()
            .find(|a| a.0 == c)
            .map(|a| a.1)
            .or_else(|| self.raw_top.filter(|r| r.0 == c).map(|r| r.1))
            .unwrap_or(MIN_P.ln())
    }
}

fn ln(p: f32) -> f32 {
    p.clamp(MIN_P, 1.0).ln()
}

/// Filters one position's alternatives to its class, adding look-alikes the recogniser missed.
fn slot(raw: &[(char, f32)], class: Class) -> Slot {
    let mut alts: Vec<(u8, f32)> = Vec::with_capacity(MAX_ALTS + 2);
    let mut valid: Vec<(u8, f32)> = raw
        .iter()
        .filter(|(c, p)| c.is_ascii() && p.is_finite())
        .map(|&(c, p)| (c as u8, p))
        .filter(|&(c, _)| Class::Any.admits(c))
        .collect();
    valid.sort_by(|a, b| b.1.total_cmp(&a.1));
    let raw_top = raw.first().and_then(|&(c, p)| c.is_ascii().then_some((c as u8, ln(p))));
    for &(c, p) in &valid {
        if class.admits(c) && !alts.iter().any(|a| a.0 == c) {
            alts.push((c, p));
        }
    }
    let offered = alts.len().min(MAX_ALTS);
    // Look-alikes stand in when nothing offered fits the class (mild discount), and give plain text
    // (a single reading, no distribution) something to search. A recogniser's own low-probability
    // alternatives already say how likely a look-alike is, so they are not second-guessed.
    let penalty = if alts.is_empty() {
        FALLBACK_PENALTY
    } else if valid.len() == 1 {
        CONFUSION_PENALTY
    } else {
        0.0
    };
    for &(c, p) in valid.iter().filter(|_| penalty > 0.0) {
        for &l in look_alikes(c) {
            if class.admits(l) && !alts.iter().any(|a| a.0 == l) {
                alts.push((l, p * penalty));
            }
        }
    }
    if alts.is_empty() {
        // Nothing fits the class: keep what was seen (parse reports it as it is) or, for noise
        // outside the alphabet, a filler of negligible probability.
        alts.push(valid.first().copied().unwrap_or((b'<', MIN_P)));
    }
    alts.truncate(MAX_ALTS);
    Slot { alts: alts.into_iter().map(|(c, p)| (c, ln(p))).collect(), raw_top, offered }
}

/// The working reading: chosen character per position, plus what is left of the repair budget.
struct Work<'a> {
    format: Format,
    slots: &'a [Vec<Slot>],
    chars: Vec<Vec<u8>>,
    budget: f32,
    /// Search only the recogniser's own alternatives (no look-alikes).
    offered_only: bool,
}

impl Work<'_> {
    fn checks(&self) -> Checks {
        let lines: Vec<&[u8]> = self.chars.iter().map(Vec::as_slice).collect();
        checks::evaluate_bytes(self.format, &lines)
    }

    /// Most probable assignment of at most [`MAX_SUBSTITUTIONS`] non-top alternatives over
    /// `positions` that makes `accept` true and fits the remaining budget; applied in place.
    /// Returns whether one was found.
    fn search(&mut self, positions: &[(usize, usize)], accept: &dyn Fn(&Checks) -> bool) -> bool {
        // (position index, alternative index, ln-prob loss versus the current reading)
        let moves: Vec<(usize, usize, f32)> = positions
            .iter()
            .enumerate()
            .flat_map(|(i, &(l, c))| {
                let slot = &self.slots[l][c];
                let alts = &slot.alts;
                let usable = if self.offered_only { slot.offered } else { alts.len() };
                let current = self.chars[l][c];
                let now = alts.iter().find(|a| a.0 == current).map_or(MIN_P.ln(), |a| a.1);
                (0..usable).filter(move |&a| alts[a].0 != current).map(move |a| (i, a, now - alts[a].1))
            })
            .filter(|m| m.2 <= self.budget)
            .collect();
        let original = self.chars.clone();
        let mut best: Option<(f32, Vec<usize>)> = None;
        let budget = self.budget;
        let mut consider = |work: &mut Self, combo: &[usize]| {
            let loss: f32 = combo.iter().map(|&m| moves[m].2).sum();
            if loss > budget || best.as_ref().is_some_and(|(b, _)| *b <= loss) {
                return;
            }
            for &m in combo {
                let (i, a, _) = moves[m];
                let (l, c) = positions[i];
                work.chars[l][c] = work.slots[l][c].alts[a].0;
            }
            if accept(&work.checks()) {
                best = Some((loss, combo.to_vec()));
            }
            for &m in combo {
                let (l, c) = positions[moves[m].0];
                work.chars[l][c] = original[l][c];
            }
        };
        for m in 0..moves.len() {
            consider(self, &[m]);
        }
        if MAX_SUBSTITUTIONS >= 2 {
            for m in 0..moves.len() {
                for n in m + 1..moves.len() {
                    // Two alternatives at the same position are not a pair of substitutions.
                    if moves[m].0 != moves[n].0 {
                        consider(self, &[m, n]);
                    }
                }
            }
        }
        let Some((loss, combo)) = best else { return false };
        for m in combo {
            let (i, a, _) = moves[m];
            let (l, c) = positions[i];
            self.chars[l][c] = self.slots[l][c].alts[a].0;
        }
        self.budget -= loss;
        true
    }

    /// Class forcing may turn an unusual code (`132` on old Romanian IDs) into letters that mean
    /// nothing (`I3Z`); a code is only changed when the result is a known state or organisation.
    /// When the best in-class letters make no known code, the letter look-alikes of the digits read
    /// (`0`→`O`, `1`→`I`, `5`→`S`, `8`→`B`, `2`→`Z`, …) are tried at those positions; the most
    /// probable known code wins (`UT0` → `UTO`), a look-alike the recogniser offered counting at its
    /// own probability. Other letters it offered are not tried: on blurred old Romanian IDs they
    /// turned `132` into a known code. No check digit covers the code, so nothing else is changed
    /// on its account.
    fn keep_state_code_as_read(&mut self, s: Span) {
        let raw: Option<Vec<u8>> = (s.start..s.end).map(|c| self.slots[s.line][c].raw_top.map(|r| r.0)).collect();
        let Some(raw) = raw else { return };
        let forced = &self.chars[s.line][s.start..s.end];
        let known = std::str::from_utf8(forced).is_ok_and(nationality::is_known);
        if forced == raw.as_slice() || known || !raw.iter().all(|&c| Class::Any.admits(c)) {
            return;
        }
        let code = self.known_code_from_look_alikes(s, &raw).unwrap_or(raw);
        self.chars[s.line][s.start..s.end].copy_from_slice(&code);
    }

    /// The most probable known code that keeps `raw`'s letters and fillers and puts, at each digit,
    /// one of the digit's letter look-alikes (at its offered probability, else at the digit's times
    /// [`CONFUSION_PENALTY`]).
    fn known_code_from_look_alikes(&self, s: Span, raw: &[u8]) -> Option<Vec<u8>> {
        let choices: Vec<Vec<(u8, f32)>> = raw
            .iter()
            .enumerate()
            .map(|(i, &r)| {
                let slot = &self.slots[s.line][s.start + i];
                if Class::Letter.admits(r) {
                    return vec![(r, 0.0)];
                }
                // Only the digit's own look-alikes: `3` has none, so `132` (old Romanian IDs) stays,
                // whatever letters a blurred read offers there. An offered look-alike counts at its
                // own probability.
                let base = slot.raw_top.map_or(MIN_P.ln(), |t| t.1) + CONFUSION_PENALTY.ln();
                look_alikes(r)
                    .iter()
                    .filter(|l| l.is_ascii_uppercase())
                    .map(|&l| {
                        let offered = slot.alts[..slot.offered].iter().find(|a| a.0 == l).map(|a| a.1);
                        (l, offered.unwrap_or(base))
                    })
                    .collect()
            })
            .collect();
        if choices.iter().any(Vec::is_empty) {
            return None;
        }
        let mut best: Option<(f32, Vec<u8>)> = None;
        let mut pick = vec![0usize; raw.len()];
        loop {
            let code: Vec<u8> = pick.iter().zip(&choices).map(|(&k, c)| c[k].0).collect();
            let lp: f32 = pick.iter().zip(&choices).map(|(&k, c)| c[k].1).sum();
            let known = std::str::from_utf8(&code).is_ok_and(nationality::is_known);
            if known && best.as_ref().is_none_or(|b| lp > b.0) {
                best = Some((lp, code));
            }
            // Next combination (odometer).
            let mut i = 0;
            loop {
                if i == pick.len() {
                    return best.map(|b| b.1);
                }
                pick[i] += 1;
                if pick[i] < choices[i].len() {
                    break;
                }
                pick[i] = 0;
                i += 1;
            }
        }
    }
}

/// Every (line, column) in `spans`.
fn cells(spans: &[Span]) -> Vec<(usize, usize)> {
    spans.iter().flat_map(|s| (s.start..s.end).map(move |c| (s.line, c))).collect()
}

/// Which check result a group of positions answers to.
type Holds = fn(&Checks) -> bool;

/// Positions the search may touch for each field check digit, in the order they are repaired.
/// Names, sex and nationality are in none of them (the composite skips them too, per ICAO).
fn check_groups(l: &Layout) -> Vec<(Vec<(usize, usize)>, Holds)> {
    let mut doc = vec![l.document_number, l.document_number_check];
    if l.long_document_number {
        // A long number continues in the optional data, with its check digit there.
        doc.push(l.optional_data);
    }
    let mut groups: Vec<(Vec<(usize, usize)>, Holds)> = vec![
        (cells(&doc), |c| c.document_number),
        (cells(&[l.date_of_birth, l.date_of_birth_check]), |c| c.date_of_birth),
        (cells(&[l.date_of_expiry, l.date_of_expiry_check]), |c| c.date_of_expiry),
    ];
    if let Some((data, check)) = l.personal_number {
        groups.push((cells(&[data, check]), |c| c.personal_number == Some(true)));
    }
    groups
}

/// Chooses the most probable MRZ consistent with the layout's character classes and, where the
/// alternatives allow within a bounded loss, its check digits. `None` if the line count/lengths fit
/// no ICAO layout.
///
/// Name, sex and nationality characters take their best in-class alternative and are never changed
/// to satisfy a check digit: no digit covers them, so any change would be a guess.
pub fn decode(lines: &[Candidates], today: Today) -> Option<Decoded> {
    let width = lines.first()?.len();
    if lines.iter().any(|l| l.len() != width) {
        return None;
    }
    // The format hinges on whether the document code starts with `V`.
    let first = slot(lines[0].first()?, Class::Upper).alts[0].0;
    let format = Format::detect(lines.len(), width, first)?;
    let layout = checks::layout(format);
    let slots: Vec<Vec<Slot>> = classes(format)
        .iter()
        .zip(lines)
        .map(|(cls, line)| cls.iter().zip(line).map(|(&c, raw)| slot(raw, c)).collect())
        .collect();
    // Look-alikes the recogniser never offered may only stand if they make the whole MRZ consistent;
    // otherwise (a document printed with bad digits, an unreadable field) repair from its own
    // alternatives only, so coincidental "fixes" do not alter the text.
    let mut work = repair(format, &slots, false);
    if !work.checks().all_hold() {
        work = repair(format, &slots, true);
    }
    let confidence = confidence(layout, &slots, &work.chars, &work.checks());
    let corrected = slots
        .iter()
        .zip(&work.chars)
        .flat_map(|(s, c)| s.iter().zip(c))
        .filter(|(s, &c)| s.raw_top.map(|r| r.0) != Some(c))
        .count();
    let text: Vec<String> = work.chars.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect();
    let refs: Vec<&str> = text.iter().map(String::as_str).collect();
    let mrz = parse::parse(&refs, today).ok()?;
    Some(Decoded { mrz, confidence, corrected })
}

/// The in-class reading, then the bounded check-digit search: each failing field check in turn,
/// and the composite once every field holds.
fn repair(format: Format, slots: &[Vec<Slot>], offered_only: bool) -> Work<'_> {
    let layout = checks::layout(format);
    let chars = slots.iter().map(|l| l.iter().map(|s| s.alts[0].0).collect()).collect();
    let mut work = Work { format, slots, chars, budget: MAX_REPAIR_LOSS, offered_only };
    work.keep_state_code_as_read(layout.issuing_state);
    work.keep_state_code_as_read(layout.nationality);
    for (positions, holds) in check_groups(layout) {
        if !holds(&work.checks()) {
            work.search(&positions, &holds);
        }
    }
    if let Some((spans, check)) = layout.composite {
        let before = work.checks();
        // A failing field check already explains a failing composite; only when every field holds
        // does it point at unchecked optional data, the composite digit, or a compensating error.
        let fields_hold = before.document_number
            && before.date_of_birth
            && before.date_of_expiry
            && before.personal_number != Some(false);
        if fields_hold && before.composite == Some(false) {
            let mut positions = cells(spans);
            positions.extend(cells(&[check]));
            let all: Holds = |c| c.all_hold();
            work.search(&positions, &all);
        }
    }
    work
}

/// Probability that every chosen character is right.
///
/// Unchecked positions (names, codes, sex, fillers) count at face value. Each check digit turns the
/// probability `p` of the positions it covers into the posterior `p / (p + (1 - p) · 0.1)` when it
/// holds (a wrong field passes one time in ten), or `p · 0.5` when it fails.
fn confidence(l: &Layout, slots: &[Vec<Slot>], chars: &[Vec<u8>], checks: &Checks) -> f32 {
    let mut group: Vec<Vec<Option<usize>>> = vec![vec![None; l.width]; l.lines];
    let mut holds: Vec<bool> = Vec::new();
    let mut assign = |spans: &[Span], ok: bool| {
        for (line, col) in cells(spans) {
            group[line][col].get_or_insert(holds.len());
        }
        holds.push(ok);
    };
    assign(&[l.document_number, l.document_number_check], checks.document_number);
    assign(&[l.date_of_birth, l.date_of_birth_check], checks.date_of_birth);
    assign(&[l.date_of_expiry, l.date_of_expiry_check], checks.date_of_expiry);
    if let (Some((data, check)), Some(ok)) = (l.personal_number, checks.personal_number) {
        assign(&[data, check], ok);
    }
    if let (Some((spans, check)), Some(ok)) = (l.composite, checks.composite) {
        let mut all = spans.to_vec();
        all.push(check);
        // Positions already in a field group stay there; the composite covers the rest.
        assign(&all, ok);
    }
    let mut ln_group = vec![0f32; holds.len()];
    let mut ln_free = 0f32;
    for (line, row) in group.iter().enumerate() {
        for (col, g) in row.iter().enumerate() {
            let lp = slots[line][col].ln_p(chars[line][col]);
            match g {
                Some(i) => ln_group[*i] += lp,
                None => ln_free += lp,
            }
        }
    }
    let checked: f32 = ln_group
        .iter()
        .zip(&holds)
        .map(|(lp, &ok)| {
            let p = lp.exp();
            if ok {
                p / (p + (1.0 - p) * UNDETECTED)
            } else {
                p * FAILED_CHECK
            }
        })
        .product();
    (ln_free.exp() * checked).clamp(0.0, 1.0)
}

/// [`decode`] for a recogniser that returns plain text: each character becomes a single
/// alternative of probability 1, so only class constraints and look-alikes can change it.
pub fn decode_text(lines: &[&str], today: Today) -> Option<Decoded> {
    let cands: Vec<Candidates> = lines.iter().map(|l| l.trim().chars().map(|c| vec![(c, 1.0)]).collect()).collect();
    decode(&cands, today)
}
