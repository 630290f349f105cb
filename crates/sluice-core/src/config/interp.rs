//! `${ENV}` interpolation of scalar values: `${VAR}`, `${VAR:-default}`,
//! `${VAR:?message}` and `$$` for a literal `$`. Applied to every scalar
//! value of a parsed file (never to keys), before anything reads it.
//! Reads the process environment; touches nothing else.

use super::node::{Kind, Node};
use super::ConfigError;

/// Interpolates every scalar of `node` in place, collecting errors.
pub(crate) fn interpolate_tree(node: &mut Node, errors: &mut Vec<ConfigError>) {
    interpolate_with(node, errors, &|name| std::env::var(name).ok());
}

pub(crate) fn interpolate_with(
    node: &mut Node,
    errors: &mut Vec<ConfigError>,
    env: &dyn Fn(&str) -> Option<String>,
) {
    match &mut node.kind {
        Kind::Null => {}
        Kind::Scalar(s) => {
            if !s.text.contains('$') {
                return;
            }
            match interpolate(&s.text, env) {
                Ok(t) => {
                    if t != s.text {
                        s.text = t;
                        s.inner_col = None;
                    }
                }
                Err((offset, message)) => errors.push(ConfigError {
                    location: node.loc_at(offset),
                    message,
                    hint: None,
                }),
            }
        }
        Kind::Seq(items) => items
            .iter_mut()
            .for_each(|n| interpolate_with(n, errors, env)),
        Kind::Map(entries) => entries
            .iter_mut()
            .for_each(|(_, n)| interpolate_with(n, errors, env)),
    }
}

/// Interpolates one string. The error carries the char offset of the `$`
/// that failed and a message (which never contains a variable's value).
pub fn interpolate(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, (usize, String)> {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '$' {
            out.push(c);
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => {
                out.push('$');
                i += 2;
            }
            Some('{') => {
                let start = i;
                let close = chars[i + 2..]
                    .iter()
                    .position(|&c| c == '}')
                    .map(|p| p + i + 2)
                    .ok_or((start, "unterminated `${`: missing `}`".to_string()))?;
                let inner: String = chars[i + 2..close].iter().collect();
                out.push_str(&expand(&inner, env).map_err(|m| (start, m))?);
                i = close + 1;
            }
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    Ok(out)
}

fn expand(inner: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let (name, op, arg) = match inner.find(':') {
        Some(p) => {
            let rest = &inner[p + 1..];
            let op = rest.chars().next();
            let arg = rest.get(1..).unwrap_or("");
            (&inner[..p], op, arg)
        }
        None => (inner, None, ""),
    };
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "invalid variable name `{name}` in `${{...}}` (letters, digits and `_`)"
        ));
    }
    let raw = env(name);
    if op.is_none() {
        if let Some(v) = raw {
            return Ok(v);
        }
    }
    let value = raw.filter(|v| !v.is_empty());
    match (op, value) {
        (None, Some(v)) => Ok(v),
        (None, None) => Err(format!(
            "environment variable `{name}` is not set (use `${{{name}:-default}}` for a default)"
        )),
        (Some('-'), v) => Ok(v.unwrap_or_else(|| arg.to_string())),
        (Some('?'), Some(v)) => Ok(v),
        (Some('?'), None) => Err(if arg.is_empty() {
            format!("environment variable `{name}` is required")
        } else {
            format!("environment variable `{name}` is required: {arg}")
        }),
        (Some(_), _) => Err(format!(
            "invalid `${{{name}:...}}`: use `${{{name}:-default}}` or `${{{name}:?message}}`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::interpolate;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn forms() {
        assert_eq!(interpolate("x${A}y", &env).unwrap(), "xalphay");
        assert_eq!(interpolate("${B:-def}", &env).unwrap(), "def");
        assert_eq!(interpolate("${EMPTY:-def}", &env).unwrap(), "def");
        assert_eq!(interpolate("${A:-def}", &env).unwrap(), "alpha");
        assert_eq!(interpolate("[${EMPTY}]", &env).unwrap(), "[]");
        assert_eq!(interpolate("$$HOME $5", &env).unwrap(), "$HOME $5");
        assert_eq!(interpolate("${A:?need}", &env).unwrap(), "alpha");
        assert_eq!(interpolate("ab${B}", &env).unwrap_err().0, 2);
        assert!(interpolate("${B:?need it}", &env)
            .unwrap_err()
            .1
            .contains("need it"));
        assert!(interpolate("${A", &env).is_err());
        assert!(interpolate("${1A}", &env).is_err());
        assert!(interpolate("${A:x}", &env).is_err());
        assert_eq!(interpolate("é${A}", &env).unwrap(), "éalpha");
    }
}
