//! Property tests on stable Rust (issue 12): the parsers that read hostile bytes, each with a
//! bounded number of cases so CI stays fast. "Never panics, errors are typed" on arbitrary and
//! mutated input; round trips where the format allows one.
//!
//! Parsers: the multipart / url-encoded form reader (`api::form`), the MRZ parser
//! (`kycgate-mrz`), the upload image check (`images::check`) and the adapter TOML loader
//! (`providers::spec`).

use std::collections::BTreeMap;

use axum::body::Body;
use kycgate::api::form::Form;
use kycgate::api::ApiError;
use kycgate::config::ImageLimits;
use kycgate_mrz::{checks, parse, Format, ParseError, Today};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::support::*;

/// Cases per property (each is cheap; the image ones decode at most a small image).
const CASES: u32 = 256;

fn runner() -> TestRunner {
    // No regression files written next to the tests: a failure prints its minimal input.
    TestRunner::new(Config { cases: CASES, failure_persistence: None, ..Config::default() })
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(f)
}

fn request(content_type: &str, body: Vec<u8>) -> axum::extract::Request {
    axum::http::Request::builder()
        .method("POST")
        .uri("/")
        .header("content-type", content_type)
        .body(Body::from(body))
        .expect("request")
}

/// Only the variants the form reader documents.
fn typed(e: &ApiError) -> bool {
    matches!(e, ApiError::BadRequest(_) | ApiError::PayloadTooLarge | ApiError::UnsupportedMediaType(_))
}

// === Forms ===

#[derive(Debug, Clone)]
enum Part {
    Text(String, String),
    File(String, Vec<u8>),
}

fn field_name() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,11}"
}

fn part() -> impl Strategy<Value = Part> {
    prop_oneof![
        (field_name(), "[^\r\n-]{0,40}").prop_map(|(n, v)| Part::Text(n, v)),
        (field_name(), proptest::collection::vec(any::<u8>(), 0..200)).prop_map(|(n, b)| Part::File(n, b)),
    ]
}

fn encode(parts: &[Part], boundary: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for p in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match p {
            Part::Text(n, v) => body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{n}\"\r\n\r\n{v}").as_bytes()),
            Part::File(n, b) => {
                body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{n}\"; filename=\"f\"\r\nContent-Type: application/octet-stream\r\n\r\n")
                        .as_bytes(),
                );
                body.extend_from_slice(b);
            }
        }
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

#[test]
fn multipart_round_trips_first_value_wins() {
    runner()
        .run(&(proptest::collection::vec(part(), 0..8), "[A-Za-z0-9]{8,40}"), |(parts, tag)| {
            let boundary = format!("--b{tag}");
            // File bytes are random: skip the (vanishingly rare) case that they hold the delimiter.
            prop_assume!(parts.iter().all(|p| match p {
                Part::File(_, b) => !b.windows(boundary.len()).any(|w| w == boundary.as_bytes()),
                Part::Text(..) => true,
            }));
            let body = encode(&parts, &boundary);
            let form = block_on(Form::from_multipart(request(&format!("multipart/form-data; boundary={boundary}"), body)))
                .map_err(|e| TestCaseError::fail(format!("a well-formed form was refused: {e:?}")))?;
            let mut texts = BTreeMap::new();
            let mut files = BTreeMap::new();
            for p in &parts {
                match p {
                    Part::Text(n, v) => {
                        texts.entry(n.clone()).or_insert_with(|| v.clone());
                    }
                    Part::File(n, b) => {
                        files.entry(n.clone()).or_insert_with(|| b.clone());
                    }
                }
            }
            prop_assert_eq!(&form.texts, &texts);
            let got: BTreeMap<String, Vec<u8>> = form.files.iter().map(|(k, v)| (k.clone(), v.bytes.to_vec())).collect();
            prop_assert_eq!(got, files);
            Ok(())
        })
        .expect("property holds");
}

#[test]
fn multipart_never_panics_on_mutated_bodies() {
    let seed = encode(
        &[Part::Text("extend_data".into(), "true".into()), Part::File("image".into(), png(8))],
        "seed-boundary",
    );
    let mutation = (
        proptest::collection::vec((0..seed.len(), any::<u8>()), 0..8),
        0..=seed.len(),
        proptest::collection::vec(any::<u8>(), 0..64),
    );
    runner()
        .run(&mutation, |(flips, cut, tail)| {
            let mut body = seed.clone();
            for (at, byte) in flips {
                body[at] = byte;
            }
            body.truncate(cut);
            body.extend_from_slice(&tail);
            match block_on(Form::from_multipart(request("multipart/form-data; boundary=seed-boundary", body))) {
                Ok(_) => {}
                Err(e) => prop_assert!(typed(&e), "untyped error {e:?}"),
            }
            Ok(())
        })
        .expect("property holds");
}

