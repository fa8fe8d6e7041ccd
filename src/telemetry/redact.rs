//! Structural redaction: personal data wrapped in [`Redacted`] cannot be formatted into a log
//! line, span field or error message, whatever format string is used.

use std::fmt;

/// Holds a value (a name, a document number, image bytes, a raw vendor answer) whose `Debug`
/// and `Display` print `[redacted]`. The value is reachable only through [`Redacted::expose`],
/// so every use that could leak it is visible in review.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Redacted<T>(T);

/// What every formatted personal value looks like.
pub const REDACTED: &str = "[redacted]";

impl<T> Redacted<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The value itself, for the code that must send or store it.
    pub fn expose(&self) -> &T {
        &self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Redacted<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> fmt::Display for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_is_redacted() {
        let r = Redacted::new("MUSTERMANN ERIKA".to_string());
        assert_eq!(format!("{r}"), REDACTED);
        assert_eq!(format!("{r:?}"), REDACTED);
        assert_eq!(format!("{r:#?}"), REDACTED);
        assert_eq!(r.expose(), "MUSTERMANN ERIKA");
    }
}
