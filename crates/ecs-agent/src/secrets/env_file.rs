//! Environment files as ECS reads them (docs/aws-services.md §4): one
//! `NAME=value` per line, split at the first `=`; lines that start with `#`
//! and lines without `=` are skipped, as are lines with an empty name.
//! Nothing is trimmed: spaces and quotes belong to the name or value. A
//! later line for the same name wins within one file.

use std::collections::BTreeMap;

/// Why a file cannot be used. The text never quotes the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EnvFileError(pub String);

/// The variables of one file.
pub fn parse(bytes: &[u8]) -> Result<BTreeMap<String, String>, EnvFileError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| EnvFileError(format!("not UTF-8 text (at byte {})", e.valid_up_to())))?;
    let mut vars = BTreeMap::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        if name.is_empty() || name.contains('\0') || value.contains('\0') {
            continue;
        }
        vars.insert(name.to_string(), value.to_string());
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn lines_split_at_the_first_equals_sign() {
        let vars =
            parse(b"A=1\nB=x=y\r\nC=\n# D=comment\nnot a pair\n=no name\nA=2\n E = spaced \n")
                .unwrap();
        let expected: BTreeMap<String, String> =
            [("A", "2"), ("B", "x=y"), ("C", ""), (" E ", " spaced ")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        assert_eq!(vars, expected);
    }

    #[test]
    fn an_empty_file_has_no_variables() {
        assert!(parse(b"").unwrap().is_empty());
        assert!(parse(b"\n\n#only comments\n").unwrap().is_empty());
    }

    #[test]
    fn binary_content_is_refused_without_quoting_it() {
        let err = parse(b"SECRET=\xff\xfe").unwrap_err();
        assert!(err.0.contains("UTF-8"), "{err}");
        assert!(!err.0.contains("SECRET"), "{err}");
    }
}
