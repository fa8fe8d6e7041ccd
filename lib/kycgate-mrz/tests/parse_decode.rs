//! Layout-constrained decoding: character classes, check-digit repair from alternatives, names left alone.

use kycgate_mrz::decode::{decode, decode_text, Candidates};
use kycgate_mrz::parse::{parse, Format, MrzDate, Today};

const TODAY: Today = Today { year: 2025, month: 6, day: 1 };

const TD3: [&str; 2] = ["P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<", "L898902C36UTO7408122F1204159ZE184226B<<<<<10"];
const LVA: [&str; 3] =
    ["I<LVAPA99929216121282<88882<<<", "8212122M1703054LVA<<<<<<<<<<<0", "PARAUDZINS<<ANDRIS<<<<<<<<<<<<"];
const FRA: [&str; 3] =
    ["IRFRAK682T8YLO0<1105040043<<<<", "7906123F1401073SEN<<<<<<<<<<<6", "MARTIN<<CHRISTELLE<HELENE<LAUR"];

/// A confident single reading of `line` (0.98 per character).
fn confident(line: &str) -> Candidates {
    line.chars().map(|c| vec![(c, 0.98)]).collect()
}

/// An override of one position: (line, column, alternatives).
type Edit<'a> = (usize, usize, &'a [(char, f32)]);

/// Recogniser output for `lines` with the given overrides.
fn noisy(lines: &[&str], edits: &[Edit<'_>]) -> Vec<Candidates> {
    let mut out: Vec<Candidates> = lines.iter().map(|l| confident(l)).collect();
    for &(l, c, alts) in edits {
        out[l][c] = alts.to_vec();
    }
    out
}

/// What a decode case must produce.
struct Expect<'a> {
    lines: &'a [&'a str],
    corrected: usize,
    valid: bool,
}

/// Decodes `input` and compares the chosen text, correction count and validity with `expected`.
fn check(input: &[Candidates], expected: Expect<'_>) {
    let d = decode(input, TODAY).expect("decodes");
    assert_eq!(d.mrz.lines, expected.lines, "chosen text");
    assert_eq!(d.corrected, expected.corrected, "corrected positions");
    assert_eq!(d.mrz.valid, expected.valid, "check digits");
    assert!((0.0..=1.0).contains(&d.confidence), "confidence {}", d.confidence);
}

#[test]
fn clean_text_round_trips() {
    for lines in [&TD3[..], &LVA[..], &FRA[..]] {
        let d = decode_text(lines, TODAY).expect("decodes");
        assert_eq!(d.mrz, parse(lines, TODAY).expect("parses"));
        assert_eq!(d.corrected, 0);
        assert_eq!(d.confidence, 1.0);
    }
}

#[test]
fn repairs_check_relevant_digit_but_not_names_or_sex() {
    // Birth-date digit misread 4→1 (alternative 4 offered); a name letter and the sex are misread
    // too, with the truth as second alternative: no check digit covers those, so they stay.
    let input = noisy(
        &TD3,
        &[
            (1, 14, &[('1', 0.6), ('4', 0.35), ('7', 0.05)]),
            (0, 6, &[('B', 0.55), ('R', 0.45)]),
            (1, 20, &[('M', 0.5), ('F', 0.45)]),
        ],
    );
    check(
        &input,
        Expect {
            lines: &["P<UTOEBIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<", "L898902C36UTO7408122M1204159ZE184226B<<<<<10"],
            corrected: 1,
            valid: true,
        },
    );
    let d = decode(&input, TODAY).expect("decodes");
    assert_eq!(d.mrz.date_of_birth, MrzDate { year: Some(1974), month: Some(8), day: Some(12) });
    assert_eq!((d.mrz.surname.as_str(), d.mrz.sex), ("EBIKSSON", Some('M')));
}

#[test]
fn check_digit_decides_letter_o_versus_zero_in_document_number() {
    let input = noisy(&FRA, &[(0, 13, &[('0', 0.55), ('O', 0.45)])]);
    check(&input, Expect { lines: &FRA, corrected: 1, valid: true });
}

#[test]
fn composite_repairs_optional_data() {
    // Optional data has no digit of its own; the composite catches 8→3.
    let input = noisy(&LVA, &[(0, 19, &[('3', 0.6), ('8', 0.3)])]);
    check(&input, Expect { lines: &LVA, corrected: 1, valid: true });
}

#[test]
fn repairs_the_check_digit_itself() {
    // Expiry check digit 9 read as 8 (9 offered second).
    let input = noisy(&TD3, &[(1, 27, &[('8', 0.7), ('9', 0.2)])]);
    check(&input, Expect { lines: &TD3, corrected: 1, valid: true });
}

#[test]
fn character_classes_force_letters_and_digits() {
    // Plain text with look-alikes: state codes take letters, dates take digits.
    let d = decode_text(
        &["P<UT0ERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<", "L898902C36UT07408122F12O4159ZE184226B<<<<<10"],
        TODAY,
    )
    .expect("decodes");
    assert_eq!(d.mrz.lines, TD3);
    assert_eq!(d.corrected, 3);
    assert!(d.mrz.valid);
    assert!(d.confidence > 0.0 && d.confidence < 1.0, "{}", d.confidence);
    // With recogniser alternatives, the in-class one wins even when it is not the top reading.
    let input = noisy(&TD3, &[(1, 11, &[('7', 0.5), ('T', 0.4)]), (1, 16, &[('B', 0.6), ('8', 0.3)])]);
    check(&input, Expect { lines: &TD3, corrected: 2, valid: true });
}

