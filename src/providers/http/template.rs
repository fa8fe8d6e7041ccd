//! `${name}` templates in adapter strings (paths, queries, headers, body fields, canonical
//! strings). Parsed once at validation so an unknown name fails at start-up.

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    Var(String),
}

impl Template {
    /// Parses `text`; `$${` is a literal `${`.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(i) = rest.find('$') {
            lit.push_str(&rest[..i]);
            let after = &rest[i..];
            if let Some(r) = after.strip_prefix("$${") {
                lit.push_str("${");
                rest = r;
            } else if let Some(r) = after.strip_prefix("${") {
                let end = r.find('}').ok_or_else(|| format!("`{text}`: `${{` without a closing `}}`"))?;
                let name = &r[..end];
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!("`{text}`: `${{{name}}}` is not a valid name (letters, digits, `_`)"));
                }
                if !lit.is_empty() {
                    parts.push(Part::Lit(std::mem::take(&mut lit)));
                }
                parts.push(Part::Var(name.to_string()));
                rest = &r[end + 1..];
            } else {
                lit.push('$');
                rest = &after[1..];
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Self { parts })
    }

    /// A template without substitutions.
    pub(crate) fn literal(text: &str) -> Self {
        Self { parts: vec![Part::Lit(text.to_string())] }
    }

    /// The names this template refers to.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(n) => Some(n.as_str()),
            Part::Lit(_) => None,
        })
    }

    /// Whether the template is a constant.
    pub(crate) fn is_literal(&self) -> bool {
        self.names().next().is_none()
    }

    /// Substitutes every name through `lookup`; `Err(name)` for the first unknown one.
    pub(crate) fn render(&self, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(n) => out.push_str(&lookup(n).ok_or_else(|| n.clone())?),
            }
        }
        Ok(out)
    }

    /// Like [`Template::render`] but to bytes, so a binary value (a request body) is kept exact.
    pub(crate) fn render_bytes(&self, lookup: &dyn Fn(&str) -> Option<Vec<u8>>) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.extend_from_slice(s.as_bytes()),
                Part::Var(n) => out.extend_from_slice(&lookup(n).ok_or_else(|| n.clone())?),
            }
        }
        Ok(out)
    }

    /// Checks every name against `known`; the error names the first unknown one.
    pub(crate) fn check_names(&self, known: &dyn Fn(&str) -> bool) -> Result<(), String> {
        match self.names().find(|n| !known(n)) {
            Some(n) => Err(n.to_string()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_render() {
        let t = Template::parse("/v1/${a}/x${b}$${c}$5").unwrap();
        assert_eq!(t.names().collect::<Vec<_>>(), ["a", "b"]);
        let r = t.render(&|n| Some(n.to_uppercase())).unwrap();
        assert_eq!(r, "/v1/A/xB${c}$5");
        assert_eq!(t.render(&|n| (n == "a").then(|| "1".into())), Err("b".to_string()));
        assert!(Template::parse("${open").is_err());
        assert!(Template::parse("${a-b}").is_err());
        assert!(Template::parse("plain").unwrap().is_literal());
    }
}
