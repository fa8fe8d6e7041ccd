//! JSON pointers with array selectors, for vendors that answer lists searched by a key.
//!
//! Plain RFC 6901 segments work as usual. A segment in brackets selects one element of an array:
//! `[first]`, `[last]`, `[max:/Similarity]`, `[min:/score]` (by the number at a sub-pointer), or
//! `[/Type/Text=FIRST_NAME]` (first element whose sub-pointer text equals the value; `~=`
//! compares ignoring case, spaces, `_` and `-`, for vendors whose docs disagree on spelling).

use serde_json::Value;

/// One parsed segment.
#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Key(String),
    First,
    Last,
    Max(String),
    Min(String),
    Find { pointer: String, value: String, loose: bool },
}

/// Why a pointer is malformed (validation message).
pub(crate) fn check(pointer: &str) -> Result<(), String> {
    parse(pointer).map(|_| ())
}

fn parse(pointer: &str) -> Result<Vec<Segment>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
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
                    parse(p)?;
                    Segment::Max(p.to_string())
                } else if let Some(p) = sel.strip_prefix("min:") {
                    parse(p)?;
                    Segment::Min(p.to_string())
                } else if let Some((p, v)) = sel.split_once("~=") {
                    parse(p)?;
                    Segment::Find { pointer: p.to_string(), value: v.to_string(), loose: true }
                } else if let Some((p, v)) = sel.split_once('=') {
                    parse(p)?;
                    Segment::Find { pointer: p.to_string(), value: v.to_string(), loose: false }
                } else {
                    return Err(format!(
                        "`{pointer}`: unknown selector `[{sel}]` (use `[first]`, `[last]`, `[max:/k]`, `[min:/k]`, `[/k=v]`, `[/k~=v]`)"
                    ));
                }
            }
        };
        out.push(seg);
    }
    Ok(out)
}

fn loose(s: &str) -> String {
    s.chars().filter(|c| !matches!(c, ' ' | '_' | '-')).flat_map(char::to_lowercase).collect()
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
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
/// which validation rules out).
pub(crate) fn select<'a>(json: &'a Value, pointer: &str) -> Option<&'a Value> {
    let segments = parse(pointer).ok()?;
    let mut cur = json;
    for seg in &segments {
        cur = match (seg, cur) {
            (Segment::Key(k), Value::Object(m)) => m.get(k)?,
            (Segment::Key(k), Value::Array(a)) => a.get(k.parse::<usize>().ok()?)?,
            (Segment::First, Value::Array(a)) => a.first()?,
            (Segment::Last, Value::Array(a)) => a.last()?,
            (Segment::Max(p), Value::Array(a)) => extreme(a, p, |x, y| x > y)?,
            (Segment::Min(p), Value::Array(a)) => extreme(a, p, |x, y| x < y)?,
            (Segment::Find { pointer, value, loose: l }, Value::Array(a)) => a.iter().find(|item| {
                select(item, pointer).and_then(text).is_some_and(|t| if *l { loose(&t) == loose(value) } else { t == *value })
            })?,
            _ => return None,
        };
    }
    Some(cur)
}

fn extreme<'a>(items: &'a [Value], pointer: &str, better: impl Fn(f64, f64) -> bool) -> Option<&'a Value> {
    let mut best: Option<(f64, &Value)> = None;
    for item in items {
        if let Some(n) = select(item, pointer).and_then(num) {
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
}
