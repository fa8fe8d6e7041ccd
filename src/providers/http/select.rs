//! JSON pointers with array selectors, for vendors that answer lists searched by a key.
//!
//! Plain RFC 6901 segments work as usual. A segment in brackets selects one element of an array:
//! `[first]`, `[last]`, `[max:/Similarity]`, `[min:/score]` (by the number at a sub-pointer), or
//! `[/Type/Text=FIRST_NAME]` (first element whose sub-pointer text equals the value; `~=`
//! compares ignoring case, spaces, `_` and `-`, for vendors whose docs disagree on spelling).

use std::collections::HashMap;
use std::sync::{LazyLock, PoisonError, RwLock};

use serde_json::Value;

/// Pointers compiled when an adapter is loaded ([`check`] is how validation sees every one),
/// by their text: a vendor answer is read with a dozen pointers, each of which would otherwise
/// be split, unescaped and allocated again for every answer (and a selector's sub-pointer once
/// per array element it looks at). Only adapter pointers are kept, so it is bounded by the
/// adapter files (a reload adds the new ones; pointers are small).
static COMPILED: LazyLock<RwLock<HashMap<String, Pointer>>> = LazyLock::new(Default::default);

/// A parsed pointer: its segments, with selector sub-pointers parsed too.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pointer(Vec<Segment>);

/// One parsed segment.
#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Key(String),
    First,
    Last,
    Max(Pointer),
    Min(Pointer),
    /// `[/k=v]`, or with `loose` `[/k~=v]` (then `value` is already in its loose form).
    Find { pointer: Pointer, value: String, loose: bool },
}

/// Why a pointer is malformed (validation message). A well-formed one is compiled for
/// [`select`].
pub(crate) fn check(pointer: &str) -> Result<(), String> {
    let parsed = Pointer::parse(pointer)?;
    let mut compiled = COMPILED.write().unwrap_or_else(PoisonError::into_inner);
    compiled.entry(pointer.to_string()).or_insert(parsed);
    Ok(())
}

// === impl Pointer ===

impl Pointer {
    fn parse(pointer: &str) -> Result<Self, String> {
        if pointer.is_empty() {
            return Ok(Self(Vec::new()));
        }
        let Some(rest) = pointer.strip_prefix('/') else {
            return Err(format!("`{pointer}` is not a JSON pointer (it must start with `/`)"));
        };
        let mut out = Vec::new();
        // Split on `/` outside brackets: selectors contain sub-pointers.
        let mut depth = 0usize;
        let mut cur = String::new();
        let mut parts = Vec::new();
        for c in rest.chars() {
            match c {
                '[' => {
                    depth += 1;
                    cur.push(c);
                }
                ']' => {
                    depth = depth.checked_sub(1).ok_or_else(|| format!("`{pointer}`: unbalanced `]`"))?;
                    cur.push(c);
                }
                '/' if depth == 0 => parts.push(std::mem::take(&mut cur)),
                _ => cur.push(c),
            }
        }
        if depth != 0 {
            return Err(format!("`{pointer}`: unbalanced `[`"));
        }
        parts.push(cur);
        for part in parts {
            let seg = match part.strip_prefix('[').and_then(|p| p.strip_suffix(']')) {
                None => Segment::Key(part.replace("~1", "/").replace("~0", "~")),
                Some("first") => Segment::First,
                Some("last") => Segment::Last,
                Some(sel) => {
                    if let Some(p) = sel.strip_prefix("max:") {
                        Segment::Max(Self::parse(p)?)
                    } else if let Some(p) = sel.strip_prefix("min:") {
                        Segment::Min(Self::parse(p)?)
                    } else if let Some((p, v)) = sel.split_once("~=") {
                        Segment::Find { pointer: Self::parse(p)?, value: loose(v), loose: true }
                    } else if let Some((p, v)) = sel.split_once('=') {
                        Segment::Find { pointer: Self::parse(p)?, value: v.to_string(), loose: false }
                    } else {
                        return Err(format!(
                            "`{pointer}`: unknown selector `[{sel}]` (use `[first]`, `[last]`, `[max:/k]`, `[min:/k]`, `[/k=v]`, `[/k~=v]`)"
                        ));
                    }
                }
            };
            out.push(seg);
        }
        Ok(Self(out))
    }

