//! Reading a client's JSON strictly: a field that the input type does not have is refused
//! wherever it sits (`security.read_only_rootfs`, `env[0].bogus`), never dropped, and every
//! error names its field. The types themselves stay tolerant, so that a node's agent can read
//! a document from a newer panel.

use serde::de::DeserializeOwned;

use crate::error::{FieldError, ValidationErrors};

/// `T` from JSON text.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ValidationErrors> {
    let mut json = serde_json::Deserializer::from_slice(bytes);
    let value = read(&mut json)?;
    json.end().map_err(|error| {
        ValidationErrors(vec![FieldError::new(
            "body",
            "json.invalid",
            error.to_string(),
        )])
    })?;
    Ok(value)
}

/// `T` from a JSON value (a merge patch applied to what is stored).
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ValidationErrors> {
    read(value)
}

fn read<'de, D, T>(deserializer: D) -> Result<T, ValidationErrors>
where
    D: serde::Deserializer<'de>,
    D::Error: std::fmt::Display,
    T: serde::Deserialize<'de>,
{
    let mut unknown = Vec::new();
    let mut record = |path: serde_ignored::Path<'_>| unknown.push(path_name(&path));
    let outcome = serde_path_to_error::deserialize(serde_ignored::Deserializer::new(
        deserializer,
        &mut record,
    ));
    let mut errors = ValidationErrors(
        unknown
            .into_iter()
            .map(|field| FieldError::new(field, "field.unknown", "no such field"))
            .collect(),
    );
    match outcome {
        Ok(value) if errors.is_empty() => Ok(value),
        Ok(_) => Err(errors),
        Err(error) => {
            errors.push(type_error(
                &error.path().to_string(),
                &error.inner().to_string(),
            ));
            Err(errors)
        }
    }
}

/// A deserialisation error, under the field it concerns. Serde reports an unknown field of a
/// type that refuses them in its message; the path may or may not name it already.
fn type_error(path: &str, message: &str) -> FieldError {
    let parent = if path == "." { "" } else { path };
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((name, _)) = rest.split_once('`')
    {
        // Depending on where serde stopped, the path ends with the field or at its object.
        let field = if parent == name || parent.ends_with(&format!(".{name}")) {
            parent.to_owned()
        } else {
            join(parent, name)
        };
        return FieldError::new(field, "field.unknown", "no such field");
    }
    let field = if parent.is_empty() { "body" } else { parent };
    // serde_json appends the position ("at line 1 column 42"), which says nothing to a form.
    let message = message
        .rsplit_once(" at line ")
        .map_or(message, |(text, _)| text);
    FieldError::new(field, "field.invalid", message)
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}

/// `a.b[2].c`, the way validators name fields.
fn path_name(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", path_name(parent)),
        Path::Map { parent, key } => join(&path_name(parent), key),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => path_name(parent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    // The fields are there to be deserialised into, not read.
    #[allow(dead_code)]
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[serde(default)]
        inner: Inner,
        #[serde(default)]
        list: Vec<Inner>,
        #[serde(default)]
        maybe: Option<Inner>,
    }

    #[allow(dead_code)]
    #[derive(Debug, Default, Deserialize)]
    struct Inner {
        #[serde(default)]
        flag: bool,
        #[serde(default)]
        count: u8,
    }

    fn fields(json: &str) -> Vec<(String, String)> {
        from_slice::<Outer>(json.as_bytes())
            .expect_err(json)
            .0
            .into_iter()
            .map(|e| (e.field, e.code))
            .collect()
    }

    #[test]
    fn unknown_fields_are_named_at_every_depth() {
        let unknown = |f: &str| (f.to_owned(), "field.unknown".to_owned());
        assert_eq!(fields(r#"{"bogus":1}"#), vec![unknown("bogus")]);
        assert_eq!(
            fields(r#"{"inner":{"flg":true},"list":[{},{"x":{"y":1}}],"maybe":{"z":null}}"#),
            vec![
                unknown("inner.flg"),
                unknown("list[1].x"),
                unknown("maybe.z")
            ]
        );
        assert!(from_slice::<Outer>(br#"{"inner":{"flag":true},"list":[{}]}"#).is_ok());
    }

    #[test]
    fn type_errors_name_their_field_without_a_position() {
        assert_eq!(
            fields(r#"{"list":[{"count":300}]}"#),
            vec![("list[0].count".to_owned(), "field.invalid".to_owned())]
        );
        let errors = from_slice::<Outer>(br#"{"inner":{"count":-1}}"#).unwrap_err();
        assert!(!errors.0[0].message.contains("line"), "{errors}");
        assert_eq!(fields("1")[0].0, "body");
        assert_eq!(fields(r#"{} trailing"#)[0].0, "body");
    }
}