#[test]
fn text_fields_never_panic_and_url_encoding_round_trips() {
    let any_body = (prop_oneof![
        Just("application/json".to_string()),
        Just("application/x-www-form-urlencoded".to_string()),
        Just("multipart/form-data; boundary=x".to_string()),
        "[ -~]{0,40}",
    ], proptest::collection::vec(any::<u8>(), 0..300));
    runner()
        .run(&any_body, |(ct, body)| {
            if let Err(e) = block_on(Form::text_fields(request(&ct, body))) {
                prop_assert!(typed(&e), "untyped error {e:?}");
            }
            Ok(())
        })
        .expect("arbitrary bodies");
    // Every byte percent-encoded decodes back (first value per key wins).
    let pairs = proptest::collection::vec(("\\PC{1,12}", "\\PC{0,20}"), 0..6);
    runner()
        .run(&pairs, |pairs| {
            let esc = |s: &str| s.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
            let body = pairs.iter().map(|(k, v)| format!("{}={}", esc(k), esc(v))).collect::<Vec<_>>().join("&");
            let got = block_on(Form::text_fields(request("application/x-www-form-urlencoded", body.into_bytes())))
                .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            let mut want = BTreeMap::new();
            for (k, v) in &pairs {
                want.entry(k.clone()).or_insert_with(|| v.clone());
            }
            prop_assert_eq!(got, want);
            Ok(())
        })
        .expect("url-encoded round trip");
}

// === MRZ ===

const TODAY: Today = Today { year: 2026, month: 12, day: 3 };

fn mrz_text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(prop_oneof![8 => "[A-Z0-9<]", 1 => any::<char>().prop_map(String::from)], 0..max)
        .prop_map(|v| v.concat())
}

#[test]
fn mrz_parse_never_panics() {
    // Lengths around the layouts (30, 36, 44) and anything else.
    let lines = proptest::collection::vec(
        prop_oneof![mrz_text(50), "[A-Z0-9<]{30}", "[A-Z0-9<]{36}", "[A-Z0-9<]{44}", "P<[A-Z<]{42}", "[A-Z0-9<]{43,45}"],
        0..4,
    );
    runner()
        .run(&lines, |lines| {
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            match parse(&refs, TODAY) {
                Ok(m) => {
                    prop_assert!(matches!(refs.len(), 2 | 3));
                    prop_assert!(m.surname.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == ' '), "{:?}", m.surname);
                }
                Err(ParseError::LineCount(n)) => prop_assert_eq!(n, refs.len()),
                Err(_) => {}
            }
            Ok(())
        })
        .expect("property holds");
}

fn digit(data: &str) -> char {
    char::from(b'0' + checks::check_digit(data.as_bytes()).expect("MRZ characters"))
}

fn pad(s: &str, width: usize) -> String {
    format!("{s:<<width$}")
}

#[test]
fn td3_round_trips_through_the_parser() {
    let fields = (
        "[A-Z]{1,12}",
        "[A-Z]{1,10}( [A-Z]{1,8})?",
        "[A-Z0-9]{1,9}",
        "[A-Z]{3}",
        (1940u32..2020, 1u32..=12, 1u32..=28),
        (2027u32..2036, 1u32..=12, 1u32..=28),
        prop_oneof![Just('M'), Just('F'), Just('<')],
        "[A-Z0-9]{0,14}",
    );
    runner()
        .run(&fields, |(surname, given, number, state, (by, bm, bd), (ey, em, ed), sex, personal)| {
            let name = pad(&format!("{surname}<<{}", given.replace(' ', "<")), 39);
            prop_assume!(name.len() == 39);
            let line1 = format!("P<{state}{name}");
            let number = pad(&number, 9);
            let dob = format!("{:02}{bm:02}{bd:02}", by % 100);
            let exp = format!("{:02}{em:02}{ed:02}", ey % 100);
            let personal = pad(&personal, 14);
            let (dn, db, de, dp) = (digit(&number), digit(&dob), digit(&exp), digit(&personal));
            let composite = digit(&format!("{number}{dn}{dob}{db}{exp}{de}{personal}{dp}"));
            let line2 = format!("{number}{dn}{state}{dob}{db}{sex}{exp}{de}{personal}{dp}{composite}");
            prop_assert_eq!(line2.len(), 44);
            let m = parse(&[&line1, &line2], TODAY).map_err(|e| TestCaseError::fail(format!("{e}: {line1} / {line2}")))?;
            prop_assert_eq!(m.format, Format::Td3);
            prop_assert_eq!(&m.surname, &surname);
            prop_assert_eq!(&m.given_names, &given);
            prop_assert_eq!(&m.document_number, number.trim_end_matches('<'));
            prop_assert_eq!(&m.issuing_state, &state);
            prop_assert_eq!(&m.nationality, &state);
            prop_assert_eq!(m.sex, if sex == '<' { Some('X') } else { Some(sex) });
            prop_assert_eq!((m.date_of_birth.year, m.date_of_birth.month, m.date_of_birth.day), (Some(by as i32), Some(bm), Some(bd)));
            prop_assert_eq!((m.date_of_expiry.year, m.date_of_expiry.month, m.date_of_expiry.day), (Some(ey as i32), Some(em), Some(ed)));
            prop_assert!(m.checks.all_hold(), "{:?}", m.checks);
            Ok(())
        })
        .expect("property holds");
}