#[test]
fn unrepairable_failure_is_reported_not_hidden() {
    // Wrong birth-date digit with no alternative: the MRZ decodes but is invalid and less trusted.
    let input = noisy(&TD3, &[(1, 14, &[('1', 0.98)])]);
    let d = decode(&input, TODAY).expect("decodes");
    assert!(!d.mrz.valid && !d.mrz.checks.date_of_birth);
    assert_eq!(d.corrected, 0);
    let clean = decode(&noisy(&TD3, &[]), TODAY).expect("decodes");
    assert!(d.confidence < clean.confidence * 0.6, "{} vs {}", d.confidence, clean.confidence);
}

#[test]
fn confidence_follows_character_probabilities() {
    let sure = decode(&noisy(&TD3, &[]), TODAY).expect("decodes");
    let unsure_name = decode(&noisy(&TD3, &[(0, 7, &[('I', 0.5), ('L', 0.4)])]), TODAY).expect("decodes");
    assert!(unsure_name.confidence < sure.confidence);
    // A doubtful character inside a field whose check digit holds costs much less than one in a name.
    let unsure_doc = decode(&noisy(&TD3, &[(1, 1, &[('8', 0.5), ('4', 0.4)])]), TODAY).expect("decodes");
    assert!(
        unsure_doc.confidence > unsure_name.confidence,
        "{} {} {}",
        sure.confidence,
        unsure_doc.confidence,
        unsure_name.confidence
    );
}

#[test]
fn format_from_shape_and_visa_code() {
    let visa = ["V<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<", "L8988901C4XXX4009078F9612109<<<<<<<<"];
    assert_eq!(decode_text(&visa, TODAY).expect("decodes").mrz.format, Format::MrvB);
    let td2 = ["I<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<", "D231458907UTO7408122F1204159<<<<<<<6"];
    assert_eq!(decode_text(&td2, TODAY).expect("decodes").mrz.format, Format::Td2);
    assert!(decode_text(&[&TD3[0][..40], &TD3[1][..40]], TODAY).is_none());
    assert!(decode_text(&[TD3[0], &TD3[1][..43]], TODAY).is_none());
    assert!(decode(&[], TODAY).is_none());
}

#[test]
fn blank_and_foreign_positions_become_filler() {
    // A position with no alternatives, and one with only a non-MRZ character, in the name filler.
    let input = noisy(&TD3, &[(0, 40, &[]), (0, 41, &[('~', 0.9)])]);
    check(&input, Expect { lines: &TD3, corrected: 2, valid: true });
}

#[test]
fn specimens_printed_with_bad_digits_stay_invalid_and_unchanged() {
    // From shared/eval gt.tsv: a reader must report these as failing, not "repair" them.
    for lines in [
        ["IDMLT9999999<<3<9999999M<999<<", "7309258F0810245MLT0310240<<<<5", "SPITERI<MANDY<<<<<<<<<<<<<<<<<"],
        ["C1USA0223456791EAC9730053465<<", "4910040M9411014CAN<<<<<<<<<<<9", "CRITTENDEN<<LEE<W<<<<<<<<<<<<<"],
    ] {
        let d = decode_text(&lines, TODAY).expect("decodes");
        assert_eq!(d.mrz.lines, lines);
        assert!(!d.mrz.valid);
        assert_eq!(d.corrected, 0);
    }
}

#[test]
fn unusual_state_codes_are_not_forced_into_letters() {
    // Old Romanian ID: nationality "132"; forcing letters would give the meaningless "I3Z".
    let rou = ["IDROUSAVA<<SUPERMAN<<<<<<<<<<<<<<<<<", "HD198025<51328505095M130509012049941"];
    let d = decode_text(&rou, TODAY).expect("decodes");
    assert_eq!((d.mrz.nationality.as_str(), d.corrected, d.mrz.valid), ("132", 0, true));
}

#[test]
fn digits_in_a_state_code_become_letters_when_that_makes_a_known_code() {
    // `passporteye__25_pass-uto.jpg`: the line recogniser read the nationality `UTO` as `UT0`, with
    // only `D` and `Q` as letters among its alternatives (`UTD`, `UTQ`: unknown codes).
    let alts: &[(char, f32)] = &[('0', 0.7), ('D', 0.2), ('Q', 0.05)];
    let input = noisy(&TD3, &[(1, 12, alts)]);
    check(&input, Expect { lines: &TD3, corrected: 1, valid: true });
    // Plain text too, with look-alikes (`0`→`O`, `7`→`T`) in both codes.
    let mut lines = TD3.map(str::to_string);
    lines[0].replace_range(2..5, "UT0");
    lines[1].replace_range(10..13, "U7O");
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let d = decode_text(&refs, TODAY).expect("decodes");
    assert_eq!((d.mrz.issuing_state.as_str(), d.mrz.nationality.as_str()), ("UTO", "UTO"));
    // Letters offered at a digit that are not its look-alikes are not tried (`3` has none), so the
    // Romanian `132` stays even when a blurred read offers letters that would make a known code
    // (`ISL`; its best letters, `IEL`, make none).
    let rou = ["IDROUSAVA<<SUPERMAN<<<<<<<<<<<<<<<<<", "HD198025<51328505095M130509012049941"];
    let three: &[(char, f32)] = &[('3', 0.6), ('E', 0.2), ('S', 0.1)];
    let one: &[(char, f32)] = &[('1', 0.6), ('I', 0.3)];
    let two: &[(char, f32)] = &[('2', 0.6), ('L', 0.3)];
    let d = decode(&noisy(&rou, &[(1, 10, one), (1, 11, three), (1, 12, two)]), TODAY).expect("decodes");
    assert_eq!(d.mrz.nationality, "132");
    // A code whose digits map to no known code stays as read.
    let mut lines = TD3.map(str::to_string);
    lines[1].replace_range(10..13, "8Q5");
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_eq!(decode_text(&refs, TODAY).expect("decodes").mrz.nationality, "8Q5");
}
