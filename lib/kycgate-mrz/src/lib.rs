//! ICAO Doc 9303 machine-readable zones: find the band in a photo, read it, parse it.
//!
//! - [`parse`], [`checks`], [`decode`], [`nationality`]: layout rules, check digits, choosing among
//!   recogniser alternatives, code → demonym. Pure functions.
//! - [`locate`], [`line`], [`segment`], [`ocr`], [`read`]: image → MRZ band → each line read whole
//!   (CNN + CTC), with the character grid and per-cell CNN as the second opinion → [`parse::Mrz`].
//! - [`eval`], [`perturb`]: accuracy over a labelled image set, and degraded copies of its pages.

pub mod checks;
pub mod decode;
pub mod nationality;
pub mod parse;
pub mod perturb;

pub mod eval;
pub mod line;
pub mod locate;
mod nn;
pub mod ocr;
pub mod read;
pub mod segment;

pub use checks::Checks;
pub use decode::{decode, decode_text, Candidates, Decoded};
pub use nationality::{country_name, demonym};
pub use parse::{parse, Format, Mrz, MrzDate, ParseError, Today};
