//! Quantities people type into forms: sizes (`512M`, `1.5 GiB`) and CPU (`0.5`, `500m`).
//! The API carries them as plain integers (bytes, millicores); these parsers serve the pages
//! and the CLI.

use crate::error::FieldError;

/// Parses `1024`, `512K`, `512M`, `1.5G`, `2GiB`, `1 TB` into bytes (powers of 1024).
pub fn parse_bytes(input: &str) -> Result<u64, FieldError> {
    let invalid = || FieldError::new("", "size.invalid", "use a size such as 512M, 2G or 10GiB");
    let text = input.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| invalid())?;
    let shift = match unit
        .trim()
        .to_ascii_lowercase()
        .trim_end_matches('b')
        .trim_end_matches('i')
    {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(invalid()),
    };
    let bytes = number * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > (1u64 << 60) as f64 {
        return Err(FieldError::new(
            "",
            "size.out_of_range",
            "this size is out of range",
        ));
    }
    Ok(bytes.round() as u64)
}

/// Renders bytes in the largest whole binary unit (`512M`, `1.5G`).
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u32); 4] = [("T", 40), ("G", 30), ("M", 20), ("K", 10)];
    for (unit, shift) in UNITS {
        let scale = 1u64 << shift;
        if bytes >= scale {
            let value = bytes as f64 / scale as f64;
            let rounded = (value * 10.0).round() / 10.0;
            return if rounded.fract() == 0.0 {
                format!("{}{unit}", rounded as u64)
            } else {
                format!("{rounded}{unit}")
            };
        }
    }
    format!("{bytes}")
}

/// Parses `2`, `0.5` (cores) or `500m` (millicores) into millicores.
pub fn parse_millicores(input: &str) -> Result<u32, FieldError> {
    let invalid = || {
        FieldError::new(
            "",
            "cpu.invalid",
            "use cores such as 0.5 or 2, or millicores such as 500m",
        )
    };
    let text = input.trim();
    let millis = match text.strip_suffix('m') {
        Some(m) => m.trim().parse::<f64>().map_err(|_| invalid())?,
        None => text.parse::<f64>().map_err(|_| invalid())? * 1000.0,
    };
    if !millis.is_finite() || !(0.0..=1_048_576.0).contains(&millis) {
        return Err(FieldError::new(
            "",
            "cpu.out_of_range",
            "this CPU amount is out of range",
        ));
    }
    Ok(millis.round() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_trip_through_text() {
        assert_eq!(parse_bytes("512M").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("1.5 G").unwrap(), 3 << 29);
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(format_bytes(512 << 20), "512M");
        assert_eq!(format_bytes(3 << 29), "1.5G");
        for bad in ["", "M", "12X", "-1G", "1e400", "1..2G"] {
            assert!(parse_bytes(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cpu_amounts() {
        assert_eq!(parse_millicores("0.5").unwrap(), 500);
        assert_eq!(parse_millicores("250m").unwrap(), 250);
        assert_eq!(parse_millicores("4").unwrap(), 4000);
        assert!(parse_millicores("-1").is_err());
        assert!(parse_millicores("lots").is_err());
    }
}