    /// Resolves this pointer in `json`; `None` when any step is absent.
    fn select<'a>(&self, json: &'a Value) -> Option<&'a Value> {
        let mut cur = json;
        for seg in &self.0 {
            cur = match (seg, cur) {
                (Segment::Key(k), Value::Object(m)) => m.get(k)?,
                (Segment::Key(k), Value::Array(a)) => a.get(k.parse::<usize>().ok()?)?,
                (Segment::First, Value::Array(a)) => a.first()?,
                (Segment::Last, Value::Array(a)) => a.last()?,
                (Segment::Max(p), Value::Array(a)) => extreme(a, p, |x, y| x > y)?,
                (Segment::Min(p), Value::Array(a)) => extreme(a, p, |x, y| x < y)?,
                (Segment::Find { pointer, value, loose: l }, Value::Array(a)) => {
                    a.iter().find(|item| pointer.select(item).is_some_and(|v| text_is(v, value, *l)))?
                }
                _ => return None,
            };
        }
        Some(cur)
    }
}

fn loose(s: &str) -> String {
    s.chars().filter(|c| !matches!(c, ' ' | '_' | '-')).flat_map(char::to_lowercase).collect()
}

/// Whether `v`'s text (strings, numbers, booleans) equals `want` (compared loosely when `l`,
/// `want` being loose already).
fn text_is(v: &Value, want: &str, l: bool) -> bool {
    let same = |t: &str| if l { loose(t) == want } else { t == want };
    match v {
        Value::String(s) => same(s),
        Value::Number(n) => same(&n.to_string()),
        Value::Bool(b) => same(if *b { "true" } else { "false" }),
        _ => false,
    }
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Resolves `pointer` in `json`; `None` when any step is absent (or the pointer is malformed,
/// which validation rules out). Adapter pointers are compiled already (see [`check`]); any
/// other (a built-in such as `/access_token`) is parsed for this call.
pub(crate) fn select<'a>(json: &'a Value, pointer: &str) -> Option<&'a Value> {
    {
        let compiled = COMPILED.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = compiled.get(pointer) {
            return p.select(json);
        }
    }
    Pointer::parse(pointer).ok()?.select(json)
}

fn extreme<'a>(items: &'a [Value], pointer: &Pointer, better: impl Fn(f64, f64) -> bool) -> Option<&'a Value> {
    let mut best: Option<(f64, &Value)> = None;
    for item in items {
        if let Some(n) = pointer.select(item).and_then(num) {
            if best.is_none_or(|(b, _)| better(n, b)) {
                best = Some((n, item));
            }
        }
    }
    best.map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors() {
        let j = json!({
            "FaceMatches": [{"Similarity": 80.5, "id": "a"}, {"Similarity": "97.1", "id": "b"}, {"id": "c"}],
            "Fields": [{"Type": {"Text": "FIRST_NAME"}, "V": "JANE"}, {"Type": {"Text": "date of birth"}, "V": "x"}],
            "a/b": 1
        });
        assert_eq!(select(&j, "/FaceMatches/[max:/Similarity]/id"), Some(&json!("b")));
        assert_eq!(select(&j, "/FaceMatches/[min:/Similarity]/id"), Some(&json!("a")));
        assert_eq!(select(&j, "/FaceMatches/[last]/id"), Some(&json!("c")));
        assert_eq!(select(&j, "/FaceMatches/[first]/id"), Some(&json!("a")));
        assert_eq!(select(&j, "/FaceMatches/0/id"), Some(&json!("a")));
        assert_eq!(select(&j, "/Fields/[/Type/Text=FIRST_NAME]/V"), Some(&json!("JANE")));
        assert_eq!(select(&j, "/Fields/[/Type/Text=first_name]/V"), None);
        assert_eq!(select(&j, "/Fields/[/Type/Text~=DATE_OF_BIRTH]/V"), Some(&json!("x")));
        assert_eq!(select(&j, "/a~1b"), Some(&json!(1)));
        assert_eq!(select(&j, ""), Some(&j));
        assert_eq!(select(&json!({"l": []}), "/l/[max:/x]"), None);
        assert!(check("/x/[bogus]").is_err());
        assert!(check("/x/[max:/y").is_err());
        assert!(check("x").is_err());
    }

    #[test]
    fn compiled_and_parsed_pointers_select_the_same() {
        let j = json!({"L": [{"t": "Date_of-Birth", "n": 3, "v": 1}, {"t": "x", "n": "7", "v": 2}, {"t": true, "v": 3}]});
        for p in ["/L/[/t~=date of birth]/v", "/L/[/n=7]/v", "/L/[/t=true]/v", "/L/[max:/n]/v", "/L/[min:/n]/v", "/L/1/v"] {
            let parsed = Pointer::parse(p).unwrap().select(&j).cloned();
            assert!(parsed.is_some(), "{p}");
            check(p).unwrap();
            assert_eq!(select(&j, p).cloned(), parsed, "{p}");
        }
    }
}
