//! ICAO Doc 9303 machine-readable zones: find the band in a photo, read it, parse it.
//!
//! - [`parse`], [`checks`], [`decode`], [`nationality`]: layout rules, check digits, choosing among
//!   recogniser alternatives, code → demonym. Pure functions.
//! - [`locate`], [`segment`], [`ocr`], [`read`]: image → MRZ band → character grid → characters → [`parse::Mrz`].
//! - [`eval`]: accuracy over a labelled image set.

pub mod checks;
pub mod decode;
pub mod nationality;
pub mod parse;

pub mod eval;
pub mod locate;
pub mod ocr;
pub mod read;
pub mod segment;

pub use checks::Checks;
pub use decode::{decode, decode_text, Candidates, Decoded};
pub use nationality::{country_name, demonym};
pub use parse::{parse, Format, Mrz, MrzDate, ParseError, Today};