// === Images ===

const LIMITS: ImageLimits = ImageLimits { max_bytes: 1 << 20, max_pixels: 4_000_000, max_side: 4000 };

#[test]
fn image_check_never_panics_on_mutated_images() {
    let jpeg = eval_image("faces/deepface/img10.jpg");
    let seeds = [png(16), jpeg[..jpeg.len().min(60_000)].to_vec()];
    let mutation = (
        0..seeds.len(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..16),
        any::<prop::sample::Index>(),
        proptest::collection::vec(any::<u8>(), 0..32),
    );
    runner()
        .run(&mutation, |(which, flips, cut, tail)| {
            let mut bytes = seeds[which].clone();
            for (at, byte) in flips {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
            bytes.extend_from_slice(&tail);
            // Ok (a still-readable image) or a typed problem; never a panic.
            let _ = kycgate::images::check(&bytes, &LIMITS);
            Ok(())
        })
        .expect("mutated images");
    runner()
        .run(&proptest::collection::vec(any::<u8>(), 0..512), |bytes| {
            prop_assert!(kycgate::images::check(&bytes, &LIMITS).is_err(), "random bytes passed as an image");
            Ok(())
        })
        .expect("random bytes");
}

#[test]
fn image_check_refuses_over_limit_sizes_whatever_the_bytes() {
    runner()
        .run(&(1usize..64, any::<u8>()), |(extra, fill)| {
            let limits = ImageLimits { max_bytes: 4096, ..LIMITS };
            let mut bytes = png(16);
            bytes.resize(limits.max_bytes + extra, fill);
            prop_assert!(
                matches!(kycgate::images::check(&bytes, &limits), Err(kycgate::images::ImageProblem::TooManyBytes { .. })),
                "an over-limit upload was not refused by size"
            );
            Ok(())
        })
        .expect("property holds");
}

// === Adapter TOML ===

#[test]
fn adapter_loader_never_panics_on_mutated_adapters() {
    let mut adapters: Vec<String> = std::fs::read_dir(repo().join("providers"))
        .expect("providers dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| std::fs::read_to_string(p).expect("adapter"))
        .collect();
    adapters.sort();
    assert!(adapters.len() >= 5);
    let mutation = (
        0..adapters.len(),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        prop_oneof!["[ -~\n]{0,24}", Just("\"".to_string()), Just("[[".to_string()), Just("${".to_string()), Just("= {".to_string())],
    );
    let env: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    runner()
        .run(&mutation, |(which, from, len, insert)| {
            let text = &adapters[which];
            let chars: Vec<char> = text.chars().collect();
            let a = from.index(chars.len());
            let b = (a + len.index(64)).min(chars.len());
            let mutated: String = chars[..a].iter().chain(insert.chars().collect::<Vec<_>>().iter()).chain(&chars[b..]).collect();
            // Parse, then validate what parsed: either step may refuse, with its own error type.
            if let Ok(kycgate::providers::spec::ProviderSpec::Http(spec)) = kycgate::providers::spec::parse_spec(&mutated) {
                let _: Result<_, kycgate::providers::http::InvalidSpec> =
                    kycgate::providers::http::ValidatedHttpSpec::new("fuzzed", &spec, &env);
            }
            Ok(())
        })
        .expect("property holds");
    runner()
        .run(&"\\PC{0,200}", |text| {
            let _ = kycgate::providers::spec::parse_spec(&text);
            Ok(())
        })
        .expect("arbitrary text");
}
