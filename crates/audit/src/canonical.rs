//! RFC 8785 (JSON Canonicalization Scheme): the one serialisation of a JSON value that the
//! chain hashes. Object members sorted by their names' UTF-16 code units, no white space,
//! strings with the minimal escapes, numbers as ECMAScript prints them.

use serde_json::Value;

/// The canonical text of `value`.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    write(value, &mut out);
    out
}

fn write(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, (name, item)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(name, out);
                out.push(':');
                write(item, out);
            }
            out.push('}');
        }
    }
}

/// serde_json escapes exactly what RFC 8785 asks: `"`, `\`, and control characters (as
/// `\b \t \n \f \r` or `\u00xx`, lowercase); everything else as itself.
fn write_string(s: &str, out: &mut String) {
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

fn write_number(n: &serde_json::Number, out: &mut String) {
    if let Some(i) = n.as_i64() {
        out.push_str(&i.to_string());
    } else if let Some(u) = n.as_u64() {
        out.push_str(&u.to_string());
    } else if let Some(f) = n.as_f64() {
        out.push_str(&ecmascript_number(f));
    }
}

/// How ECMAScript's `Number.prototype.toString` prints a finite double: the shortest digits
/// that read back as the same double, in plain notation from 1e-7 up to 1e21, else in
/// exponent notation with an explicit sign.
fn ecmascript_number(f: f64) -> String {
    if f == 0.0 {
        return "0".to_owned();
    }
    // Rust's `{:e}` gives the shortest round-tripping digits: `d.ddde±x`.
    let scientific = format!("{:e}", f.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let count = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    let sign = if f < 0.0 { "-" } else { "" };
    // The decimal point sits after `point` digits (ECMAScript's n).
    let point = exponent + 1;
    let body = if (-5..=0).contains(&point) {
        format!(
            "0.{}{digits}",
            "0".repeat(usize::try_from(-point).unwrap_or(0))
        )
    } else if point > 0 && point <= 21 {
        if count <= point {
            format!(
                "{digits}{}",
                "0".repeat(usize::try_from(point - count).unwrap_or(0))
            )
        } else {
            let split = usize::try_from(point).unwrap_or(0);
            format!("{}.{}", &digits[..split], &digits[split..])
        }
    } else {
        let rest = &digits[1..];
        let fraction = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exponent_sign = if point > 0 { "+" } else { "-" };
        format!(
            "{}{fraction}e{exponent_sign}{}",
            &digits[..1],
            (point - 1).abs()
        )
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn members_are_sorted_and_nothing_is_spaced() {
        let value = json!({"b": [1, true, null], "a": {"z": "é", "y": "\u{1}\n\"\\"}, "\u{FF61}": 1, "\u{10000}": 2});
        // UTF-16 order puts U+10000 (a surrogate pair, 0xD800...) before U+FF61, where UTF-8
        // byte order would not.
        assert_eq!(
            to_string(&value),
            "{\"a\":{\"y\":\"\\u0001\\n\\\"\\\\\",\"z\":\"é\"},\"b\":[1,true,null],\"\u{10000}\":2,\"\u{FF61}\":1}"
        );
    }

    #[test]
    fn numbers_print_as_ecmascript_does() {
        // Examples from RFC 8785's appendix and ECMAScript.
        for (value, text) in [
            (0.0, "0"),
            (-0.0, "0"),
            (1.0, "1"),
            (1.5, "1.5"),
            (-1.5, "-1.5"),
            (0.000001, "0.000001"),
            (1e-7, "1e-7"),
            (123456789012345680000.0, "123456789012345680000"),
            (1e21, "1e+21"),
            (1.2345e22, "1.2345e+22"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (333333333.3333333, "333333333.3333333"),
            (0.1, "0.1"),
        ] {
            assert_eq!(ecmascript_number(value), text, "{value:e}");
        }
    }

    proptest::proptest! {
        #[test]
        fn canonical_text_reads_back_to_the_same_text(value in arbitrary_json()) {
            let text = to_string(&value);
            let again: Value = serde_json::from_str(&text).unwrap();
            proptest::prop_assert_eq!(to_string(&again), text);
        }
    }

    fn arbitrary_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            ".*".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(".*", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
