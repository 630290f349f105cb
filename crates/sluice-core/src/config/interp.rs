//! `${ENV}` interpolation of scalar values: `${VAR}`, `${VAR:-default}`,
//! `${VAR:?message}` and `$$` for a literal `$`. Applied to every scalar
//! value of a parsed file (never to keys), before anything reads it.
//! Reads the process environment; touches nothing else.

use super::node::{Kind, Node};
use super::ConfigError;

/// Interpolates every scalar of `node` in place, collecting errors, and
/// adds to `secrets` the values of variables named like secrets
/// (`MYSQL_PASSWORD`, `API_TOKEN`, ...) and of keys named like secrets, so
/// that they can be kept out of every message.
pub(crate) fn interpolate_tree(
    node: &mut Node,
    errors: &mut Vec<ConfigError>,
    secrets: &mut Vec<String>,
) {
    let seen = std::cell::RefCell::new(Vec::new());
    interpolate_with(node, errors, &|name| {
        let v = std::env::var(name).ok();
        if let Some(v) = v.as_ref().filter(|_| super::is_secret_key(name)) {
            seen.borrow_mut().push(v.clone());
        }
        v
    });
    secrets.extend(seen.into_inner());
    secret_values(node, false, secrets);
}

/// Collects every scalar under a key named like a secret.
fn secret_values(node: &Node, secret: bool, out: &mut Vec<String>) {
    match &node.kind {
        Kind::Null => {}
        Kind::Scalar(s) => {
            if secret {
                out.push(s.text.clone());
            }
        }
        Kind::Seq(items) => items.iter().for_each(|n| secret_values(n, secret, out)),
        Kind::Map(entries) => entries.iter().for_each(|(k, n)| {
            secret_values(n, secret || super::is_secret_key(&k.name), out);
        }),
    }
}

/// Replaces every secret (three characters or more) in the errors'
/// messages and hints by `<hidden>`.
pub(crate) fn scrub(errors: &mut [ConfigError], secrets: &mut Vec<String>) {
    secrets.retain(|s| s.chars().count() >= 3);
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for e in errors {
        for s in secrets.iter() {
            if e.message.contains(s.as_str()) {
                e.message = e.message.replace(s.as_str(), "<hidden>");
            }
            if let Some(h) = e.hint.as_mut().filter(|h| h.contains(s.as_str())) {
                *h = h.replace(s.as_str(), "<hidden>");
            }
        }
    }
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
                Err((offset, message)) => {
                    s.failed = true;
                    errors.push(ConfigError {
                        location: node.loc_at(offset),
                        message,
                        hint: None,
                    });
                }
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
